"""Is this Kubernetes object ready, and if not, why? Pure functions over JSON objects.

The wait (kubefixtures.readiness.wait) feeds them what the watches see; keeping the rules here,
away from the API, lets unit tests cover every case without a cluster. The rules follow
``kubectl rollout status`` and ``kubectl wait``: a workload is ready when its controller has
seen the latest spec and enough replicas are available; a Pod when its Ready condition is
true; a Job when Complete; a PVC when Bound; a Service when it has a ready endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kubefixtures.kube.pods import container_statuses, describe_events, describe_pod

__all__ = [
    "WATCHED_KINDS",
    "Readiness",
    "State",
    "assess",
    "describe_events",
    "describe_pod",
    "pod_is_hopeless",
]

Object = Mapping[str, Any]

# (API group, kind) of the objects that have a readiness rule; every other kind is ready
# as soon as the API server accepted it.
WATCHED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("", "Pod"),
        ("batch", "Job"),
        ("", "PersistentVolumeClaim"),
        ("", "Service"),
    }
)

# Waiting reasons that no amount of waiting fixes: fail now rather than at the deadline.
_HOPELESS_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})


class State(Enum):
    READY = "ready"
    PENDING = "pending"
    FAILED = "failed"  # will not become ready by waiting longer


@dataclass(frozen=True)
class Readiness:
    state: State
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state is State.READY


READY = Readiness(State.READY)


def _pending(reason: str) -> Readiness:
    return Readiness(State.PENDING, reason)


def _failed(reason: str) -> Readiness:
    return Readiness(State.FAILED, reason)


def _group(obj: Object) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def _status(obj: Object) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _condition(obj: Object, kind: str) -> Mapping[str, Any] | None:
    for condition in _status(obj).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _is_true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _generation_seen(obj: Object) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = _status(obj).get("observedGeneration")
    return generation is None or (observed is not None and observed >= generation)


def _replicas(obj: Object) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def assess(obj: Object, endpoint_slices: Sequence[Object] = ()) -> Readiness:
    """Readiness of ``obj``; a Service needs its EndpointSlices to be judged."""
    kind = str(obj.get("kind", ""))
    if (_group(obj), kind) not in WATCHED_KINDS:
        return READY
    if kind == "Service":
        return _service(obj, endpoint_slices)
    if kind in _WORKLOADS and not _generation_seen(obj):
        return _pending("the controller has not seen the latest spec yet")
    return _RULES[kind](obj)


def _deployment(obj: Object) -> Readiness:
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _failed(f"progress deadline exceeded: {progressing.get('message', '')}".strip())
    replicas = _replicas(obj)
    updated = int(_status(obj).get("updatedReplicas") or 0)
    if updated < replicas:
        return _pending(f"{updated}/{replicas} replicas updated")
    return _no_surplus(obj) or _replica_counts(obj, "availableReplicas", "available")


def _no_surplus(obj: Object) -> Readiness | None:
    """Pending while pods of an older template, or beyond the wanted count, still run
    (as ``kubectl rollout status`` waits for them): a restart or a scale-down is not over
    while the old pods still serve."""
    status = _status(obj)
    total = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    if total > updated:
        return _pending(f"{total - updated} old replicas pending termination")
    if total > _replicas(obj):
        return _pending(f"{total}/{_replicas(obj)} replicas, scaling down")
    return None


def _replica_counts(obj: Object, field: str, word: str) -> Readiness:
    replicas = _replicas(obj)
    have = int(_status(obj).get(field) or 0)
    if have < replicas:
        return _pending(f"{have}/{replicas} replicas {word}")
    return READY


def _daemon_set(obj: Object) -> Readiness:
    status = _status(obj)
    desired = int(status.get("desiredNumberScheduled") or 0)
    available = int(status.get("numberAvailable") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    if min(available, updated) < desired:
        return _pending(f"{available}/{desired} pods available, {updated} updated")
    return READY


def _pod(obj: Object) -> Readiness:
    phase = _status(obj).get("phase")
    if phase == "Succeeded":
        return READY
    if phase == "Failed":
        return _failed(describe_pod(obj))
    if _is_true(_condition(obj, "Ready")):
        return READY
    if pod_is_hopeless(obj):
        return _failed(describe_pod(obj))
    return _pending(describe_pod(obj))


def _job(obj: Object) -> Readiness:
    if _is_true(_condition(obj, "Complete")):
        return READY
    failed = _condition(obj, "Failed")
    if _is_true(failed):
        assert failed is not None
        return _failed(f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip())
    status = _status(obj)
    completions = (obj.get("spec") or {}).get("completions") or 1
    return _pending(
        f"{status.get('succeeded') or 0}/{completions} completions, "
        f"{status.get('active') or 0} active, {status.get('failed') or 0} failed"
    )


def _pvc(obj: Object) -> Readiness:
    phase = _status(obj).get("phase") or "Pending"
    if phase == "Bound":
        return READY
    if phase == "Lost":
        return _failed("the bound volume was lost")
    return _pending(f"{phase}, not bound")


def _service(obj: Object, endpoint_slices: Sequence[Object]) -> Readiness:
    spec = obj.get("spec") or {}
    # Services without a selector (ExternalName, or endpoints managed by hand) have nothing
    # of ours to wait for.
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return READY
    for endpoint_slice in endpoint_slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            # An absent `ready` condition means ready (EndpointSlice API reference).
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                return READY
    selector = ",".join(f"{key}={value}" for key, value in sorted(spec["selector"].items()))
    return _pending(f"no ready endpoints (selector {selector})")


def _stateful_set(obj: Object) -> Readiness:
    status = _status(obj)
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    if strategy != "OnDelete" and update and current != update:
        updated = int(status.get("updatedReplicas") or 0)
        return _pending(f"rolling update: {updated}/{_replicas(obj)} replicas updated")
    total = int(status.get("replicas") or 0)
    if total > _replicas(obj):
        return _pending(f"{total}/{_replicas(obj)} replicas, scaling down")
    return _replica_counts(obj, "readyReplicas", "ready")


def _replica_set(obj: Object) -> Readiness:
    return _replica_counts(obj, "readyReplicas", "ready")


_WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
_RULES: dict[str, Callable[[Object], Readiness]] = {
    "Deployment": _deployment,
    "StatefulSet": _stateful_set,
    "ReplicaSet": _replica_set,
    "DaemonSet": _daemon_set,
    "Pod": _pod,
    "Job": _job,
    "PersistentVolumeClaim": _pvc,
}


def pod_is_hopeless(pod: Object) -> bool:
    """True when a container waits for a reason that waiting cannot fix (a bad image name)."""
    for container in container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _HOPELESS_REASONS:
            return True
    return False
