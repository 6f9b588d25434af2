"""``KUBEFIXTURES_DETAILS=FILE pytest``: use environments that already run.

``FILE`` is a details file written by ``kubefixtures up`` (several files: separated by
``os.pathsep``). An environment fixture whose name is in one of them uses that environment
and creates or deletes nothing; a fixture whose name is in none of them is an error, since
the run was asked to provision nothing. Before handing the environment to the tests, the
namespace must still exist, and each recorded local port must be serving (the ``up``
process's port-forwards); where one is not (``up`` was stopped, or the tests run on
another machine), the port is forwarded again from the recorded namespace and Service,
on the recorded local port when it is free, on a free one otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.provisioning.base import (
    DETAILS_VARIABLE,
    LOCALHOST,
    EnvironmentSpec,
    Inspection,
    SessionView,
    combined_route,
    inspect,
    ports_to_serve_locally,
    wait_answering,
)
from kubefixtures.rendering import RenderContext, render_sources
from kubefixtures.timing import Phases

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster
    from kubefixtures.kube.portforward import ServicePortForward

__all__ = ["AttachedProvisioning", "find_details", "serving"]


def find_details(files: str, name: str) -> tuple[Path, EnvironmentDetails]:
    """The details of environment ``name`` among ``files`` (``os.pathsep``-separated).

    Errors are one line: a file missing or unreadable, of another version, without a
    required field, or no file naming the environment.
    """
    paths = [Path(part).expanduser() for part in files.split(os.pathsep) if part.strip()]
    found: dict[str, Path] = {}
    for path in paths:
        details = EnvironmentDetails.read(path)  # raises KubefixturesError naming the file
        if details.name == name:
            return path, details
        found[details.name] = path
    names = ", ".join(repr(known) for known in sorted(found)) or "none"
    raise KubefixturesError(
        f"{DETAILS_VARIABLE}={files}: no environment named {name!r} (the file(s) hold {names}); "
        f"write one with `kubefixtures up SOURCE... --name {name} --details-out FILE`"
    )


def serving(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class AttachedProvisioning:
    """An environment from a details file: found, checked, forwarded if need be; never
    created or deleted."""

    def __init__(self, spec: EnvironmentSpec, session: SessionView, files: str) -> None:
        self.spec = spec
        self.session = session
        self.files = files
        self.path: Path | None = None
        self.cluster: Cluster | None = None
        self.environment: Environment | None = None
        self.forwards: list[ServicePortForward] = []
        self._started = 0.0
        self.phases = Phases("attached")

    def setup(self) -> Environment:
        phases = self.phases
        phases.begin()
        self._started = time.monotonic()
        self.path, details = find_details(self.files, self.spec.name)
        self._check_ready_targets(details)
        with phases.phase("connect"):
            self.cluster = self.session.cluster(details.context)
        with phases.phase("namespace"):
            _check_namespace(self.cluster, self.path, details)
        with phases.phase("render"):
            objects = self._render(details)
        try:
            with phases.phase("forward"):
                services = self._forward(self.cluster, details)
            environment = Environment(details.model_copy(update={"services": services}), objects)
            if self.spec.ready:
                with phases.phase("app-ready"):
                    self._wait_answering(environment)
        except BaseException:
            self._stop_forwards()
            raise
        phases.end()
        self.environment = environment
        return self.environment

    def _check_ready_targets(self, details: EnvironmentDetails) -> None:
        if not self.spec.ready:
            return
        from kubefixtures.readiness.app import check_targets

        ports = {
            name: {
                port: next((n for n, at in found.named_ports.items() if at == local), None)
                for port, local in found.ports.items()
            }
            for name, found in details.services.items()
        }
        check_targets(self.spec.name, self.spec.ready, ports)

    def _wait_answering(self, environment: Environment) -> None:
        """The ``ready=`` probes: the environment was ready when it was written down, but
        its application may have stopped answering since; probing is cheap."""
        timeout = self.spec.timeout or self.session.settings.ready_timeout
        wait_answering(
            environment,
            self.spec,
            self.session,
            deadline=self._started + timeout,
            started=self._started,
        )

    def _render(self, details: EnvironmentDetails) -> list[dict[str, object]]:
        """The objects as the declaration renders them into the recorded namespace, with
        the recorded secrets and values (what ``Environment.objects`` shows)."""
        from kubefixtures.provisioning.reused import KnownSecrets

        context = RenderContext(
            namespace=details.namespace,
            session_id=details.session_id,
            environment=self.spec.name,
            values=details.values or self.spec.values,
            values_files=self.spec.values_files,
            secrets=KnownSecrets(
                {name: value.get_secret_value() for name, value in details.secrets.items()}
            ),
            image_overrides=self.session.settings.image_overrides,
        )
        return [
            {
                **obj.manifest,
                "metadata": {**obj.manifest["metadata"], "namespace": details.namespace},
            }
            for obj in render_sources(self.spec.sources, context)
        ]

    def _forward(self, cluster: Cluster, details: EnvironmentDetails) -> dict[str, ServiceDetails]:
        """The recorded ports that are serving, and new forwards for those that are not (on
        this run's route: a route recorded by ``up`` may not exist from this machine). A
        Service recorded at its ClusterIP is forwarded again whole when one of its ports
        does not answer there (its details have one host)."""
        wanted = []
        for service in details.services.values():
            silent = [port for port, at in service.ports.items() if not serving(at, service.host)]
            if service.host != LOCALHOST and not silent and self._stray(cluster, service):
                silent = list(service.ports)
            if service.host != LOCALHOST and silent:
                # Not this machine's ports: any free local port will do.
                wanted += [(service.name, port, 0) for port in service.ports]
            else:
                wanted += [(service.name, port, service.ports[port]) for port in silent]
        if not wanted:
            return dict(details.services)
        with ThreadPoolExecutor(max_workers=min(len(wanted), 8)) as pool:
            futures = {
                (name, port): pool.submit(
                    self._start, cluster, details.namespace, name, port, local
                )
                for name, port, local in wanted
            }
            moved = {key: future.result() for key, future in futures.items()}
        services = {}
        for name, service in details.services.items():
            own = {port: moved[(name, port)] for port in service.ports if (name, port) in moved}
            for port in ports_to_serve_locally(own, len(service.ports)):
                own[port] = moved[(name, port)] = self._serve_locally(
                    cluster, details.namespace, name, port, own[port]
                )
            ports = {
                port: own[port].local_port if port in own else local
                for port, local in service.ports.items()
            }
            host = next(iter(own.values())).host if own else service.host
            services[name] = _moved(service, ports, host)
            if own:
                routes = [
                    moved[(name, port)].route if (name, port) in moved else service.route
                    for port in service.ports
                ]
                services[name] = services[name].model_copy(update={"route": combined_route(routes)})
        return services

    @staticmethod
    def _stray(cluster: Cluster, service: ServiceDetails) -> bool:
        """Whether the ClusterIP ``service`` was recorded at answers only as any address
        would from here (a catch-all on the default route): then it is forwarded again."""
        from kubefixtures.kube.portforward import stray_answer

        return stray_answer(cluster.config, service.host, service.ports) is not None

    def _start(
        self,
        cluster: Cluster,
        namespace: str,
        service: str,
        port: int,
        local: int,
        *,
        local_only: bool = False,
    ) -> ServicePortForward:
        """Forward ``service:port`` on the recorded local port if it is free, else (another
        xdist worker of this run took it a moment ago, say) on a free one (``local``: 0)."""
        from kubefixtures.kube.portforward import PortForwardError, ServicePortForward

        for local_port in (local, 0) if local and _free(local) else (0,):
            forward = ServicePortForward(
                cluster.config,
                namespace,
                service,
                port,
                local_port=local_port,
                ready_timeout=self.spec.timeout or self.session.settings.ready_timeout,
                route=self.session.settings.route,
                address="local" if local_only else self.session.settings.direct_address,
                relay=self.session.settings.relay,
            )
            try:
                forward.start()
            except PortForwardError:
                if local_port == 0 or _free(local):  # not a lost race for the port
                    raise
                continue
            self.forwards.append(forward)
            return forward
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _serve_locally(
        self, cluster: Cluster, namespace: str, service: str, port: int, forward: ServicePortForward
    ) -> ServicePortForward:
        """``forward``, served at the Service's ClusterIP, replaced by one on 127.0.0.1."""
        replacement = self._start(cluster, namespace, service, port, 0, local_only=True)
        self.forwards.remove(forward)
        forward.stop()
        return replacement

    def report_ready(self) -> None:
        assert self.environment is not None
        again = ""
        if self.forwards:
            routes = sorted({forward.route for forward in self.forwards})
            again = f", {len(self.forwards)} port(s) forwarded again ({', '.join(routes)})"
        self.session.reporter.write_line(
            f"kubefixtures: environment {self.spec.name!r} from {self.path}: namespace "
            f"{self.environment.namespace}{again} ({time.monotonic() - self._started:.1f} s)"
        )

    def cancel(self) -> None:
        """Nothing to cancel: attaching does not wait for readiness."""

    def note_failure(self, test: str) -> None:
        """Nothing is deleted anyway."""

    def inspection(self) -> Inspection | None:
        if self.cluster is None or self.environment is None:
            return None
        return inspect(self.cluster, self.environment, self.spec.name)

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        """Stop the forwards this session started; the environment stays as it was."""
        self._stop_forwards()

    def _stop_forwards(self) -> None:
        forwards, self.forwards = self.forwards, []
        for forward in forwards:
            with contextlib.suppress(Exception):
                forward.stop()


def _check_namespace(cluster: Cluster, path: Path, details: EnvironmentDetails) -> None:
    from kubefixtures.kube.client import NAMESPACE

    namespace = cluster.get_or_none(NAMESPACE, None, details.namespace)
    if namespace is None or namespace["metadata"].get("deletionTimestamp"):
        state = "no longer exists" if namespace is None else "is being deleted"
        raise KubefixturesError(
            f"{path}: namespace {details.namespace} of environment {details.name!r} {state} "
            f"on {cluster.description}; bring it up again with `kubefixtures up`"
        )


def _moved(service: ServiceDetails, ports: dict[int, int], host: str) -> ServiceDetails:
    """``service`` with its Service ports forwarded to ``ports`` at ``host`` (URL and names
    follow)."""
    old_to_new = {service.ports[port]: local for port, local in ports.items()}
    url = service.url
    if url is not None:
        scheme, _, rest = url.partition("://")
        old = int(rest.rsplit(":", 1)[1])
        url = f"{scheme}://{host}:{old_to_new.get(old, old)}"
    return service.model_copy(
        update={
            "host": host,
            "port": old_to_new.get(service.port, service.port),
            "ports": ports,
            "named_ports": {
                name: old_to_new.get(local, local) for name, local in service.named_ports.items()
            },
            "url": url,
        }
    )
