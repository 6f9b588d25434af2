"""What every provisioning shares: the spec of an environment, the protocol a fixture uses,
the collaborators it is given, the one inspection builder, and the port-forward handle.

A provisioning never sees the pytest session: it is given, narrowly, the settings, the
session id, a cluster factory, the session's generated secrets and a reporter (lines for
the terminal now, lines for the summary at the end). This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import threading

    from kubefixtures.details import Environment, ServiceDetails
    from kubefixtures.kube import Cluster
    from kubefixtures.provisioning.pooled import SparePool
    from kubefixtures.readiness.app import Probe
    from kubefixtures.rendering import Secrets
    from kubefixtures.settings import Settings
    from kubefixtures.timing import Phases

__all__ = [
    "DETAILS_VARIABLE",
    "LOCALHOST",
    "EnvironmentSpec",
    "Inspection",
    "PortForward",
    "Provisioning",
    "Reporter",
    "SessionView",
    "inspect",
    "ports_to_serve_locally",
    "service_details",
    "wait_answering",
]

LOCALHOST = "127.0.0.1"
# The details files a run attaches to instead of provisioning (see provisioning.attached).
DETAILS_VARIABLE = "KUBEFIXTURES_DETAILS"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an ``environment(...)`` declaration asked for."""

    name: str
    sources: tuple[Path, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    values_files: tuple[Path, ...] = ()  # YAML files of values, under ``values``
    # Service name -> how to tell that its application answers (kubefixtures.readiness.app)
    ready: Mapping[str, Probe] = field(default_factory=dict)


class Reporter(Protocol):
    """Where a provisioning's lines go."""

    def write_line(self, line: str) -> None:
        """A line for the terminal, now (or as soon as the main thread can show it)."""

    def summary(self, line: str) -> None:
        """A line for the end of the run (a kept namespace, how to look at it)."""

    def kept(self, namespace: str, environment: str, why: str, lines: Sequence[str]) -> None:
        """A namespace kept for a person to look at: ``lines`` (for the end of the run, as
        ``summary``) say so and give the commands to paste; the session report lists it."""


@dataclass(frozen=True)
class SessionView:
    """What a provisioning may use of its session, and nothing more."""

    settings: Settings
    session_id: str
    cluster: Callable[[str | None], Cluster]  # a connection to the context (None: configured)
    secrets: Callable[[], Secrets]  # the session's generated secrets
    reporter: Reporter
    # The session's pool of spare copies (``--kubefixtures-pool``); None without one.
    pool: Callable[[], SparePool] | None = None


@dataclass(frozen=True)
class Inspection:
    """Where to look when a test using an environment failed (diagnostics)."""

    cluster: Cluster
    namespace: str
    environment: str
    masks: frozenset[str]  # secret values that must never be shown


def inspect(cluster: Cluster, environment: Environment, name: str) -> Inspection:
    """The inspection of an environment that is up: its namespace, its secrets masked."""
    from kubefixtures.secrets import secret_values

    return Inspection(
        cluster=cluster,
        namespace=environment.namespace,
        environment=name,
        masks=frozenset(secret_values(environment)),
    )


class Provisioning(Protocol):
    """What an environment fixture needs of whatever provides its environment: a fresh (or
    reused) namespace, one shared with other xdist workers, or one from a details file."""

    spec: EnvironmentSpec

    @property
    def phases(self) -> Phases:
        """How long each phase of the setup took, and how the environment came."""

    def setup(self) -> Environment: ...

    def report_ready(self) -> None: ...

    def cancel(self) -> None: ...

    def note_failure(self, test: str) -> None: ...

    def teardown(self, *, keep: bool = False, why: str = "") -> None: ...

    def inspection(self) -> Inspection | None: ...


class PortForward(Protocol):
    """What a provisioning needs of kubefixtures.kube.portforward.ServicePortForward."""

    @property
    def local_port(self) -> int: ...

    @property
    def route(self) -> str: ...

    @property
    def host(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> Any: ...


def tcp_ports(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ports = (service.get("spec") or {}).get("ports") or []
    return [port for port in ports if (port.get("protocol") or "TCP") == "TCP"]


def _scheme(port: Mapping[str, Any]) -> str | None:
    for hint in (str(port.get("name") or ""), str(port.get("appProtocol") or "")):
        lowered = hint.lower()
        for scheme in ("https", "http"):
            if lowered == scheme or lowered.startswith(f"{scheme}-"):
                return scheme
    return None


def combined_route(routes: Iterable[str]) -> Literal["forward", "direct", "service", "mixed"]:
    """One Service's route in its details, from the routes its ports' forwards took."""
    chosen = set(routes)
    if chosen in ({"direct"}, {"service"}):
        return "direct" if chosen == {"direct"} else "service"
    return "forward" if chosen <= {"forward"} else "mixed"


def ports_to_serve_locally(forwards: Mapping[int, PortForward], port_count: int) -> list[int]:
    """The ports among ``forwards`` (of one Service of ``port_count`` ports) to serve on
    127.0.0.1 after all: its details have one host, so when some of its ports are served at
    its ClusterIP (route "service") and others on 127.0.0.1 (their ClusterIP did not answer,
    or they still serve there), the ClusterIP ones move to 127.0.0.1 too."""
    at_service = sorted(port for port, forward in forwards.items() if forward.route == "service")
    return at_service if len(at_service) < port_count else []


def service_details(
    service: Mapping[str, Any],
    namespace: str,
    local_ports: Mapping[int, int],
    routes: Mapping[int, str] | None = None,
    host: str = LOCALHOST,
) -> ServiceDetails:
    """ServiceDetails of a Service manifest whose ports are forwarded to ``local_ports``
    at ``host`` (``routes``: the route each port's forward took; forward when not given)."""
    from kubefixtures.details import ServiceDetails

    ports = tcp_ports(service)
    url = None
    for port in ports:
        scheme = _scheme(port)
        if scheme:
            url = f"{scheme}://{host}:{local_ports[int(port['port'])]}"
            break
    return ServiceDetails(
        name=service["metadata"]["name"],
        namespace=namespace,
        host=host,
        port=local_ports[int(ports[0]["port"])],
        ports={int(port["port"]): local_ports[int(port["port"])] for port in ports},
        named_ports={
            str(port["name"]): local_ports[int(port["port"])] for port in ports if port.get("name")
        },
        url=url,
        route=combined_route((routes or {}).get(int(port["port"]), "forward") for port in ports),
    )


def wait_answering(
    environment: Environment,
    spec: EnvironmentSpec,
    session: SessionView,
    *,
    deadline: float,
    started: float,
    cancelled: threading.Event | None = None,
) -> None:
    """Run the ``ready=`` probes of ``spec`` on an environment that is up and forwarded
    (kubefixtures.readiness.app), with its secrets masked in what they report."""
    if not spec.ready:
        return
    from kubefixtures.readiness.app import CallableProbe
    from kubefixtures.readiness.app import wait_answering as probe
    from kubefixtures.secrets import Masker, secret_values

    if any(isinstance(check, CallableProbe) for check in spec.ready.values()):
        # A callable may use the controls (env.exec, env.logs...): on the session's
        # connection, as the fixture binds them afterwards.
        context = environment.context
        environment._bind_controls(
            lambda: session.cluster(context), session.settings.image_overrides
        )
    try:
        probe(
            environment,
            spec.ready,
            deadline=deadline,
            started=started,
            cancelled=cancelled,
            mask=Masker(secret_values(environment)),
        )
    except BaseException:
        environment._close_controls()  # and the forwards a callable opened
        raise
