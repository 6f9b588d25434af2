"""Port-forwarding of Service ports to 127.0.0.1, without kubectl, that heals itself.

`ServicePortForward` listens on a local port and forwards every accepted connection to a
ready pod behind the Service, on the pod port the Service's targetPort resolves to (named
ports included, per pod). It watches the Service's EndpointSlices: pods that are not ready
are never chosen, and when the chosen pod goes away new connections go to the next ready
pod as soon as it is ready, while connections in flight end with a reset instead of
hanging. All forwards of a process share one background event-loop thread, which exits
when the last forward stops.

Transport. Measured against `kubectl port-forward` (see benchmarks/portforward.py and the
figures below), the default is the apiserver's `SPDY/3.1+portforward.k8s.io` WebSocket
subprotocol, kubectl's own since 1.31: one upgraded connection per pod, opened before the
first client arrives, carries every forwarded connection as a pair of SPDY streams, so
accepting a connection costs no TLS handshake and no HTTP upgrade. `v4.channel.k8s.io`
(one WebSocket per forwarded connection, no half-close) is the automatic fallback for
apiservers that do not offer the tunnel, and can be forced with ``transport="v4"``.

Figures (benchmarks/portforward.py: same pod, same run; 2-core VM, Kubernetes 1.35.4,
containerd, Python 3.11). Ratios to kubectl; a quiet run, then the medians of a 5-repeat
run on a machine busy with other test suites (load average 4-9):

    per kubectl port-forward             SPDY tunnel     v4 per connection
    100 MiB download throughput          2.14x / 1.45x   1.23x / 1.05x
    set-up latency p50 (1,000 requests)  0.48x / 0.67x   2.59x / 3.35x
    requests/s, 16 concurrent clients    2.54x / 1.46x   0.37x / 0.34x

v4 pays a TLS handshake, an HTTP upgrade and a kubelet dial per connection (p50 15-20 ms
against 3-4 ms); the tunnel pays one SPDY round trip. Under the 16-client load kubectl's
forward hung in 3 of 5 repeats (requests never answered until it was restarted); ours
never did.

Direct route. Where the pod network is reachable from this process (the host of a local
cluster, a CI runner inside the cluster), ``route="direct"`` skips the apiserver: the same
127.0.0.1 listener splices each connection to the pod's IP, following the same
EndpointSlices. ``route="auto"`` takes it when a short connect probe to the pod's IP
succeeds at start, and forwards otherwise (benchmarks/direct_route.py has the figures).
With ``address="service"`` a direct route whose Service's ClusterIP answers from here is
served there (``host``, ``local_port``: the ClusterIP and the Service's port; route
"service"): kube-proxy routes each connection, and nothing of ours is in between.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Collection
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kubefixtures.kube.config import as_cluster_config
from kubefixtures.kube.errors import (
    ApiServerUnreachableError,
    DirectRouteError,
    NoReadyEndpointsError,
    PortForwardError,
    PortForwardForbiddenError,
    ServiceNotFoundError,
    TunnelError,
)
from kubefixtures.kube.portforward import _loop
from kubefixtures.kube.portforward._direct import stray_answer as _stray_answer
from kubefixtures.kube.portforward._endpoints import KnownEndpoints
from kubefixtures.kube.portforward._forwarder import (
    ADDRESSES,
    PROBE_TIMEOUT,
    RELAYS,
    ROUTES,
    Address,
    AsyncServicePortForward,
    Relay,
    Route,
    Transport,
)

if TYPE_CHECKING:
    from kubefixtures.kube.config import ClusterConfig
    from kubefixtures.kube.portforward._relay import PrestartedRelay

__all__ = [
    "ADDRESSES",
    "RELAYS",
    "ROUTES",
    "Address",
    "ApiServerUnreachableError",
    "AsyncServicePortForward",
    "DirectRouteError",
    "KnownEndpoints",
    "NoReadyEndpointsError",
    "PortForwardError",
    "PortForwardForbiddenError",
    "PrestartedRelay",
    "Relay",
    "Route",
    "ServiceNotFoundError",
    "ServicePortForward",
    "Transport",
    "TunnelError",
    "prestart_relay",
    "stray_answer",
]

_STOP_TIMEOUT = 30.0


class ServicePortForward:
    """One Service port -> ``bind:local_port`` for synchronous callers.

    ``port`` is the Service's port number or name. ``local_port=0`` picks a free port,
    readable from ``local_port`` after ``start()``. ``start()`` fails with one of the
    errors of this module (Service or port not found, no ready endpoints within
    ``ready_timeout`` and why, RBAC forbids pods/portforward, apiserver unreachable).
    A client connection that finds no ready pod within ``connect_timeout`` is reset.
    ``route``: "forward" through the apiserver, "direct" to the pod's IP (``start()``
    fails with ``DirectRouteError`` when it does not answer), "auto" direct when it does.
    ``address="service"``: a direct route is served at the Service's ClusterIP and port
    when they answer from here (``route`` "service", ``host`` the ClusterIP, ``local_port``
    the Service's port, nothing listening here); a headless Service, or a ClusterIP that
    does not answer, keeps the local listener.
    ``relay="process"``: a direct route's connections are moved by a child process (one
    per test process, shared by its forwards) rather than by our event-loop thread, so
    that busy Python threads in this process do not delay them; if that process dies,
    the forward serves its connections here again (a warning says so).
    ``known``: the Service and its EndpointSlices as the caller just listed them, so that
    ``start()`` asks the API nothing before it serves (the slices are watched from there).
    """

    def __init__(
        self,
        configuration: ClusterConfig | Any,
        namespace: str,
        service: str,
        port: int | str,
        *,
        local_port: int = 0,
        bind: str = "127.0.0.1",
        transport: Transport = "auto",
        ready_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        route: Route = "forward",
        address: Address = "local",
        known: KnownEndpoints | None = None,
        relay: Relay = "thread",
    ) -> None:
        # A stopped core cannot start again; start() after stop() builds a new one.
        self._new_core = partial(
            AsyncServicePortForward,
            configuration,
            namespace,
            service,
            port,
            local_port=local_port,
            bind=bind,
            transport=transport,
            ready_timeout=ready_timeout,
            connect_timeout=connect_timeout,
            route=route,
            address=address,
            relay=relay,
        )
        self._core = self._new_core(known=known)  # a later core asks the API afresh
        self._stopped = False
        self._loop: Any = None
        self._starting: concurrent.futures.Future[None] | None = None
        self._starting_loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False  # by a stop() while start() was under way
        self._lock = threading.Lock()
        # Touched on the event loop only: the task running the core's start, and whether a
        # stop() asked to cancel it (possibly before it began).
        self._start_task: asyncio.Task[None] | None = None
        self._cancel_start_requested = False

    @property
    def local_port(self) -> int:
        """The port clients connect to at ``host``."""
        return self._core.local_port

    @property
    def host(self) -> str:
        """Where clients connect: ``bind``, or the Service's ClusterIP (route "service")."""
        return self._core.host

    @property
    def bind(self) -> str:
        return self._core.bind

    @property
    def transport(self) -> str:
        """The transport in use: "spdy" (the tunnel) or "v4"."""
        return self._core.transport

    @property
    def route(self) -> str:
        """The route in use: "direct" (to the pod's IP), "forward" (the apiserver), or
        "service" (the Service's ClusterIP itself, ``address="service"``)."""
        return self._core.route

    @property
    def pod(self) -> str | None:
        """The pod that new connections go to now."""
        target = self._core.target
        return target.pod if target else None

    def start(self) -> None:
        """Start forwarding; return once a ready pod is reachable. A ``stop()`` from another
        thread meanwhile makes it raise ``concurrent.futures.CancelledError``."""
        if self._loop is not None:
            return
        if self._stopped:
            self._core = self._new_core()
            self._stopped = False
        loop = _loop.SHARED.acquire()
        self._cancel_start_requested = False  # no start runs on the loop now
        with self._lock:
            # The core bounds its own waits (ready_timeout, connect_timeout).
            starting = asyncio.run_coroutine_threadsafe(self._run_start(), loop)
            self._starting, self._starting_loop = starting, loop
            self._stop_requested = False
        try:
            starting.result()
        except BaseException:
            with self._lock:
                self._starting = None
            self._stopped = True  # the core cleaned up after itself
            _loop.SHARED.release()
            raise
        with self._lock:
            self._starting = None
            self._loop = loop
            stop_requested = self._stop_requested
        if stop_requested:  # it came too late to cancel the start
            self.stop()
            raise concurrent.futures.CancelledError

    def stop(self) -> None:
        """Stop forwarding (from any thread; a start() under way is cancelled)."""
        with self._lock:
            if self._starting is not None and self._starting_loop is not None:
                self._stop_requested = True
                # Cancel the task, not the future: start() then returns only once the core
                # has cleaned up, so releasing the loop cannot cut that short.
                asyncio.run_coroutine_threadsafe(self._cancel_start(), self._starting_loop)
                return
            loop, self._loop = self._loop, None
        if loop is None:
            return
        self._stopped = True
        try:
            _loop.run(self._core.stop(), loop, timeout=_STOP_TIMEOUT)
        finally:
            _loop.SHARED.release()

    async def _run_start(self) -> None:
        if self._cancel_start_requested:
            raise asyncio.CancelledError
        self._start_task = asyncio.current_task()
        try:
            await self._core.start()
        finally:
            self._start_task = None

    async def _cancel_start(self) -> None:
        self._cancel_start_requested = True
        if self._start_task is not None:
            self._start_task.cancel()

    def __enter__(self) -> ServicePortForward:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        core = self._core
        return (
            f"ServicePortForward({core.namespace}/{core.service}:{core.port} -> "
            f"{core.host}:{core.local_port}, "
            f"{core.transport if core.route == 'forward' else core.route})"
        )


def stray_answer(
    configuration: ClusterConfig | Any, cluster_ip: str, service_ports: Collection[int]
) -> str | None:
    """Why a connection that opens to ``cluster_ip`` (a ClusterIP of the cluster of
    ``configuration``, whose Service has ``service_ports``) proves nothing from here, or
    None: where something on the default route answers for any address, the ClusterIP's
    answer may be a stranger's (see ``_direct.stray_answer``)."""
    server = as_cluster_config(configuration).server
    loop = _loop.SHARED.acquire()
    try:
        return _loop.run(
            _stray_answer(server, cluster_ip, service_ports, PROBE_TIMEOUT),
            loop,
            timeout=PROBE_TIMEOUT + 10,
        )
    finally:
        _loop.SHARED.release()


def prestart_relay() -> PrestartedRelay:
    """Starts the ``relay="process"`` child now, before the first forward needs it, so that
    its start-up (an interpreter and its imports) is not on the first connections' path.
    Hold the result while forwards may come; its ``release()`` lets the child go (the last
    user ends it and waits for it). Never raises: a child that cannot start is said once,
    in a warning, and the forwards serve their connections in this process."""
    from kubefixtures.kube.portforward._relay import PrestartedRelay

    return PrestartedRelay()


def __getattr__(name: str) -> Any:
    # The relay's module is imported on first use (PEP 562): with relay="thread", never.
    if name == "PrestartedRelay":
        from kubefixtures.kube.portforward import _relay

        return _relay.PrestartedRelay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
