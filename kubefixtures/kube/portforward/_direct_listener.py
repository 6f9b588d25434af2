"""The direct route's listener: accepted connections dialled to the pod's IP and spliced.

A forward on the direct route pays per connection only what its splice needs, so the path
from the kernel's accept queue to the splice is kept short (benchmarks/direct_route.py):
the listening socket is read by one readiness callback that accepts until the queue is
empty (no asyncio transport, protocol or task per connection), and the pod is dialled at
once with a non-blocking connect. A pod on this host has usually answered the handshake
by the time connect() returns; otherwise one writability callback (bounded by the
connect timeout) waits for it. Only a connection that arrives while no pod is ready waits
in a task, for the EndpointSlices to name one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Awaitable
from typing import Protocol

from kubefixtures.kube.errors import PortForwardError
from kubefixtures.kube.portforward._direct import Buffers, Splice, reset
from kubefixtures.kube.portforward._endpoints import Target

log = logging.getLogger("kubefixtures.portforward")

BACKLOG = 512
# Connections accepted per readiness callback, at most: then the loop's others get a turn.
ACCEPTS_PER_ROUND = 64
# Out of descriptors or memory, accept() fails until some are freed: stop listening for
# this long rather than be called back at once, again and again (asyncio does the same).
ACCEPT_RETRY_DELAY = 1.0
# Linux creates a socket non-blocking in the same system call.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Pods(Protocol):
    """Where new connections go: the forward's current ready pod, from its EndpointSlices."""

    @property
    def target(self) -> Target | None: ...

    def ready_target(self) -> Awaitable[Target]: ...


def listen(bind: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``bind:port`` (``bind`` an address), with
    TCP_NODELAY, which accepted connections inherit."""
    family, kind, proto, _, address = socket.getaddrinfo(
        bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Dial:
    """A client whose connection to the pod is still being set up."""

    __slots__ = ("client", "deadline", "pod", "target", "timer")

    def __init__(
        self, client: socket.socket, pod: socket.socket, target: Target, deadline: float
    ) -> None:
        self.client = client
        self.pod = pod
        self.target = target
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None


class DirectListener:
    """Accepts on ``sock`` and splices every connection to the current pod's IP."""

    def __init__(
        self,
        sock: socket.socket,
        pods: Pods,
        *,
        namespace: str,
        what: str,
        connect_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._pods = pods
        self._namespace = namespace
        self._what = what
        self._connect_timeout = connect_timeout
        host, self.port = sock.getsockname()[:2]
        self._where = f"{host}:{self.port}"
        self._buffers = Buffers()
        self._splices: set[Splice] = set()
        self._dials: dict[int, _Dial] = {}  # by the pod socket's descriptor
        self._waiting: dict[asyncio.Task[None], socket.socket] = {}  # clients, no pod yet
        self._closed = False
        self._loop.add_reader(self._fd, self._accept)

    async def close(self) -> None:
        """Stops accepting and resets every connection, so that clients fail at once."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._sock.close()
        for splice in list(self._splices):
            splice.reset()
        for dial in list(self._dials.values()):
            self._drop_dial(dial)
        tasks = list(self._waiting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._buffers.close()

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_ROUND):
            try:
                client, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    raise  # the event loop logs it
                log.warning(
                    "%s (%s): cannot accept connections for %gs: %s",
                    self._where,
                    self._what,
                    ACCEPT_RETRY_DELAY,
                    error.strerror,
                )
                self._loop.remove_reader(self._fd)
                self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            client.setblocking(False)
            self._dial(client, self._loop.time() + self._connect_timeout)

    def _resume_accepting(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)

    def _dial(self, client: socket.socket, deadline: float) -> None:
        """Connects ``client`` to the current pod, or waits for one (until ``deadline``)."""
        target = self._pods.target
        if target is None:
            self._wait_for_pod(client, deadline)
            return
        family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
        try:
            pod = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK)
        except OSError as error:  # out of descriptors
            self._drop(client, f"cannot dial pod {target.pod}: {error.strerror}")
            return
        if not _NONBLOCK:
            pod.setblocking(False)
        with contextlib.suppress(OSError):
            pod.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        failure = pod.connect_ex((target.address, target.port))
        if failure == errno.EINPROGRESS:
            try:
                pod.getpeername()  # succeeds once the handshake is done, as it often is
                failure = 0
            except OSError:
                dial = _Dial(client, pod, target, deadline)
                self._dials[pod.fileno()] = dial
                self._loop.add_writer(pod.fileno(), self._connected, dial)
                dial.timer = self._loop.call_at(deadline, self._timed_out, dial)
                return
        if failure:
            self._failed(_Dial(client, pod, target, deadline), failure)
        else:
            self._splice(client, pod)

    def _connected(self, dial: _Dial) -> None:
        self._forget(dial)
        failure = dial.pod.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if failure:
            self._failed(dial, failure)
        else:
            self._splice(dial.client, dial.pod)

    def _timed_out(self, dial: _Dial) -> None:
        self._forget(dial)
        dial.pod.close()
        self._drop(
            dial.client,
            f"pod {self._namespace}/{dial.target.pod} at {dial.target.address}:"
            f"{dial.target.port}: no answer within {self._connect_timeout:g}s",
        )

    def _failed(self, dial: _Dial, failure: int) -> None:
        dial.pod.close()
        if dial.target != self._pods.target and not self._closed:
            self._dial(dial.client, dial.deadline)  # the pod changed meanwhile: the next one
            return
        self._drop(
            dial.client,
            f"pod {self._namespace}/{dial.target.pod} at {dial.target.address}:"
            f"{dial.target.port}: {os.strerror(failure)}",
        )

    def _forget(self, dial: _Dial) -> None:
        self._dials.pop(dial.pod.fileno(), None)
        self._loop.remove_writer(dial.pod.fileno())
        if dial.timer is not None:
            dial.timer.cancel()

    def _drop_dial(self, dial: _Dial) -> None:
        self._forget(dial)
        dial.pod.close()
        reset(dial.client)

    def _splice(self, client: socket.socket, pod: socket.socket) -> None:
        if self._closed:
            pod.close()
            reset(client)
            return
        splice = Splice(
            client, pod, loop=self._loop, buffers=self._buffers, on_done=self._splices.discard
        )
        if not splice.closed:  # a reset at once
            self._splices.add(splice)

    def _drop(self, client: socket.socket, why: str) -> None:
        """Resets ``client``: it fails at once rather than hanging."""
        log.warning("connection to %s dropped: %s", self._where, why)
        reset(client)

    def _wait_for_pod(self, client: socket.socket, deadline: float) -> None:
        task = self._loop.create_task(self._wait_then_dial(client, deadline))
        self._waiting[task] = client
        task.add_done_callback(self._waited)

    async def _wait_then_dial(self, client: socket.socket, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await self._pods.ready_target()
        except TimeoutError:
            self._drop(
                client,
                f"no ready pod behind {self._what} within {self._connect_timeout:g}s",
            )
            return
        except PortForwardError as error:
            self._drop(client, str(error))
            return
        self._dial(client, deadline)

    def _waited(self, task: asyncio.Task[None]) -> None:
        client = self._waiting.pop(task)
        if task.cancelled():  # the forward stopped
            reset(client)
