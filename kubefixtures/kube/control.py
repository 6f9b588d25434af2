"""The API calls behind ``Environment``'s controls: pods of a workload, logs, get, patch,
scale, rollout restart, deletes, events, kinds by name. Plain functions over a Cluster.

Every error is a ControlError (a ClusterError when the API server cannot be reached) of
one line that names the verb and the object: ``restart deployment/web: forbidden (RBAC):
...``. Status codes are read here and nowhere above.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kubefixtures.errors import ClusterError, ControlError
from kubefixtures.kube.client import EVENT, POD, ApiError, Cluster, Resource

__all__ = [
    "DAEMON_SET",
    "DEPLOYMENT",
    "JOB",
    "REPLICA_SET",
    "SERVICE",
    "STATEFUL_SET",
    "WORKLOADS",
    "calling",
    "delete_object",
    "find_resource",
    "get_object",
    "list_events",
    "list_pods",
    "patch_object",
    "pod_log",
    "restart_workload",
    "scale_workload",
    "selector_of",
    "wait_gone",
]

JSON = dict[str, Any]
T = TypeVar("T")

DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments", namespaced=True)
STATEFUL_SET = Resource("apps/v1", "StatefulSet", "statefulsets", namespaced=True)
DAEMON_SET = Resource("apps/v1", "DaemonSet", "daemonsets", namespaced=True)
REPLICA_SET = Resource("apps/v1", "ReplicaSet", "replicasets", namespaced=True)
JOB = Resource("batch/v1", "Job", "jobs", namespaced=True)
SERVICE = Resource("v1", "Service", "services", namespaced=True)
# What a target's kind word ("deployment/web") stands for.
WORKLOADS: Mapping[str, Resource] = {
    "pod": POD,
    "deployment": DEPLOYMENT,
    "statefulset": STATEFUL_SET,
    "daemonset": DAEMON_SET,
    "replicaset": REPLICA_SET,
    "job": JOB,
    "service": SERVICE,
}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_STRATEGIC = "application/strategic-merge-patch+json"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_LOG_TIMEOUT = (5.0, 120.0)  # a long log takes a while to arrive


def calling(verb: str, what: str, call: Callable[[], T]) -> T:
    """``call()``, its API errors turned into one line naming ``verb`` and ``what``."""
    try:
        return call()
    except ApiError as error:
        raise ControlError(f"{verb} {what}: {_explain(error)}") from None
    except ControlError:
        raise
    except ClusterError as error:
        raise ClusterError(f"{verb} {what}: {error}") from None


def _explain(error: ApiError) -> str:
    message = " ".join(error.message.split())
    if error.status == 403:
        return f"forbidden (RBAC): {message}"
    if error.status == 404:
        return f"not found ({message})"
    if error.status == 401:
        return f"the API server rejected our credentials: {message}"
    return f"HTTP {error.status} {error.reason}: {message}"


def get_object(
    cluster: Cluster, resource: Resource, namespace: str, name: str, *, verb: str = "get"
) -> JSON:
    """The object; errors name ``verb`` (what the caller was doing) and the object."""
    what = f"{resource.kind.lower()}/{name}"
    found = calling(
        verb, what, lambda: cluster.request("GET", resource.object_path(namespace, name))
    )
    found.setdefault("apiVersion", resource.api_version)
    found.setdefault("kind", resource.kind)
    return found


def selector_of(obj: Mapping[str, Any]) -> str:
    """The label selector (query syntax) of a workload's or a Service's pods."""
    kind = str(obj.get("kind", ""))
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    if kind == "Service":
        return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def list_pods(
    cluster: Cluster, namespace: str, selector: str, what: str, *, verb: str = "list the pods of"
) -> list[JSON]:
    if not selector:
        raise ControlError(f"{verb} {what}: it selects no pods (empty selector)")
    listing = calling(verb, what, lambda: cluster.list_objects(POD, namespace, selector))
    return list(listing.get("items") or [])


def pod_log(
    cluster: Cluster,
    namespace: str,
    pod: str,
    *,
    container: str | None,
    previous: bool,
    tail: int | None,
    since: int | None,
) -> str:
    query: list[tuple[str, Any]] = []
    if container:
        query.append(("container", container))
    if previous:
        query.append(("previous", "true"))
    if tail is not None:
        query.append(("tailLines", tail))
    if since is not None:
        query.append(("sinceSeconds", since))
    path = f"{POD.object_path(namespace, pod)}/log"
    return calling(
        "read the logs of",
        f"pod/{pod}" + (f" container {container}" if container else ""),
        lambda: cluster.request_text(path, query=query, timeout=_LOG_TIMEOUT),
    )


def patch_object(
    cluster: Cluster,
    resource: Resource,
    namespace: str,
    name: str,
    patch: Mapping[str, Any] | Sequence[Any],
    *,
    verb: str = "patch",
) -> JSON:
    """A JSON patch (a list), else a strategic merge patch; a merge patch for kinds without
    strategic merge (custom resources answer 415 to it)."""
    path = resource.object_path(namespace, name)
    what = f"{resource.kind.lower()}/{name}"
    if not isinstance(patch, Mapping):
        return calling(
            verb,
            what,
            lambda: cluster.request("PATCH", path, body=list(patch), content_type=_JSON_PATCH),
        )
    body = dict(patch)
    try:
        return cluster.request("PATCH", path, body=body, content_type=_STRATEGIC)
    except ApiError as error:
        if error.status != 415:
            raise ControlError(f"{verb} {what}: {_explain(error)}") from None
    except ClusterError as error:
        raise ClusterError(f"{verb} {what}: {error}") from None
    return calling(
        verb, what, lambda: cluster.request("PATCH", path, body=body, content_type=_MERGE)
    )


def restart_workload(cluster: Cluster, resource: Resource, namespace: str, name: str) -> JSON:
    """A rollout restart, as kubectl does it: a new annotation on the pod template."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamp = f"{stamp[:-1]}.{time.time_ns() % 1_000_000_000:09d}Z"  # two restarts a second
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    return patch_object(cluster, resource, namespace, name, patch, verb="restart")


def scale_workload(
    cluster: Cluster, resource: Resource, namespace: str, name: str, replicas: int
) -> JSON:
    path = f"{resource.object_path(namespace, name)}/scale"
    return calling(
        "scale",
        f"{resource.kind.lower()}/{name}",
        lambda: cluster.request(
            "PATCH", path, body={"spec": {"replicas": replicas}}, content_type=_MERGE
        ),
    )


def delete_object(
    cluster: Cluster,
    resource: Resource,
    namespace: str,
    name: str,
    *,
    verb: str = "delete",
    missing_ok: bool = False,
) -> None:
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    try:
        cluster.request("DELETE", resource.object_path(namespace, name), body=body)
    except ApiError as error:
        if missing_ok and error.status == 404:
            return
        raise ControlError(f"{verb} {resource.kind.lower()}/{name}: {_explain(error)}") from None


def wait_gone(
    cluster: Cluster, resource: Resource, namespace: str, names: Sequence[str], deadline: float
) -> None:
    """Return once none of ``names`` exists (watching, not polling)."""
    for name in names:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlError(f"{resource.kind.lower()}/{name} still exists")
        calling(
            "wait for the deletion of",
            f"{resource.kind.lower()}/{name}",
            lambda name=name, remaining=remaining: cluster._wait_gone(  # type: ignore[misc]
                resource, namespace, name, remaining
            ),
        )


def list_events(cluster: Cluster, namespace: str) -> list[JSON]:
    listing = calling(
        "list the events of",
        f"namespace {namespace}",
        lambda: cluster.list_objects(EVENT, namespace),
    )
    return list(listing.get("items") or [])


_BUILT_IN = {
    "configmap": Resource("v1", "ConfigMap", "configmaps", True),
    "secret": Resource("v1", "Secret", "secrets", True),
    "persistentvolumeclaim": Resource(
        "v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced=True
    ),
    "serviceaccount": Resource("v1", "ServiceAccount", "serviceaccounts", True),
    "endpointslice": Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
    "event": EVENT,
    **WORKLOADS,
}


def find_resource(cluster: Cluster, kind: str) -> Resource:
    """The namespaced resource a kind word names: ``Deployment``, ``deployments``,
    ``deploy``, ``deployments.apps``, ``widgets.example.com`` (discovery, cached)."""
    wanted = kind.strip().lower()
    plural, _, group = wanted.partition(".")
    if not group and wanted in _BUILT_IN:
        return _BUILT_IN[wanted]
    groups = calling("discover", "the API groups", lambda: cluster.request("GET", "/apis"))
    versions = ["v1"] + [
        str((entry.get("preferredVersion") or {}).get("groupVersion"))
        for entry in groups.get("groups") or []
        if not group or entry.get("name") == group
    ]
    for api_version in versions:
        if group and api_version == "v1":
            continue
        for entry in cluster._resource_list(api_version):
            name = str(entry.get("name", ""))
            if "/" in name:
                continue
            names = {
                name,
                str(entry.get("singularName") or ""),
                str(entry.get("kind", "")).lower(),
                *(str(short) for short in entry.get("shortNames") or []),
            }
            if (plural if group else wanted) in names:
                kind_name = str(entry["kind"])
                resource = Resource(api_version, kind_name, name, bool(entry["namespaced"]))
                if not resource.namespaced:
                    raise ControlError(
                        f"get {kind}: {resource.kind} is cluster-scoped; an environment holds "
                        "namespaced objects only"
                    )
                return resource
    raise ControlError(f"get {kind}: {cluster.description} serves no kind of that name")
