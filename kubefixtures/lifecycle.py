"""The life of one environment: render -> connect -> create namespace -> apply -> wait ready
-> forward -> details, and the teardown that undoes it.

Every step is a method, so later features (a Lease in the namespace, sharing with xdist
workers, diagnostics) slot in between steps rather than into one long function. Anything
that fails before the namespace exists leaves nothing behind; anything that fails after it
stops the forwards and deletes (or, with keep-on-failure, keeps) the namespace.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from kubefixtures import naming
from kubefixtures.details import Environment, EnvironmentDetails, ObjectRef, ServiceDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.lease import DEFAULT_KEEP_SECONDS, holder_identity
from kubefixtures.rendering import RenderContext, RenderedObject, render_sources

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster, Resource
    from kubefixtures.kube.lease import SessionLease
    from kubefixtures.session import SessionState

__all__ = ["EnvironmentSpec", "Lifecycle", "PortForward", "service_details"]

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an ``environment(...)`` declaration asked for."""

    name: str
    sources: tuple[Path, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None


class PortForward(Protocol):
    """What the lifecycle needs of kubefixtures.kube.portforward.ServicePortForward."""

    @property
    def local_port(self) -> int: ...

    def start(self) -> Any: ...

    def stop(self) -> Any: ...


class Lifecycle:
    """Brings one environment up (``setup``) and down (``teardown``)."""

    def __init__(self, spec: EnvironmentSpec, session: SessionState) -> None:
        self.spec = spec
        self.session = session
        self.settings = session.settings
        self.timeout = spec.timeout or self.settings.ready_timeout
        self.namespace: str | None = None
        self.cluster: Cluster | None = None
        self.objects: list[RenderedObject] = []
        self.forwards: list[PortForward] = []
        self.environment: Environment | None = None
        self._started = 0.0
        self._deadline = 0.0
        self._created = False
        self._cancelled = threading.Event()
        self.lease: SessionLease | None = None  # proof of life for the operator and gc

    # --- setup ----------------------------------------------------------------------------

    def setup(self) -> Environment:
        """Bring the environment up; raise a KubefixturesError (after cleaning up) if it fails.

        Prints nothing: the caller reports (``report_ready``), so that setup can also run in
        a background thread.
        """
        self._started = time.monotonic()
        self._deadline = self._started + self.timeout
        namespace = naming.namespace_name(self.settings.namespace_prefix, self.spec.name)
        # Connecting (importing the client, two round trips) overlaps with rendering, which
        # may run helm; neither creates anything.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kubefixtures-setup")
        try:
            connecting: Future[Cluster] = pool.submit(self.session.cluster)
            # The forwarder's imports (asyncio, httpx) are paid while pods start.
            pool.submit(_import_forwarder)
            context = self._render(namespace)
            self.cluster = connecting.result()
        finally:
            # A render error is reported at once, without waiting for a slow connection.
            pool.shutdown(wait=False)
        resources = self._resolve(self.cluster)
        try:
            self._create_namespace(self.cluster, namespace)
            self._apply(self.cluster, resources)
            services = self._wait_ready_and_forward(self.cluster, resources)
        except BaseException as error:
            self._abort(error)
            raise
        self.environment = Environment(self._details(context, services), self._manifests())
        return self.environment

    def _render(self, namespace: str) -> RenderContext:
        context = RenderContext(
            namespace=namespace,
            session_id=self.session.session_id,
            environment=self.spec.name,
            values=self.spec.values,
            secrets=self.session.secrets,
            image_overrides=self.settings.image_overrides,
        )
        self.objects = render_sources(self.spec.sources, context)
        return context

    def _resolve(self, cluster: Cluster) -> list[Resource]:
        return cluster.resolve([(obj.api_version, obj.kind, obj.location) for obj in self.objects])

    def _create_namespace(self, cluster: Cluster, namespace: str) -> None:
        labels = naming.namespace_labels(self.session.session_id, self.spec.name)
        self.namespace = namespace
        cluster.create_namespace(namespace, labels)
        self._created = True
        # Before anything is applied: a session killed from here on leaves a namespace whose
        # lease expires, and the operator (or `kubefixtures gc`) reaps it.
        from kubefixtures.kube.lease import SessionLease

        self.lease = SessionLease(
            cluster,
            namespace,
            holder_identity(self.session.session_id),
            self.settings.lease_duration,
            labels=labels,
            warn=self.session.write_line,
        )
        self.lease.create()
        self.lease.start()

    def _apply(self, cluster: Cluster, resources: Sequence[Resource]) -> None:
        assert self.namespace is not None
        items = [
            (resource, obj.manifest, obj.location)
            for resource, obj in zip(resources, self.objects, strict=True)
        ]
        cluster.apply_all(items, self.namespace, self._deadline)

    def _wait_ready_and_forward(
        self, cluster: Cluster, resources: Sequence[Resource]
    ) -> dict[str, ServiceDetails]:
        """Wait for readiness; forward each Service's ports as soon as it has ready endpoints,
        while the rest of the environment comes up."""
        from kubefixtures.kube import Tracked, wait_ready  # lazy, like all of kube

        assert self.namespace is not None
        services = {service["metadata"]["name"]: service for service in self._services()}
        tracked = [
            Tracked(resource, obj.name)
            for resource, obj in zip(resources, self.objects, strict=True)
        ]
        starting: dict[tuple[str, int], Future[PortForward]] = {}
        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kubefixtures-forward")

        def forward_when_ready(item: Tracked) -> None:
            if item.resource.kind == "Service" and item.name in services:
                for port in _tcp_ports(services[item.name]):
                    key = (item.name, int(port["port"]))
                    starting[key] = pool.submit(self._start_forward, cluster, *key)

        try:
            wait_ready(
                cluster,
                self.namespace,
                tracked,
                deadline=self._deadline,
                environment=self.spec.name,
                started=self._started,
                on_ready=forward_when_ready,
                cancelled=self._cancelled,
            )
            # Every Service is tracked, so each was announced ready before wait_ready returned.
            local_ports: dict[str, dict[int, int]] = {}
            for (name, port), future in starting.items():
                local_ports.setdefault(name, {})[port] = future.result().local_port
        finally:
            pool.shutdown(wait=True)
        return {
            name: service_details(service, self.namespace, local_ports[name])
            for name, service in services.items()
        }

    def _services(self) -> list[Mapping[str, Any]]:
        return [
            obj.manifest
            for obj in self.objects
            if obj.kind == "Service"
            and obj.api_version == "v1"
            and (obj.manifest.get("spec") or {}).get("type") != "ExternalName"
            and _tcp_ports(obj.manifest)
        ]

    def _start_forward(self, cluster: Cluster, service: str, port: int) -> PortForward:
        from kubefixtures.kube.portforward import ServicePortForward  # lazy, like all of kube

        assert self.namespace is not None
        remaining = max(self._deadline - time.monotonic(), 1.0)
        forward = ServicePortForward(
            cluster.configuration, self.namespace, service, port, ready_timeout=remaining
        )
        self.forwards.append(forward)  # list.append is atomic: teardown sees every forward
        forward.start()
        return forward

    def _details(
        self, context: RenderContext, services: dict[str, ServiceDetails]
    ) -> EnvironmentDetails:
        assert self.namespace is not None
        assert self.cluster is not None
        return EnvironmentDetails(
            name=self.spec.name,
            namespace=self.namespace,
            context=self.cluster.context,
            session_id=self.session.session_id,
            services=services,
            objects=[
                ObjectRef(
                    api_version=obj.api_version,
                    kind=obj.kind,
                    name=obj.name,
                    namespace=self.namespace,
                )
                for obj in self.objects
            ],
            secrets={
                name: SecretStr(self.session.secrets.get(name))
                for name in sorted(context.used_secrets)
            },
            ready_seconds=round(time.monotonic() - self._started, 3),
        )

    def _manifests(self) -> list[dict[str, Any]]:
        return [
            {**obj.manifest, "metadata": {**obj.manifest["metadata"], "namespace": self.namespace}}
            for obj in self.objects
        ]

    def report_ready(self) -> None:
        """Write the environment's line to the terminal: namespace, objects, time, services."""
        assert self.environment is not None
        details = self.environment.details
        services = ", ".join(
            f"{name} {service.url or f'{service.host}:{service.port}'}"
            for name, service in details.services.items()
        )
        self.session.write_line(
            f"kubefixtures: environment {self.spec.name!r} ready in {details.ready_seconds:.1f} s: "
            f"namespace {details.namespace}, {len(details.objects)} objects"
            + (f", {services}" if services else "")
        )

    # --- teardown ---------------------------------------------------------------------------

    def cancel(self) -> None:
        """Make a setup running in another thread give up soon (and clean up after itself)."""
        self._cancelled.set()

    def _abort(self, error: BaseException) -> None:
        """Undo a setup that failed part-way: keep the namespace only if asked to (and not
        when the setup was cancelled: nobody will look at it)."""
        keep = (
            self.settings.keep_on_failure
            and isinstance(error, KubefixturesError)
            and not self._cancelled.is_set()
        )
        try:
            self.teardown(keep=keep, why="its setup failed")
        except KubefixturesError as cleanup_error:
            # The setup error matters more; say what may be left behind, and go on.
            self.session.write_line(f"kubefixtures: cleanup after a failed setup: {cleanup_error}")

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        """Stop the forwards, then delete the namespace (or keep it and say how to look)."""
        forwards, self.forwards = self.forwards, []
        for forward in forwards:
            try:
                forward.stop()
            except Exception as error:  # one stuck forward must not keep the namespace alive
                self.session.write_line(f"kubefixtures: stopping a port-forward: {error}")
        if not self._created or self.cluster is None or self.namespace is None:
            return
        if keep:
            self.session.summary_lines.append(self._kept_message(why))
            self._finish_lease(keep_for=DEFAULT_KEEP_SECONDS)
            return
        self._created = False
        self._finish_lease(keep_for=None)
        self.cluster.delete_namespace(self.namespace, wait=self.settings.wait_for_delete)

    def _finish_lease(self, keep_for: float | None) -> None:
        lease, self.lease = self.lease, None
        line = lease.finish(keep_for) if lease is not None else None
        if line:
            self.session.summary_lines.append(line)

    def _kept_message(self, why: str) -> str:
        assert self.namespace is not None
        assert self.cluster is not None
        kubectl = "kubectl"
        if self.cluster.context:
            kubectl += f" --context {shlex.quote(self.cluster.context)}"
        kubectl += f" -n {self.namespace}"
        return (
            f"kept namespace {self.namespace} of environment {self.spec.name!r} ({why}); "
            f"inspect: {kubectl} get all,events; {kubectl} describe pods; "
            f"{kubectl} logs POD --all-containers; "
            f"remove: kubectl delete namespace {self.namespace}"
        )


def _tcp_ports(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ports = (service.get("spec") or {}).get("ports") or []
    return [port for port in ports if (port.get("protocol") or "TCP") == "TCP"]


def _scheme(port: Mapping[str, Any]) -> str | None:
    for hint in (str(port.get("name") or ""), str(port.get("appProtocol") or "")):
        lowered = hint.lower()
        for scheme in ("https", "http"):
            if lowered == scheme or lowered.startswith(f"{scheme}-"):
                return scheme
    return None


def service_details(
    service: Mapping[str, Any], namespace: str, local_ports: Mapping[int, int]
) -> ServiceDetails:
    """ServiceDetails of a Service manifest whose ports are forwarded to ``local_ports``."""
    ports = _tcp_ports(service)
    url = None
    for port in ports:
        scheme = _scheme(port)
        if scheme:
            url = f"{scheme}://{LOCALHOST}:{local_ports[int(port['port'])]}"
            break
    return ServiceDetails(
        name=service["metadata"]["name"],
        namespace=namespace,
        host=LOCALHOST,
        port=local_ports[int(ports[0]["port"])],
        ports={int(port["port"]): local_ports[int(port["port"])] for port in ports},
        named_ports={
            str(port["name"]): local_ports[int(port["port"])] for port in ports if port.get("name")
        },
        url=url,
    )


def _import_forwarder() -> None:
    import kubefixtures.kube.portforward  # noqa: F401 - imported for its side effect: warm
