"""Is the application answering? The probes of ``environment(..., ready={...})``.

A pod is Ready when its readiness probe passes, which is often before the application in
it answers (no probe, a probe that checks too little, a server that starts listening
late). Once the objects are ready and forwarded, each named Service is probed through its
port-forward, retried with backoff until it answers, within the environment's deadline:

- ``"http:/PATH"`` (``"http:PORT/PATH"``): a connection passes the tcp check below, then a
  GET of PATH over it answers with a 2xx status. PORT is the Service's port number or name;
  by default its port named ``http`` (the one its ``url`` uses), else its first port.
- ``"tcp"`` (``"tcp:PORT"``; by default the first port): a connection is opened and, within
  ``TCP_SETTLE_SECONDS``, the server sends a first byte (servers that speak first: SMTP,
  MySQL, SSH...) or the connection stays open (servers that wait for the client: Redis,
  PostgreSQL, HTTP...). A port-forward accepts every local connection and closes or resets
  it as soon as nothing listens on the pod's port, which is what makes a closed or reset
  connection within that window a failure, where a bare connect would always succeed.
- a callable: called with the ``Environment`` once every port of the Service passes the
  tcp check; a truthy return is success, a falsy one or an exception a failure (retried).
  It should bound its own waits (connection timeouts): it cannot be interrupted at the
  deadline.

Standard library only at import time: ``environment(ready=...)`` is checked (``parse``) when
a conftest is imported.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubefixtures.errors import KubefixturesError, NotReadyError

if TYPE_CHECKING:
    from kubefixtures.details import Environment, ServiceDetails

__all__ = [
    "TCP_SETTLE_SECONDS",
    "CallableProbe",
    "HttpProbe",
    "Probe",
    "TcpProbe",
    "check_targets",
    "parse",
    "wait_answering",
]

log = logging.getLogger("kubefixtures.readiness")

# How long a "tcp" probe's connection must stay open (if the server does not speak first).
# Through a port-forward a connection to a pod port nobody listens on is closed within
# milliseconds (one round trip to the kubelet); this leaves room for a loaded machine.
TCP_SETTLE_SECONDS = 0.5
# One attempt never takes longer than this (nor past the deadline).
_ATTEMPT_TIMEOUT = 5.0
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0
_CANCEL_CHECK_SECONDS = 0.25
_MAX_FAILURE_CHARS = 300

# A Service port: its number, or its name (an IANA service name, as Kubernetes checks it).
_PORT = r"(?P<port>[0-9]{1,5}|[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?)"
_TCP = re.compile(rf"tcp(?::{_PORT})?")
# The path goes on the request line as it is: printable ASCII, no spaces.
_HTTP = re.compile(rf"http:{_PORT}?(?P<path>/[!-~]*)")
_FORMS = "'tcp', 'tcp:PORT', 'http:/PATH', 'http:PORT/PATH' or a callable"


@dataclass(frozen=True)
class TcpProbe:
    port: str | None = None  # the Service's port number or name; None: its first port

    def __str__(self) -> str:
        return f"tcp:{self.port}" if self.port else "tcp"


@dataclass(frozen=True)
class HttpProbe:
    path: str
    port: str | None = None  # None: the port named http, else the first

    def __str__(self) -> str:
        return f"http:{self.port or ''}{self.path}"


@dataclass(frozen=True)
class CallableProbe:
    function: Callable[[Environment], object]

    def __str__(self) -> str:
        return _name_of(self.function)


Probe = TcpProbe | HttpProbe | CallableProbe


def parse(ready: Mapping[str, object]) -> dict[str, Probe]:
    """The probes of ``environment(ready=...)``; ValueError (one line, naming the Service
    and the probe) for one that is not a probe."""
    if not isinstance(ready, Mapping):
        raise TypeError(
            f"environment(ready=...) takes a mapping of Service names to probes, not "
            f"{type(ready).__name__}"
        )
    probes: dict[str, Probe] = {}
    for service, spec in ready.items():
        if not isinstance(service, str) or not service:
            raise ValueError(f"environment(ready=...): {service!r} is not a Service name")
        probes[service] = _probe(service, spec)
    return probes


def _probe(service: str, spec: object) -> Probe:
    where = f"environment(ready={{{service!r}: {spec!r}}})"
    if isinstance(spec, str):
        tcp = _TCP.fullmatch(spec)
        if tcp:
            return TcpProbe(_checked_port(where, tcp.group("port")))
        http = _HTTP.fullmatch(spec)
        if http:
            return HttpProbe(http.group("path"), _checked_port(where, http.group("port")))
        raise ValueError(f"{where}: not a probe (use {_FORMS})")
    if callable(spec):
        return CallableProbe(spec)
    raise ValueError(f"{where}: not a probe (use {_FORMS})")


def _checked_port(where: str, port: str | None) -> str | None:
    if port is not None and port.isdigit() and not 0 < int(port) < 65536:
        raise ValueError(f"{where}: port {port} is out of range (1-65535)")
    return port


def check_targets(
    environment: str, probes: Mapping[str, Probe], services: Mapping[str, Mapping[int, str | None]]
) -> None:
    """Every probed Service is one of the environment's forwarded Services (``services``:
    name -> {port number: port name}), with the port the probe names. Raises a one-line
    KubefixturesError naming the Service."""
    for service, probe in probes.items():
        ports = services.get(service)
        if ports is None:
            known = ", ".join(sorted(services)) or "none"
            raise KubefixturesError(
                f"environment {environment!r}: ready={{{service!r}: {str(probe)!r}}}: no "
                f"forwarded Service {service!r} among its objects (its Services: {known})"
            )
        port = probe.port if isinstance(probe, TcpProbe | HttpProbe) else None
        if port is not None and not (
            (port.isdigit() and int(port) in ports) or port in ports.values()
        ):
            listed = ", ".join(
                f"{number} ({name})" if name else str(number) for number, name in ports.items()
            )
            raise KubefixturesError(
                f"environment {environment!r}: ready={{{service!r}: {str(probe)!r}}}: Service "
                f"{service!r} has no TCP port {port} (its ports: {listed})"
            )


# --- probing ------------------------------------------------------------------------------


def wait_answering(
    environment: Environment,
    probes: Mapping[str, Probe],
    *,
    deadline: float,
    started: float,
    cancelled: threading.Event | None = None,
    mask: Callable[[str], str] = lambda text: text,
) -> None:
    """Return once every probe succeeded; raise NotReadyError at the deadline (naming each
    Service still not answering and its last failure) or once ``cancelled`` is set.
    Probes run side by side, each retried with backoff; ``mask`` hides secrets in what
    they report (a callable's exception may quote a connection string)."""
    if not probes:
        return
    stop = threading.Event()
    last: dict[str, str] = dict.fromkeys(probes, "not probed yet")
    answered: dict[str, threading.Event] = {service: threading.Event() for service in probes}
    lock = threading.Lock()

    def run(service: str, probe: Probe) -> None:
        delay = _FIRST_DELAY
        while not stop.is_set():
            failure = _attempt(environment, service, probe, deadline)
            if failure is None:
                log.debug("%s answers (%s)", service, probe)
                answered[service].set()
                return
            log.debug("%s does not answer yet (%s): %s", service, probe, mask(failure))
            with lock:
                last[service] = failure
            stop.wait(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_DELAY)

    threads = [
        # Daemons: a callable that hangs past the deadline must not keep the process up.
        threading.Thread(
            target=run, args=(service, probe), name=f"kubefixtures-ready-{service}", daemon=True
        )
        for service, probe in probes.items()
    ]
    for thread in threads:
        thread.start()
    try:
        for service, done in answered.items():
            while not done.wait(max(0.0, min(_CANCEL_CHECK_SECONDS, deadline - time.monotonic()))):
                if cancelled is not None and cancelled.is_set():
                    raise NotReadyError(
                        f"environment {environment.name!r} was cancelled while waiting for "
                        f"{service} to answer"
                    )
                if time.monotonic() >= deadline:
                    with lock:
                        waiting = [
                            f"{name} ({probes[name]}: {last[name]})"
                            for name, event in answered.items()
                            if not event.is_set()
                        ]
                    raise NotReadyError(
                        mask(
                            f"environment {environment.name!r} timed out after "
                            f"{time.monotonic() - started:.1f} s in namespace "
                            f"{environment.namespace}: not answering: {', '.join(waiting)}"
                        )
                    )
    finally:
        stop.set()
        # Attempts under way end within their settle window (each one's timeout stops at the
        # deadline): let them, so that no probe connects to a forward being stopped.
        # A callable that hangs is left behind.
        ends = time.monotonic() + TCP_SETTLE_SECONDS + 0.5
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))


def _attempt(environment: Environment, service: str, probe: Probe, deadline: float) -> str | None:
    """One try: None if the service answered, else why not (one line)."""
    timeout = max(0.1, min(_ATTEMPT_TIMEOUT, deadline - time.monotonic()))
    details = environment.services.get(service)
    if details is None:  # a callable's key may name no forwarded Service (attached)
        return _call(probe, environment) if isinstance(probe, CallableProbe) else "no forward"
    if isinstance(probe, CallableProbe):
        # The Service's ports first: a client that sends its first bytes into a forwarded
        # connection that nothing in the pod accepted may stall the forward (see _settled).
        for port in sorted(set(details.ports.values())):
            failure = _tcp(details.host, port, timeout)
            if failure is not None:
                return f"local port {port}: {failure}"
        return _call(probe, environment)
    port = _local_port(details, probe)
    if isinstance(probe, TcpProbe):
        return _tcp(details.host, port, timeout)
    return _http(details.host, port, probe.path, timeout)


def _local_port(details: ServiceDetails, probe: TcpProbe | HttpProbe) -> int:
    if probe.port is not None:
        if probe.port.isdigit():
            return details.ports[int(probe.port)]
        return details.named_ports[probe.port]
    if isinstance(probe, HttpProbe) and details.url and details.url.startswith("http://"):
        return int(details.url.rsplit(":", 1)[1])
    return details.port


def _settled(host: str, port: int, timeout: float) -> socket.socket | str:
    """A connection that the server greeted (a first byte, left unread) or that stayed open
    for TCP_SETTLE_SECONDS; else why not.

    A port-forward accepts every local connection before the kubelet tries the pod's port,
    and closes or resets it within milliseconds when that fails. Nothing is sent before:
    bytes written into a connection the kubelet failed can stall the kubelet's end of the
    forward's SPDY tunnel, so that new connections hang until the forward replaces the
    tunnel (seen with every HTTP client: seconds lost per probe).
    """
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        return _describe(error)
    connection.settimeout(TCP_SETTLE_SECONDS)
    try:
        greeted = bool(connection.recv(1, socket.MSG_PEEK))
    except TimeoutError:
        greeted = True  # open and quiet: a server waiting for its client to speak
    except OSError as error:
        connection.close()
        return _describe(error)
    if not greeted:
        connection.close()
        return "connection closed right after it was opened (nothing listening?)"
    connection.settimeout(timeout)
    return connection


def _tcp(host: str, port: int, timeout: float) -> str | None:
    settled = _settled(host, port, timeout)
    if isinstance(settled, str):
        return settled
    settled.close()
    return None


def _http(host: str, port: int, path: str, timeout: float) -> str | None:
    import http.client  # only when probing: not at conftest import time

    settled = _settled(host, port, timeout)
    if isinstance(settled, str):
        return settled
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = settled  # the request goes over the connection that settled
    try:
        connection.request("GET", path, headers={"User-Agent": "kubefixtures-ready-probe"})
        response = connection.getresponse()
        if 200 <= response.status < 300:
            return None
        return f"HTTP {response.status} {response.reason}".strip()
    except http.client.RemoteDisconnected:
        return "connection closed without a response"
    except (OSError, http.client.HTTPException) as error:
        return _describe(error)
    finally:
        connection.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def _call(probe: CallableProbe, environment: Environment) -> str | None:
    name = _name_of(probe.function)
    try:
        result: Any = probe.function(environment)
    except Exception as error:
        return _one_line(f"{name} raised {type(error).__name__}: {error}")
    if result:
        return None
    return _one_line(f"{name} returned {result!r}")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_FAILURE_CHARS:
        return text[: _MAX_FAILURE_CHARS - 3] + "..."
    return text


def _name_of(function: Callable[..., object]) -> str:
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return f"{name}()" if name else repr(function)
