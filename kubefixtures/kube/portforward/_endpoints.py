"""Which pod, and which of its ports, a forwarded Service port leads to.

Pure functions over the JSON the apiserver returns (Service, EndpointSlices, Pods), so the
choice can be unit-tested without a cluster. EndpointSlices are the source of truth: the
endpoint controller already resolved named targetPorts per pod and judged readiness, and
the slices of one Service can be watched with one request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubefixtures.kube.pods import describe_container

JSON = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ServicePortError(Exception):
    """The Service cannot be port-forwarded the way it was asked."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str  # "" for an unnamed port, as in EndpointSlice ports
    port: int
    target_port: int | str
    protocol: str


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One ready pod and the container port to dial in it."""

    pod: str
    port: int
    address: str = ""  # the pod's IP, for a direct route ("" when the slice gave none)


@dataclass(frozen=True)
class KnownEndpoints:
    """A Service and its EndpointSlices as the caller has just listed them, with the slice
    list's resourceVersion: a forward starts from them instead of asking the API again, and
    watches the slices from that version on (a pool's spare, confirmed ready by one list)."""

    service: JSON
    slices: list[JSON]
    version: str

    @classmethod
    def find(
        cls, name: str, services: list[JSON], slices: list[JSON], version: str
    ) -> KnownEndpoints | None:
        """Service ``name`` and its slices, among a namespace's (None: not among them)."""
        for service in services:
            if service.get("metadata", {}).get("name") == name:
                own = [
                    item
                    for item in slices
                    if (item.get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
                    == name
                ]
                return cls(service, own, version)
        return None

    def slice_list(self) -> JSON:
        """The slices as the API lists them."""
        return {"items": list(self.slices), "metadata": {"resourceVersion": self.version}}


def describe_ports(service: JSON) -> str:
    ports = service.get("spec", {}).get("ports") or []
    return ", ".join(
        f"{p.get('port')}/{p['name']}" if p.get("name") else str(p.get("port")) for p in ports
    )


def resolve_service_port(service: JSON, wanted: int | str) -> ServicePort:
    """The Service port matching `wanted` (a port number, or a port name)."""
    metadata = service.get("metadata", {})
    where = f"Service {metadata.get('namespace')}/{metadata.get('name')}"
    spec = service.get("spec", {})
    if spec.get("type") == "ExternalName":
        raise ServicePortError(f"{where} is an ExternalName Service; there is no pod to forward to")
    if not spec.get("selector"):
        raise ServicePortError(
            f"{where} has no pod selector; only Services backed by pods can be forwarded"
        )
    for entry in spec.get("ports") or []:
        matches = (
            entry.get("name") == wanted if isinstance(wanted, str) else entry.get("port") == wanted
        )
        if isinstance(wanted, str) and wanted.isdigit() and entry.get("port") == int(wanted):
            matches = True
        if matches:
            protocol = entry.get("protocol", "TCP")
            if protocol != "TCP":
                raise ServicePortError(
                    f"{where} port {wanted} is {protocol}; port-forwarding carries TCP only"
                )
            target = entry.get("targetPort", entry["port"])
            return ServicePort(entry.get("name") or "", entry["port"], target, protocol)
    raise ServicePortError(
        f"{where} has no port {wanted!r} (its ports: {describe_ports(service) or 'none'})"
    )


def is_ready(endpoint: JSON) -> bool:
    # The API says a missing `ready` means "unknown, treat as ready"; a terminating
    # endpoint is never ready (it may still be `serving`, but new connections should not go there).
    conditions = endpoint.get("conditions") or {}
    if conditions.get("terminating"):
        return False
    return conditions.get("ready") is not False


def ready_targets(slices: list[JSON], port: ServicePort) -> list[Target]:
    """Every ready pod behind the Service port, sorted by pod name (a stable choice)."""
    targets: set[Target] = set()
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") == "FQDN":
            continue
        number = _slice_port(endpoint_slice, port)
        if number is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") == "Pod" and ref.get("name") and is_ready(endpoint):
                addresses = endpoint.get("addresses") or [""]
                targets.add(Target(ref["name"], number, str(addresses[0])))
    return sorted(targets)


def _slice_port(endpoint_slice: JSON, port: ServicePort) -> int | None:
    # EndpointSlice ports carry the Service port's name and the pod's resolved port number.
    for entry in endpoint_slice.get("ports") or []:
        if (entry.get("name") or "") == port.name and entry.get("port") is not None:
            return int(entry["port"])
    return None


def target_for_pod(pod: JSON, port: ServicePort) -> int | None:
    """The container port a pod serves `port.target_port` on (named ports differ per pod)."""
    target = port.target_port
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for container in pod.get("spec", {}).get("containers") or []:
        for entry in container.get("ports") or []:
            if entry.get("name") == target and entry.get("protocol", "TCP") == "TCP":
                return int(entry["containerPort"])
    return None


def explain_no_ready_pods(service: JSON, pods: list[JSON], port: ServicePort) -> str:
    """Why no pod is ready behind the Service, in a few words fit for one line."""
    selector = service.get("spec", {}).get("selector") or {}
    selector_text = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
    if not pods:
        return f"no pod matches its selector {selector_text}"
    reasons = [_pod_reason(pod, port) for pod in sorted(pods, key=_pod_name)[:3]]
    more = f" (and {len(pods) - 3} more)" if len(pods) > 3 else ""
    return "; ".join(reasons) + more


def _pod_name(pod: JSON) -> str:
    return str(pod.get("metadata", {}).get("name", "?"))


def _pod_reason(pod: JSON, port: ServicePort) -> str:
    name = _pod_name(pod)
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return f"pod {name} is terminating"
    if target_for_pod(pod, port) is None:
        return f"pod {name} has no container port named {port.target_port!r}"
    status = pod.get("status", {})
    phase = status.get("phase", "Unknown")
    details: list[str] = []
    for container in status.get("containerStatuses") or []:
        text = describe_container(container)
        if text is not None:
            details.append(text)
    if not details:
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True" and condition.get("reason"):
                details.append(f"{condition.get('type')}: {condition['reason']}")
    return (
        f"pod {name} not ready (phase {phase}"
        + ("; " + "; ".join(details) if details else "")
        + ")"
    )
