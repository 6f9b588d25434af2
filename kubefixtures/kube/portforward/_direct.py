"""The direct route: a local connection spliced to the pod's own IP, no apiserver in between.

Where the pod network is reachable from this process (the host of a local cluster, a CI
runner inside the cluster, Linux kind with a route to the node), a forward need not pay the
apiserver, the kubelet and the runtime on every connection: the port stays on 127.0.0.1
(its listener is in _direct_listener), and each accepted connection, a plain socket, is
joined to a TCP connection to the pod.

Each direction is a ``_Way`` driven by the event loop's readiness callbacks: read while
the way is empty, write until it is, and stop reading while the other end cannot take more
(backpressure). An EOF is passed on as ``shutdown(SHUT_WR)`` once everything before it is
written, so half-closed connections work both ways; an error or a reset on either end
resets the other; the connection is closed once both ways are done.

Most connections a test makes are short: a request, a reply, a close. What they cost is
system calls and trips through the event loop, not copying (benchmarks/direct_route.py),
so a way starts by copying through one scratch buffer that every splice of the loop
shares (a read and its write happen in the same callback). Once a read brings a bulk of
bytes, the way moves them in the kernel from then on where it can (Linux ``splice(2)``
through a pipe: socket to pipe to socket, never copied into Python), with a pipe kept
spare by an earlier connection if there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Collection

# Bytes moved per splice(2) call. Large, so that a bulk transfer costs few trips through
# the event loop (benchmarks/direct_route.py); a pipe holds this much if the system allows
# it (fs.pipe-max-size, 1 MiB by default), else its default 64 KiB.
CHUNK = 1024 * 1024
# The shared scratch buffer: it carries every read where there is no splice(2), so large.
COPY_BUFFER = 256 * 1024
# A read at least this large makes its way a bulk one: spliced from then on, and read again
# in the same callback (a short read has most likely emptied the socket).
BULK = 64 * 1024
# Reads per readiness callback of a bulk way: then the loop's other connections get a turn.
BULK_ROUNDS = 8
# Empty pipes kept for the next bulk ways (two descriptors each).
SPARE_PIPES = 8
_SPLICE = getattr(os, "splice", None)  # Linux, Python 3.10+
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_F_SETPIPE_SZ = 1031
# SO_LINGER on with a zero timeout: close() sends a reset instead of a FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


async def probe(address: str, port: int, timeout: float, *, any_route: bool = False) -> str | None:
    """None if a TCP connection to ``address:port`` opens within ``timeout``, else why not.

    The connection is closed at once without a byte sent, as a kubelet TCP probe does.
    ``any_route``: the default route counts too (a Service's ClusterIP, which this host's
    kube-proxy rewrites after routing, and which no pod network route covers).
    """
    if not address:
        return "its EndpointSlice gives no pod IP"
    if not any_route and not routed_here(address):
        return "no route to it but the default one (where a proxy or gateway may answer for it)"
    try:
        async with asyncio.timeout(timeout):
            sock = await connect(address, port)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as error:
        return describe_connect_error(error)
    sock.close()
    return None


# The first port tried for the ClusterIP's canary (discard, which no Service should need).
CANARY_PORT = 9
# What the canary found, per cluster (its apiserver's URL), for this process: the answer
# depends on this host's routes and the cluster's kube-proxy, neither of which a test run
# changes, and finding out may cost a probe's whole timeout.
_canaries: dict[str, str | None] = {}


async def stray_answer(
    key: str, cluster_ip: str, service_ports: Collection[int], timeout: float
) -> str | None:
    """Why a connection to ``cluster_ip`` that opens proves nothing from here, or None.

    kube-proxy programs a Service's own ports, and only once it has synced after the
    Service was created. A connection to any other port of the ClusterIP, the canary,
    leaves by the default route in iptables mode, or is refused (ipvs and nftables modes,
    the local cluster's reject rule). Where the canary opens, something on the default
    route (a transparent proxy, a sandbox's or a VPN's catch-all) answers for any address,
    and answers for the Service too until kube-proxy has synced: a connect probe to the
    ClusterIP cannot tell the two apart. ``key`` names the cluster (its apiserver)."""
    if key not in _canaries:
        port = next(port for port in itertools.count(CANARY_PORT) if port not in service_ports)
        if await probe(cluster_ip, port, timeout, any_route=True) is None:
            _canaries[key] = (
                f"its port {port}, which no Service uses, answers too: something on the"
                " default route answers for any address"
            )
        else:
            _canaries[key] = None
    return _canaries[key]


def routed_here(address: str, routes: str = "/proc/net/route") -> bool:
    """Whether this machine routes ``address`` by a route of its own (a pod's host route, a
    route to the pod network), not only by the default route. Behind the default route a
    transparent proxy or a gateway may accept the connection in the pod's place, so a probe
    that succeeds there proves nothing. IPv6, loopback, and systems without Linux's IPv4
    routing table are not judged (True)."""
    # Here, not at the top: the relay process imports this module for the splice alone,
    # and its start-up is on a session's path.
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version != 4 or ip.is_loopback:
        return True
    try:
        with open(routes) as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return True
    wanted = int(ip)
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        # Destination and Mask are hexadecimal, in the host's (little-endian) byte order.
        destination = int.from_bytes(bytes.fromhex(fields[1]), "little")
        mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
        if mask and wanted & mask == destination:
            return True
    return False


async def connect(address: str, port: int) -> socket.socket:
    """A non-blocking TCP connection to ``address:port`` (an IP, never a name)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def describe_refusal() -> str:
    """What ``probe`` says of a refused connection."""
    return os.strerror(errno.ECONNREFUSED)


def describe_connect_error(error: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('10.0.0.7', 80)"."""
    return os.strerror(error.errno) if error.errno else str(error)


def reset(sock: socket.socket) -> None:
    """Closes ``sock`` with a reset: its peer fails at once instead of waiting."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    sock.close()


class Buffers:
    """What the splices of one event loop share: the scratch buffer small reads go through
    (read and written on in one callback, so one buffer serves every connection) and empty
    pipes kept for the next bulk way (creating one costs three system calls, and two more
    to close it)."""

    def __init__(self) -> None:
        self.scratch = memoryview(bytearray(COPY_BUFFER))
        self._spare: list[tuple[int, int]] = []

    def take_pipe(self) -> tuple[int, int] | None:
        """An empty pipe; None where there is no splice(2), or no descriptor left."""
        if self._spare:
            return self._spare.pop()
        if _SPLICE is None:
            return None
        try:
            pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # out of descriptors: copy instead
            return None
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(pipe[1], _F_SETPIPE_SZ, CHUNK)
        return pipe

    def give_back(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and len(self._spare) < SPARE_PIPES:
            self._spare.append(pipe)
            return
        for end in pipe:
            os.close(end)

    def close(self) -> None:
        while self._spare:
            for end in self._spare.pop():
                os.close(end)


class Splice:
    """One client connection joined to one pod connection.

    Both are non-blocking sockets with TCP_NODELAY (interactive protocols: no Nagle delay);
    the client has usually written already, so its bytes are moved at once, without a
    trip through the event loop.
    """

    __slots__ = ("_on_done", "_sockets", "_ways", "closed")

    def __init__(
        self,
        client: socket.socket,
        pod: socket.socket,
        *,
        loop: asyncio.AbstractEventLoop,
        buffers: Buffers,
        on_done: Callable[[Splice], None],
    ) -> None:
        self._sockets = (client, pod)
        self._on_done = on_done
        self.closed = False
        upstream = _Way(self, loop, buffers, client, pod)
        self._ways = (upstream, _Way(self, loop, buffers, pod, client))
        upstream.move()  # first: the pod can start on the request meanwhile
        for way in self._ways:
            way.start()

    def way_done(self) -> None:
        if self._ways[0].done and self._ways[1].done:
            self.close()

    def reset(self) -> None:
        """Ends both connections with a reset (an error on one end, or the forward stops)."""
        if self.closed:
            return
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for way in self._ways:
            way.release()
        for sock in self._sockets:
            sock.close()
        self._on_done(self)


class _Way:
    """One direction of a splice: bytes from ``source`` to ``target``.

    It holds bytes only while the target cannot take them: ``_held`` (copied) or
    ``_in_pipe`` bytes in its pipe (spliced), and reads nothing more until they are written.
    """

    __slots__ = (
        "_buffers",
        "_held",
        "_in_pipe",
        "_loop",
        "_pipe",
        "_reading",
        "_source",
        "_source_fd",
        "_splice",
        "_target",
        "_target_fd",
        "_writing",
        "done",
    )

    def __init__(
        self,
        splice: Splice,
        loop: asyncio.AbstractEventLoop,
        buffers: Buffers,
        source: socket.socket,
        target: socket.socket,
    ) -> None:
        self._splice = splice
        self._loop = loop
        self._buffers = buffers
        self._source = source
        self._target = target
        self._source_fd = source.fileno()
        self._target_fd = target.fileno()
        self._pipe: tuple[int, int] | None = None  # once the way is a bulk one
        self._in_pipe = 0
        self._held: memoryview | None = None
        self._reading = False
        self._writing = False
        self.done = False

    def start(self) -> None:
        if not self._writing:  # else it reads again once the target has taken what it holds
            self._set_reading(True)

    def release(self) -> None:
        self._set_reading(False)
        self._set_writing(False)
        if self._pipe is not None:
            self._buffers.give_back(self._pipe, empty=not self._in_pipe)
            self._pipe = None

    def move(self) -> None:
        """Moves what the source has to the target (the source is readable)."""
        for _ in range(BULK_ROUNDS):
            pipe = self._pipe
            try:
                if pipe is not None and _SPLICE is not None:
                    count = _SPLICE(self._source_fd, pipe[1], CHUNK, flags=_SPLICE_FLAGS)
                else:
                    count = self._source.recv_into(self._buffers.scratch)
            except BlockingIOError:
                return
            except OSError:
                self._splice.reset()  # the source reset: so does the target
                return
            if count == 0:
                self._end()
                return
            if pipe is not None:
                self._in_pipe = count
            else:
                self._held = self._buffers.scratch[:count]
            if not self._write():
                return
            if count < BULK:
                return  # most likely all there was: the loop says when there is more
            if self._pipe is None:
                self._pipe = self._buffers.take_pipe()

    def _end(self) -> None:
        """The source's EOF (the way is empty): pass it on."""
        self._set_reading(False)
        with contextlib.suppress(OSError):
            self._target.shutdown(socket.SHUT_WR)
        self.done = True
        self._splice.way_done()

    def _writable(self) -> None:
        if self._write():
            self._set_writing(False)
            self._set_reading(True)

    def _write(self) -> bool:
        """Writes what the way holds; False if the target cannot take it all (reading stops
        until it can: backpressure) or is gone (the splice is reset)."""
        try:
            while self._held is not None:
                written = self._target.send(self._held)
                self._held = self._held[written:] if written < len(self._held) else None
            pipe = self._pipe
            while self._in_pipe and pipe is not None and _SPLICE is not None:
                self._in_pipe -= _SPLICE(
                    pipe[0], self._target_fd, self._in_pipe, flags=_SPLICE_FLAGS
                )
        except BlockingIOError:
            if self._held is not None and self._held.obj is self._buffers.scratch.obj:
                self._held = memoryview(bytes(self._held))  # the next read reuses the scratch
            self._set_reading(False)
            self._set_writing(True)
            return False
        except OSError:
            self._splice.reset()  # the target is gone (a reset, EPIPE): so is the source
            return False
        return True

    def _set_reading(self, reading: bool) -> None:
        if reading == self._reading or (reading and (self.done or self._splice.closed)):
            return
        self._reading = reading
        if reading:
            self._loop.add_reader(self._source_fd, self.move)
        else:
            self._loop.remove_reader(self._source_fd)

    def _set_writing(self, writing: bool) -> None:
        if writing == self._writing or (writing and self._splice.closed):
            return
        self._writing = writing
        if writing:
            self._loop.add_writer(self._target_fd, self._writable)
        else:
            self._loop.remove_writer(self._target_fd)
