"""The asyncio core of a Service port-forward: listener, pod choice, tunnels, healing.

All of it runs on one event loop. The EndpointSlices of the Service are watched; the
forward sticks to one ready pod (the first by name, like kubectl's one pod, so that tests
see one backend) and keeps a tunnel to it open before any client connects. When that pod
stops being ready, its tunnel drains (connections in flight finish or fail on their own)
and the next ready pod gets a fresh tunnel at once.

Where the pod's IP is reachable from here, the route can skip the apiserver altogether
(``route="direct"``, or ``"auto"`` after a connect probe): each accepted connection is then
spliced to the current pod's IP (see _direct), following the same EndpointSlices. With
``address="service"``, a direct route whose Service's ClusterIP answers too is no forward at
all: the tests get the ClusterIP and the Service's port, which the cluster's own proxy
(kube-proxy) routes to the ready pods, through restarts, with nothing of ours in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from kubefixtures.kube.errors import (
    DirectRouteError,
    NoReadyEndpointsError,
    PortForwardError,
    PortForwardForbiddenError,
    PortForwardNotFound,
    ServiceNotFoundError,
    TunnelError,
)
from kubefixtures.kube.portforward._api import ApiClient, ApiEndpoint, pod_portforward_path
from kubefixtures.kube.portforward._direct import describe_refusal, probe, stray_answer
from kubefixtures.kube.portforward._direct_listener import DirectListener, listen
from kubefixtures.kube.portforward._endpoints import (
    JSON,
    SERVICE_NAME_LABEL,
    KnownEndpoints,
    ServicePort,
    ServicePortError,
    Target,
    explain_no_ready_pods,
    ready_targets,
    resolve_service_port,
)

if TYPE_CHECKING:
    # The tunnel's side (WebSockets, SPDY) is imported when a forward first tunnels: a
    # direct route never needs it, and a claimed spare is handed over sooner without it.
    from kubefixtures.kube.portforward._local import LocalConnection
    from kubefixtures.kube.portforward._relay import RelayedListener
    from kubefixtures.kube.portforward._tunnel import SpdyTunnel
    from kubefixtures.kube.portforward._v4 import V4Connection

log = logging.getLogger("kubefixtures.portforward")

Transport = Literal["auto", "spdy", "v4"]
# How connections reach the pod: "forward" through the apiserver (the tunnel), "direct" to
# the pod's IP, "auto" direct when a connect probe to the pod's IP succeeds.
Route = Literal["auto", "forward", "direct"]
ROUTES: tuple[Route, ...] = ("auto", "forward", "direct")
# Where a direct route is served: "local" on bind:local_port (a splice per connection),
# "service" at the Service's ClusterIP and port when it answers from here (no splice).
Address = Literal["local", "service"]
ADDRESSES: tuple[Address, ...] = ("local", "service")
# Where a direct route's listener moves the bytes: "thread" on our event loop in this
# process, "process" in a child process with a GIL of its own (see _relay).
Relay = Literal["thread", "process"]
RELAYS: tuple[Relay, ...] = ("thread", "process")
# A reachable pod network answers a connect in milliseconds; an unreachable one often
# drops the SYN silently, and this is what an "auto" forward then loses finding out.
PROBE_TIMEOUT = 0.5
# kube-proxy programs a Service's new endpoints a moment after the EndpointSlice says they
# are ready (its sync runs at most once a second): until then it refuses connections to the
# ClusterIP (or, where the canary says so, the local cluster's reject rule refuses them),
# so a refused ClusterIP probe is tried again for this long.
SERVICE_PROBE_PATIENCE = 5.0
SERVICE_PROBE_INTERVAL = 0.1


class AsyncServicePortForward:
    """One Service port -> `bind:local_port`, on the running event loop."""

    def __init__(
        self,
        configuration: Any,
        namespace: str,
        service: str,
        port: int | str,
        *,
        local_port: int = 0,
        bind: str = "127.0.0.1",
        transport: Transport = "auto",
        ready_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ping_interval: float = 15.0,
        route: Route = "forward",
        address: Address = "local",
        probe_timeout: float = PROBE_TIMEOUT,
        known: KnownEndpoints | None = None,
        relay: Relay = "thread",
    ) -> None:
        self._configuration = configuration
        self._known = known  # what the caller listed already: used once, at the start
        self.namespace = namespace
        self.service = service
        self.port = port
        self.bind = bind
        self.local_port = local_port
        # Where clients connect: bind, or the ClusterIP on the "service" route (local_port
        # is then the Service's port).
        self.host = bind
        self._requested_transport = transport
        self.transport: Literal["spdy", "v4"] = "v4" if transport == "v4" else "spdy"
        self.ready_timeout = ready_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self._requested_route = route
        self._address = address
        self._relay: Relay = relay
        self.route: Literal["forward", "direct", "service"] = "forward"
        self.probe_timeout = probe_timeout
        self._api: ApiClient | None = None
        self._service: JSON = {}
        self._service_port: ServicePort | None = None
        self._server: asyncio.Server | None = None
        # The direct route's, in the server's place; the relay's when relay="process".
        self._listener: DirectListener | RelayedListener | None = None
        self._relayed: RelayedListener | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locals: set[LocalConnection] = set()
        self._v4: set[V4Connection] = set()
        self._targets: list[Target] = []
        self._current: Target | None = None
        self._changed = asyncio.Event()
        self._fatal: PortForwardError | None = None
        self._tunnel: SpdyTunnel | None = None
        self._tunnel_opening: asyncio.Task[SpdyTunnel] | None = None
        self._draining: set[SpdyTunnel] = set()
        self._stopping = False

    @property
    def what(self) -> str:
        return f"Service {self.namespace}/{self.service}"

    @property
    def target(self) -> Target | None:
        """The pod new connections go to now."""
        return self._current

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        endpoint = await ApiEndpoint.create(self._configuration)
        self._api = ApiClient(endpoint)
        try:
            await self._start()
        except BaseException:
            await self._stop_uninterrupted()
            raise

    async def _stop_uninterrupted(self) -> None:
        """stop(), finished even when cancelled meanwhile: a start that gives up (its own
        timeout) while its caller cancels it must still close every connection it opened."""
        cleanup = asyncio.ensure_future(self.stop())
        while not cleanup.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(cleanup)

    async def _start(self) -> None:
        assert self._api is not None
        path = f"/api/v1/namespaces/{self.namespace}/services/{self.service}"
        try:
            self._service = await self._get_service(path)
        except PortForwardNotFound:
            raise ServiceNotFoundError(f"{self.what} not found") from None
        try:
            self._service_port = resolve_service_port(self._service, self.port)
        except ServicePortError as error:
            raise ServiceNotFoundError(str(error)) from None
        self._watch_task = asyncio.create_task(self._watch(), name=f"watch {self.what}")
        try:
            async with asyncio.timeout(self.ready_timeout):
                target = await self.ready_target()
        except TimeoutError:
            why = await self._explain()
            raise NoReadyEndpointsError(
                f"{self.what} has no ready endpoints for port {self.port}"
                f" after {self.ready_timeout:g}s: {why}"
            ) from None
        if self._requested_route != "forward":
            await self._probe_direct_route(target)
        if self.route == "direct" and self._address == "service" and await self._at_service():
            return
        if self.transport == "spdy" and self.route == "forward":
            try:
                self._tunnel = await self._open_tunnel(target)
            except TunnelError as error:
                if self._requested_transport != "auto" or error.status in (401, 403, 404):
                    raise
                log.info(
                    "%s; falling back to one v4.channel.k8s.io WebSocket per connection", error
                )
                self.transport = "v4"
        loop = asyncio.get_running_loop()
        try:
            if self.route == "direct":
                self._listener = self._direct_listener(listen(self.bind, self.local_port))
                self.local_port = self._listener.port
            else:
                from kubefixtures.kube.portforward._local import LocalConnection

                self._server = await loop.create_server(
                    lambda: LocalConnection(self), self.bind, self.local_port, backlog=512
                )
                self.local_port = self._server.sockets[0].getsockname()[1]
        except OSError as error:
            reason = error.strerror or error
            raise PortForwardError(
                f"cannot listen on {self.bind}:{self.local_port} for {self.what}: {reason}"
            ) from None
        log.debug(
            "forwarding %s:%s to %s port %s via %s (%s)",
            self.bind,
            self.local_port,
            self.what,
            self.port,
            target.pod,
            self.route,
        )

    def _direct_listener(self, sock: socket.socket) -> DirectListener | RelayedListener:
        if self._relay == "thread":
            return DirectListener(
                sock,
                self,
                namespace=self.namespace,
                what=self.what,
                connect_timeout=self.connect_timeout,
            )
        from kubefixtures.kube.portforward._relay import RelayedListener

        try:
            self._relayed = RelayedListener(
                sock,
                self,
                namespace=self.namespace,
                what=self.what,
                connect_timeout=self.connect_timeout,
            )
        except BaseException:
            sock.close()
            raise
        return self._relayed

    async def _probe_direct_route(self, target: Target) -> None:
        """Choose the direct route if the pod's IP answers; a forced one must."""
        failure = await probe(target.address, target.port, self.probe_timeout)
        if failure is None:
            self.route = "direct"
            return
        where = f"pod {target.pod} at {target.address or '?'}:{target.port}"
        if self._requested_route == "direct":
            raise DirectRouteError(f"{self.what}: no direct route to {where}: {failure}")
        log.info("%s: no direct route to %s (%s); forwarding instead", self.what, where, failure)

    async def _at_service(self) -> bool:
        """Serve at the Service's ClusterIP if it answers from here (kube-proxy routes it):
        no listener, and no watch, since the cluster follows the pods itself."""
        assert self._service_port is not None
        cluster_ip = str(self._service.get("spec", {}).get("clusterIP") or "")
        port = self._service_port.port
        if cluster_ip in ("", "None"):
            log.info("%s is headless (no ClusterIP): served on %s", self.what, self.bind)
            return False
        assert self._api is not None
        service_ports = {int(p["port"]) for p in self._service.get("spec", {}).get("ports", [])}
        stray = await stray_answer(
            self._api.endpoint.config.server, cluster_ip, service_ports, self.probe_timeout
        )
        if stray is not None:
            log.info(
                "%s: its ClusterIP %s cannot be told from a stray answer (%s); served on %s",
                self.what,
                cluster_ip,
                stray,
                self.bind,
            )
            return False
        loop = asyncio.get_running_loop()
        patience = loop.time() + SERVICE_PROBE_PATIENCE
        while True:
            failure = await probe(cluster_ip, port, self.probe_timeout, any_route=True)
            if failure is None:
                break
            if failure != describe_refusal() or loop.time() > patience:
                log.info(
                    "%s: its ClusterIP %s:%s does not answer from here (%s); served on %s",
                    self.what,
                    cluster_ip,
                    port,
                    failure,
                    self.bind,
                )
                return False
            await asyncio.sleep(SERVICE_PROBE_INTERVAL)
        self.route = "service"
        self.host, self.local_port = cluster_ip, port
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        self._current = None  # no pod of ours: kube-proxy chooses per connection
        log.debug("%s port %s served at its ClusterIP %s:%s", self.what, self.port, *self.address)
        return True

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: ``(host, local_port)``."""
        return (self.host, self.local_port)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for local in list(self._locals):
            local.abort()
        for connection in list(self._v4):
            connection.abort()
        if self._listener is not None:
            await self._listener.close()
        tunnels = [t for t in (self._tunnel, *self._draining) if t is not None]
        for tunnel in tunnels:
            tunnel.abort()
        tasks = [t for t in (self._watch_task, self._tunnel_opening, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if (
            self._tunnel_opening is not None
            and self._tunnel_opening.done()
            and not self._tunnel_opening.cancelled()
        ):
            opened = self._tunnel_opening.exception() is None and self._tunnel_opening.result()
            if opened:
                opened.abort()
        await asyncio.gather(*(t.closed for t in tunnels), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    # -- the listener's side (LocalConnection calls these) -----------------------------------
    def attach(self, local: LocalConnection) -> None:
        if self._stopping:
            local.abort()
            return
        self._locals.add(local)
        tunnel = self._tunnel
        if (
            self.transport == "spdy"
            and tunnel is not None
            and tunnel.usable
            and tunnel.target == self._current
        ):
            local.attached(
                tunnel.connect(local, tunnel.target.port)
            )  # the fast path: no round trip
            return
        self._spawn(self._attach_later(local))

    def detach(self, local: LocalConnection) -> None:
        self._locals.discard(local)

    async def _attach_later(self, local: LocalConnection) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.transport == "spdy":
                    tunnel = await self._ready_tunnel()
                    if not local.finished:
                        local.attached(tunnel.connect(local, tunnel.target.port))
                else:
                    await self._attach_v4(local)
        except TimeoutError:
            why = await self._explain() if not self._targets else "the tunnel did not open"
            log.warning(
                "connection to %s:%s dropped: no ready pod behind %s within %.1fs (%s)",
                self.bind,
                self.local_port,
                self.what,
                time.monotonic() - started,
                why,
            )
            local.abort()
        except PortForwardError as error:
            log.warning("connection to %s:%s dropped: %s", self.bind, self.local_port, error)
            local.abort()

    async def _attach_v4(self, local: LocalConnection) -> None:
        while True:
            target = await self.ready_target()
            try:
                connection: V4Connection = await self._open_v4(target, local)
            except PortForwardNotFound:
                await self._wait_for_change(0.5)
                continue
            except TunnelError as error:
                log.info("%s; retrying", error)
                await self._wait_for_change(0.2)
                continue
            if local.finished:
                connection.close()
                return
            self._v4.add(connection)
            connection.closed.add_done_callback(partial(_discard, self._v4, connection))
            local.attached(connection)
            return

    # -- pods and tunnels -----------------------------------------------------------------
    async def ready_target(self) -> Target:
        """The pod new connections go to, once there is one."""
        while True:
            if self._fatal is not None:
                raise self._fatal
            if self._current is not None:
                return self._current
            await self._wait_for_change(None)

    async def _wait_for_change(self, timeout: float | None) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()

    async def _ready_tunnel(self) -> SpdyTunnel:
        delay = 0.05
        while True:
            target = await self.ready_target()
            tunnel = self._tunnel
            if tunnel is not None and tunnel.usable and tunnel.target == target:
                return tunnel
            opening = self._tunnel_opening
            if opening is None or opening.done():
                opening = self._tunnel_opening = asyncio.create_task(self._open_tunnel(target))
            try:
                tunnel = await asyncio.shield(opening)
                if tunnel.usable and tunnel.target == self._current:
                    return tunnel
                continue  # the pod changed while the tunnel opened: go to the new one
            except PortForwardForbiddenError:
                raise
            except (PortForwardError, OSError) as error:
                # The pod went away under us (404) or the apiserver hiccupped: wait for the
                # watch to move on, or retry the same pod shortly.
                log.debug("tunnel to pod %s failed: %s", target.pod, error)
                await self._wait_for_change(delay)
                delay = min(delay * 2, 1.0)

    async def _open_tunnel(self, target: Target) -> SpdyTunnel:
        from kubefixtures.kube.portforward._tunnel import SpdyTunnel
        from kubefixtures.kube.portforward._wsconn import open_websocket

        assert self._api is not None
        tunnel: SpdyTunnel = await open_websocket(
            self._api.endpoint,
            pod_portforward_path(self._api.endpoint, self.namespace, target.pod, {}),
            SpdyTunnel,
            target,
            self,
            timeout=self.connect_timeout,
            what=f"pod {self.namespace}/{target.pod}",
        )
        if self._stopping:
            tunnel.abort()
            raise PortForwardError(f"forward of {self.what} stopped")
        if target == self._current:
            old = self._tunnel
            self._tunnel = tunnel
            if old is not None and old is not tunnel:
                self._retire(old)
        else:
            self._retire(tunnel)
        return tunnel

    async def _open_v4(self, target: Target, local: LocalConnection) -> V4Connection:
        from kubefixtures.kube.portforward._v4 import V4Connection
        from kubefixtures.kube.portforward._wsconn import open_websocket

        assert self._api is not None
        path = pod_portforward_path(
            self._api.endpoint, self.namespace, target.pod, {"ports": str(target.port)}
        )
        connection: V4Connection = await open_websocket(
            self._api.endpoint,
            path,
            V4Connection,
            target,
            local,
            timeout=self.connect_timeout,
            what=f"pod {self.namespace}/{target.pod}",
        )
        return connection

    def _retire(self, tunnel: SpdyTunnel) -> None:
        tunnel.draining = True
        if tunnel.connection_count == 0:
            tunnel.close()
        else:
            self._draining.add(tunnel)

    def tunnel_closed(self, tunnel: SpdyTunnel) -> None:
        self._draining.discard(tunnel)
        if tunnel is self._tunnel:
            self._tunnel = None
            self._prewarm()

    def tunnel_jammed(self, tunnel: SpdyTunnel) -> None:
        # The next connection goes to a new tunnel (opened now); this one closes when its
        # last connection ends.
        if tunnel is self._tunnel:
            self._tunnel = None
        self._retire(tunnel)
        self._prewarm()

    def tunnel_idle(self, tunnel: SpdyTunnel) -> None:
        if tunnel.draining or tunnel.gone_away:
            tunnel.close()

    def _prewarm(self) -> None:
        """Opens the tunnel to the current pod before a client needs it."""
        if (
            self._stopping
            or self.transport != "spdy"
            or self.route == "direct"
            or self._current is None
        ):
            return
        if self._server is None:
            # Not started yet: _start opens the first tunnel itself. A second one opened here
            # at the same time would retire one of the two at once (a wasted upgrade).
            return
        if (
            self._tunnel is not None
            and self._tunnel.usable
            and self._tunnel.target == self._current
        ):
            return
        if self._tunnel_opening is None or self._tunnel_opening.done():
            self._spawn(self._prewarm_once())

    async def _prewarm_once(self) -> None:
        # Bounded like a client's wait: a pod whose tunnel keeps failing is tried again by
        # the next client that connects (or the next pod change), not by a loop until stop().
        with contextlib.suppress(PortForwardError, OSError, TimeoutError):
            async with asyncio.timeout(self.connect_timeout):
                await self._ready_tunnel()

    def _set_targets(self, targets: list[Target]) -> None:
        if targets == self._targets:
            return
        self._targets = targets
        current = self._current if self._current in targets else (targets[0] if targets else None)
        if current != self._current:
            if self._current is not None:
                log.info(
                    "%s: pod %s is no longer ready; new connections go to %s",
                    self.what,
                    self._current.pod,
                    current.pod if current else "(none yet)",
                )
            self._current = current
            if self._relayed is not None:
                self._relayed.follow(current)
            if self._tunnel is not None and self._tunnel.target != current:
                old, self._tunnel = self._tunnel, None
                self._retire(old)
            self._prewarm()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- watching the Service's endpoints ---------------------------------------------------
    async def _watch(self) -> None:
        assert self._api is not None
        assert self._service_port is not None
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        selector = {"labelSelector": f"{SERVICE_NAME_LABEL}={self.service}"}
        what = f"the EndpointSlices of {self.what}"
        backoff = 0.2
        while True:
            try:
                listed = await self._list_slices(path, selector, what)
                slices = {item["metadata"]["name"]: item for item in listed.get("items") or []}
                self._set_targets(ready_targets(list(slices.values()), self._service_port))
                version = listed.get("metadata", {}).get("resourceVersion", "")
                params = {**selector, "resourceVersion": version, "timeoutSeconds": "290"}
                async for event in self._api.watch(path, params, what=what):
                    kind = event.get("type")
                    item = event.get("object") or {}
                    if kind == "ERROR":
                        break  # usually 410 Gone: list again
                    if kind == "BOOKMARK":
                        continue
                    name = item.get("metadata", {}).get("name", "")
                    if kind == "DELETED":
                        slices.pop(name, None)
                    else:
                        slices[name] = item
                    self._set_targets(ready_targets(list(slices.values()), self._service_port))
                backoff = 0.2
            except PortForwardForbiddenError as error:
                self._fatal = error
                if self._relayed is not None:
                    self._relayed.fail(str(error))
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
                return
            except PortForwardError as error:
                log.debug("%s; watching again in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _get_service(self, path: str) -> JSON:
        """The Service: as the caller listed it, else from the API."""
        assert self._api is not None
        if self._known is not None:
            return self._known.service
        return await self._api.get(path, what=self.what)

    async def _list_slices(self, path: str, selector: dict[str, str], what: str) -> JSON:
        """The Service's EndpointSlices: the first time as the caller listed them, if it
        did; from the API afterwards (a watch that ended lists them again)."""
        assert self._api is not None
        known, self._known = self._known, None
        if known is not None:
            return known.slice_list()
        return await self._api.get(path, selector, what=what)

    async def _explain(self) -> str:
        """Why no pod is ready, from the pods the Service selects (best effort)."""
        if self._api is None or self._service_port is None:
            return "unknown"
        selector = self._service.get("spec", {}).get("selector") or {}
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))}
        try:
            async with asyncio.timeout(5):
                pods = await self._api.get(
                    f"/api/v1/namespaces/{self.namespace}/pods", params, what="pods"
                )
        except (PortForwardError, TimeoutError) as error:
            return f"could not list its pods ({error})"
        return explain_no_ready_pods(self._service, pods.get("items") or [], self._service_port)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _discard(items: set[Any], item: Any, _: object) -> None:
    items.discard(item)
