"""The synchronous side of the API: connecting, discovery, namespaces, server-side apply,
lists and watches. Objects travel as plain JSON dicts (no generated models): an environment
holds arbitrary kinds, and decoding into models would only cost time.

Credentials come from kubefixtures.kube.config, requests go over the standard library's
http.client (kubefixtures.kube._http): nothing here imports the official client, whose
import alone used to cost a third of the time to bring a small environment up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kubefixtures.clock import SYSTEM_CLOCK, Clock, ServerClock
from kubefixtures.errors import ApplyError, ClusterError, KubefixturesError
from kubefixtures.kube._http import Connections, Response, Stream
from kubefixtures.kube.config import ClusterConfig, describe, load_config
from kubefixtures.kube.errors import ApiError, Conflict, Forbidden, NotFound

__all__ = ["ApiError", "Cluster", "Resource", "WatchStream"]

FIELD_MANAGER = "kubefixtures"
_CONNECT_TIMEOUT = 5.0
_REQUEST_TIMEOUT = 30.0
_POOL_SIZE = 32  # concurrent applies + one watch per watched kind + port-forward lookups
_APPLY_WORKERS = 8
# Connections opened ahead, once connected: an apply burst, the watches and their lists.
_WARM_CONNECTIONS = _APPLY_WORKERS + 4
# Admission errors a freshly created namespace may return for a moment: its `default`
# ServiceAccount is created asynchronously by the controller manager.
_TRANSIENT_APPLY_MARKERS = ("serviceaccount", "service account")

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: ``/apis/apps/v1`` + ``deployments``, namespaced or not."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def collection_path(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{quote(name)}"


POD = Resource("v1", "Pod", "pods", namespaced=True)
EVENT = Resource("v1", "Event", "events", namespaced=True)
ENDPOINT_SLICE = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True)
NAMESPACE = Resource("v1", "Namespace", "namespaces", namespaced=False)
SECRET = Resource("v1", "Secret", "secrets", namespaced=True)
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases", namespaced=True)
# An operator-maintained pool's spec (the chart's crds/pools.yaml; docs/pool.md).
POOL = Resource("kubefixtures.io/v1alpha1", "Pool", "pools", namespaced=True)
CRD = Resource(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io/v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    namespaced=False,
)
MUTATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io/v1",
    "MutatingWebhookConfiguration",
    "mutatingwebhookconfigurations",
    namespaced=False,
)


def _status_message(body: bytes) -> tuple[str, str]:
    """``(reason, message)`` of an error response: a Status object, or the start of the body."""
    text = body[:300].decode("utf-8", "replace").strip()
    try:
        status = json.loads(body)
        return str(status.get("reason") or ""), str(status.get("message") or text)
    except (ValueError, AttributeError):
        return "", text


class WatchStream:
    """An open watch: iterate for events; ``close()`` from another thread ends the iteration."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[JSON]:
        for line in self._stream.lines():
            yield json.loads(line)

    def close(self) -> None:
        self._stream.close()


class Cluster:
    """One cluster, as reached through a kubeconfig context (or the in-cluster config)."""

    def __init__(self, config: ClusterConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.context = config.context
        self.description = describe(config)  # "context X (https://host:port)", for messages
        # The API server's time of day, measured on every answer: what Leases are written
        # and judged in (this machine's clock may be minutes off).
        self.server_clock = ServerClock(clock)
        self._connections = Connections(config, keep=_POOL_SIZE, server_clock=self.server_clock)
        self._resources: dict[tuple[str, str], Resource] = {}
        self._resource_lists: dict[str, list[JSON]] = {}
        self._lock = threading.Lock()

    # --- connecting -----------------------------------------------------------------------

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
    ) -> Cluster:
        """Load credentials, then check the cluster answers and lets us create namespaces
        (or, given an existing ``namespace`` to work in, Leases in it).

        Raises ClusterError with one line saying which kubeconfig/context failed and why.
        """
        cluster = cls(load_config(kubeconfig, context))
        try:
            cluster.check_access(namespace)
        except BaseException:
            cluster.close()
            raise
        cluster._connections.warm(_WARM_CONNECTIONS, _CONNECT_TIMEOUT)
        return cluster

    @classmethod
    def connect_to_read(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        """A connection for commands that only read or delete what exists (reapers,
        ``status``, ``down``): the cluster must answer, no right to create is checked."""
        cluster = cls(load_config(kubeconfig, context))
        try:
            cluster.check_reachable()
        except ClusterError:
            cluster.close()
            raise
        return cluster

    def check_access(self, namespace: str | None = None) -> None:
        self.check_reachable()
        attributes: dict[str, str] = {"verb": "create", "resource": "namespaces"}
        if namespace:
            attributes = {
                "verb": "create",
                "group": "coordination.k8s.io",
                "resource": "leases",
                "namespace": namespace,
            }
        review = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
        if not (review.get("status") or {}).get("allowed"):
            if namespace:
                raise ClusterError(
                    f"{self.description}: these credentials may not create leases in namespace "
                    f"{namespace}, which --kubefixtures-namespace needs (the session's lease)"
                )
            raise ClusterError(
                f"{self.description}: these credentials may not create namespaces, which "
                "kubefixtures needs (one per environment; --kubefixtures-namespace NAME "
                "works in an existing namespace instead)"
            )

    def check_reachable(self) -> None:
        """One GET /version: raises ClusterError naming the cluster when it does not answer."""
        try:
            self.request("GET", "/version", timeout=(_CONNECT_TIMEOUT, 10.0))
        except ApiError as error:
            raise ClusterError(f"{self.description}: the API server refused us: {error}") from None
        except ClusterError as error:
            raise ClusterError(f"{self.description} is unreachable: {error}") from None

    # --- raw requests ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> Response:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        encoded = None if body is None else json.dumps(body).encode()
        return self._connections.request(
            method, _target(path, query), body=encoded, headers=headers, timeout=_timeout(timeout)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON:
        """One API call; returns the decoded JSON body or raises ApiError/ClusterError."""
        response = self._call(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        _raise_for_status(response.status, response.reason, response.data)
        decoded: JSON = json.loads(response.data) if response.data else {}
        return decoded

    def request_text(
        self,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        timeout: float | tuple[float, float] | None = None,
    ) -> str:
        """A GET whose answer is text rather than JSON (a container's log)."""
        response = self._call("GET", path, query=query, timeout=timeout)
        _raise_for_status(response.status, response.reason, response.data)
        return response.data.decode("utf-8", "replace")

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> WatchStream:
        """Open a watch from ``resource_version``; the server ends it after ``timeout_seconds``."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", timeout_seconds),
            ("allowWatchBookmarks", "true"),
        ]
        stream = self._connections.stream(
            _target(resource.collection_path(namespace), query),
            headers={"Accept": "application/json"},
            timeout=(_CONNECT_TIMEOUT, timeout_seconds + 10.0),
        )
        if not 200 <= stream.status <= 299:
            _raise_for_status(stream.status, stream.reason, stream.read_all())
        return WatchStream(stream)

    def list_objects(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON:
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        return self.request(
            "GET", resource.collection_path(namespace), query=query, timeout=timeout
        )

    def create(
        self,
        resource: Resource,
        namespace: str | None,
        body: Mapping[str, Any],
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON:
        return self.request("POST", resource.collection_path(namespace), body=body, timeout=timeout)

    def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON:
        return self.request(
            "PATCH",
            resource.object_path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
            timeout=timeout,
        )

    def delete_unchanged(
        self, resource: Resource, namespace: str | None, name: str, preconditions: Mapping[str, str]
    ) -> bool:
        """Delete the object only if it still matches ``preconditions`` (uid,
        resourceVersion); False when it changed meanwhile or is gone already."""
        try:
            self._delete(resource, namespace, name, preconditions)
        except (NotFound, Conflict):
            return False
        return True

    def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete the object (in the background); False when it is gone already."""
        try:
            self._delete(resource, namespace, name)
        except NotFound:
            return False
        return True

    def _delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        preconditions: Mapping[str, str] | None = None,
    ) -> None:
        """Delete in the background: what the object owns goes after it."""
        options: JSON = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if preconditions is not None:
            options["preconditions"] = dict(preconditions)
        self.request("DELETE", resource.object_path(namespace, name), body=options)

    def get_or_none(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON | None:
        """The object, or None when the cluster has no such object."""
        try:
            return self.request("GET", resource.object_path(namespace, name), timeout=timeout)
        except NotFound:
            return None

    def namespace(
        self, name: str, timeout: float | tuple[float, float] | None = None
    ) -> JSON | None:
        """The Namespace ``name``, or None when there is none."""
        return self.get_or_none(NAMESPACE, None, name, timeout)

    def items(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> list[JSON]:
        """The objects of a list (``list_objects`` without the list around them)."""
        listing = self.list_objects(resource, namespace, label_selector, timeout=timeout)
        return list(listing.get("items") or [])

    def events(
        self, namespace: str, timeout: float | tuple[float, float] | None = None
    ) -> list[JSON]:
        return self.items(EVENT, namespace, timeout=timeout)

    def pods(
        self, namespace: str, timeout: float | tuple[float, float] | None = None
    ) -> list[JSON]:
        return self.items(POD, namespace, timeout=timeout)

    def secrets(
        self, namespace: str, timeout: float | tuple[float, float] | None = None
    ) -> list[JSON]:
        return self.items(SECRET, namespace, timeout=timeout)

    def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        tail: int | None = None,
        previous: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> str:
        """A container's log (its last ``tail`` lines; of its previous instance)."""
        query: list[tuple[str, Any]] = [("container", container)]
        if tail is not None:
            query.append(("tailLines", tail))
        if previous:
            query.append(("previous", "true"))
        path = f"{POD.object_path(namespace, pod)}/log"
        return self.request_text(path, query=query, timeout=timeout)

    # --- discovery ------------------------------------------------------------------------

    def resource_for(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving ``kind`` in ``api_version``, or None when the cluster lacks it."""
        key = (api_version, kind)
        with self._lock:
            if key in self._resources:
                return self._resources[key]
        listing = self._resource_list(api_version)
        for entry in listing:
            if entry.get("kind") == kind and "/" not in str(entry.get("name", "")):
                found = Resource(api_version, kind, entry["name"], bool(entry.get("namespaced")))
                with self._lock:
                    self._resources[key] = found
                return found
        return None

    def _resource_list(self, api_version: str) -> list[JSON]:
        with self._lock:
            if api_version in self._resource_lists:
                return self._resource_lists[api_version]
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            resources = list(self.request("GET", path).get("resources") or [])
        except NotFound:
            resources = []
        with self._lock:
            self._resource_lists[api_version] = resources
        return resources

    def listable_namespaced_resources(
        self, timeout: float | tuple[float, float] | None = None
    ) -> list[Resource]:
        """Every namespaced kind that can be listed, in each API group's preferred version
        (the kinds of an aggregated API that does not answer are left out)."""
        return self.listable_resources(namespaced=True, timeout=timeout)

    def listable_resources(
        self,
        *,
        namespaced: bool,
        verbs: Sequence[str] = ("list",),
        timeout: float | tuple[float, float] | None = None,
    ) -> list[Resource]:
        """Every namespaced (or cluster-scoped) kind allowing ``verbs``, in each API group's
        preferred version (the kinds of an aggregated API that does not answer are left out)."""
        groups = self.request("GET", "/apis", timeout=timeout).get("groups") or []
        versions = ["v1"] + [
            str(group["preferredVersion"]["groupVersion"])
            for group in groups
            if group.get("preferredVersion")
        ]

        def listable(api_version: str) -> list[Resource]:
            path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            try:
                listing = self.request("GET", path, timeout=timeout)
            except KubefixturesError:  # an aggregated API that is down: skip it
                return []
            return [
                Resource(api_version, str(entry.get("kind", "")), str(entry["name"]), namespaced)
                for entry in listing.get("resources") or []
                if "/" not in str(entry.get("name", ""))
                and bool(entry.get("namespaced")) == namespaced
                and all(verb in (entry.get("verbs") or []) for verb in verbs)
            ]

        with ThreadPoolExecutor(max_workers=_APPLY_WORKERS) as pool:
            return [resource for found in pool.map(listable, versions) for resource in found]

    def resolve(
        self,
        objects: Sequence[tuple[str, str, str]],
        defined: Mapping[tuple[str, str], Resource] | None = None,
    ) -> list[Resource]:
        """Resources for ``(api_version, kind, location)`` triples, all looked up at once
        (discovery, cached per API version).

        ``defined`` holds kinds the cluster may not serve yet, keyed by ``(api_version,
        kind)``: those of CustomResourceDefinitions that come with the objects. Raises
        ApplyError naming the location of a kind that is neither served nor defined.
        """
        defined = defined or {}
        versions = sorted(
            {api_version for api_version, kind, _ in objects if (api_version, kind) not in defined}
        )
        with ThreadPoolExecutor(max_workers=min(len(versions), 8) or 1) as pool:
            list(pool.map(self._resource_list, versions))
        resolved = []
        for api_version, kind, location in objects:
            resource = defined.get((api_version, kind)) or self.resource_for(api_version, kind)
            if resource is None:
                raise ApplyError(
                    f"{location}: {self.description} does not serve kind {kind} "
                    f"in apiVersion {api_version}"
                )
            resolved.append(resource)
        return resolved

    # --- namespaces -----------------------------------------------------------------------

    def create_namespace(self, name: str, labels: Mapping[str, str]) -> JSON:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)},
        }
        try:
            return self.request("POST", "/api/v1/namespaces", body=body)
        except ApiError as error:
            raise ClusterError(f"creating namespace {name} failed: {error}") from None

    def delete_namespace(self, name: str, wait: bool = False, timeout: float = 120.0) -> None:
        """Ask for the namespace's deletion; with ``wait``, return once it is gone."""
        try:
            self._delete(NAMESPACE, None, name)
        except NotFound:
            return
        except ApiError as error:
            raise ClusterError(f"deleting namespace {name} failed: {error}") from None
        if wait:
            self._wait_gone(NAMESPACE, None, name, timeout)

    def _wait_gone(
        self, resource: Resource, namespace: str | None, name: str, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listing = self.request(
                "GET",
                resource.collection_path(namespace),
                query=[("fieldSelector", f"metadata.name={name}")],
            )
            if not listing.get("items"):
                return
            version = listing["metadata"]["resourceVersion"]
            remaining = max(1, int(deadline - time.monotonic()))
            stream = self.watch(resource, namespace, version, min(remaining, 60))
            for event in stream:
                if event.get("type") == "DELETED" and event["object"]["metadata"]["name"] == name:
                    stream.close()
                    return
        raise ClusterError(f"{resource.kind.lower()} {name} still exists after {timeout:.0f} s")

    # --- apply ----------------------------------------------------------------------------

    def apply(
        self,
        resource: Resource,
        manifest: Mapping[str, Any],
        namespace: str,
        deadline: float,
        location: str = "",
    ) -> JSON:
        """Server-side apply one object (field manager ``kubefixtures``, conflicts forced)."""
        body = dict(manifest)
        body["metadata"] = {**manifest["metadata"], "namespace": namespace}
        path = resource.object_path(namespace, manifest["metadata"]["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        delay = 0.05
        while True:
            try:
                return self.request(
                    "PATCH",
                    path,
                    query=query,
                    body=body,
                    content_type="application/apply-patch+yaml",
                )
            except ApiError as error:
                transient = isinstance(error, Forbidden) and any(
                    marker in error.message.lower() for marker in _TRANSIENT_APPLY_MARKERS
                )
                if not transient or time.monotonic() + delay > deadline:
                    where = f"{location}: " if location else ""
                    raise ApplyError(
                        f"{where}{resource.kind.lower()}/{manifest['metadata']['name']} was "
                        f"rejected: {error.message}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def apply_all(
        self,
        items: Sequence[tuple[Resource, Mapping[str, Any], str]],
        namespace: str,
        deadline: float,
    ) -> list[JSON]:
        """Apply every ``(resource, manifest, location)`` concurrently; the first error wins."""
        if not items:
            return []

        def one(item: tuple[Resource, Mapping[str, Any], str]) -> JSON:
            resource, manifest, location = item
            return self.apply(resource, manifest, namespace, deadline, location)

        with ThreadPoolExecutor(max_workers=min(len(items), _APPLY_WORKERS)) as pool:
            return list(pool.map(one, items))

    def close(self) -> None:
        self._connections.close()


def _target(path: str, query: Sequence[tuple[str, Any]]) -> str:
    return f"{path}?{urlencode([(key, str(value)) for key, value in query])}" if query else path


def _timeout(timeout: float | tuple[float, float] | None) -> tuple[float, float]:
    if timeout is None:
        return (_CONNECT_TIMEOUT, _REQUEST_TIMEOUT)
    if isinstance(timeout, tuple):
        return timeout
    return (min(timeout, _CONNECT_TIMEOUT), timeout)


def _raise_for_status(status: int, reason: str, data: bytes) -> None:
    if not 200 <= status <= 299:
        status_reason, message = _status_message(data)
        raise ApiError(status, status_reason or reason, message)


def run_concurrently(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads; return their results in order, or raise the first error."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=min(len(calls), _APPLY_WORKERS)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]
