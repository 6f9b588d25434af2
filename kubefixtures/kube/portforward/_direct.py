"""The direct route: a local connection spliced to the pod's own IP, no apiserver in between.

Where the pod network is reachable from this process (the host of a local cluster, a CI
runner inside the cluster, Linux kind with a route to the node), a forward need not pay the
apiserver, the kubelet and the runtime on every connection: the listener stays the same
(127.0.0.1, ``LocalConnection``), and each accepted connection is handed over as a plain
socket and joined to a TCP connection to the pod.

The bytes move in the kernel where it can (Linux ``splice(2)`` through a pipe per
direction: socket to pipe to socket, never copied into Python), else through one buffer
per direction. Each direction is a ``_Way`` driven by the event loop's readiness callbacks:
read while the way is empty, write until it is, and stop reading while the other end
cannot take more (backpressure). An EOF is passed on as ``shutdown(SHUT_WR)`` once
everything before it is written, so half-closed connections work both ways; an error or a
reset on either end resets the other; the connection is closed once both ways are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

# Bytes moved per call. Large, so that a bulk transfer costs few trips through the event
# loop (benchmarks/direct_route.py); a pipe holds this much if the system allows it
# (fs.pipe-max-size, 1 MiB by default), else its default 64 KiB.
CHUNK = 1024 * 1024
COPY_BUFFER = 256 * 1024  # where there is no splice(2)
_SPLICE = getattr(os, "splice", None)  # Linux, Python 3.10+
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_F_SETPIPE_SZ = 1031
# SO_LINGER on with a zero timeout: close() sends a reset instead of a FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


async def probe(address: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to ``address:port`` opens within ``timeout``, else why not.

    The connection is closed at once without a byte sent, as a kubelet TCP probe does.
    """
    if not address:
        return "its EndpointSlice gives no pod IP"
    if not routed_here(address):
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


def routed_here(address: str, routes: str = "/proc/net/route") -> bool:
    """Whether this machine routes ``address`` by a route of its own (a pod's host route, a
    route to the pod network), not only by the default route. Behind the default route a
    transparent proxy or a gateway may accept the connection in the pod's place, so a probe
    that succeeds there proves nothing. IPv6, loopback, and systems without Linux's IPv4
    routing table are not judged (True)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version != 4 or ip.is_loopback:
        return True
    try:
        lines = Path(routes).read_text().splitlines()[1:]
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


def describe_connect_error(error: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('10.0.0.7', 80)"."""
    return os.strerror(error.errno) if error.errno else str(error)


def reset(sock: socket.socket) -> None:
    """Closes ``sock`` with a reset: its peer fails at once instead of waiting."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    sock.close()


class Splice:
    """One client connection joined to one pod connection, both plain sockets."""

    def __init__(
        self, client: socket.socket, pod: socket.socket, on_done: Callable[[Splice], None]
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = (client, pod)
        self._on_done = on_done
        self.closed = False
        for sock in self._sockets:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # interactive protocols: no Nagle delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ways = (_Way(self, client, pod), _Way(self, pod, client))
        for way in self._ways:
            way.start()

    def way_done(self) -> None:
        if all(way.done for way in self._ways):
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
    """One direction of a splice: bytes from ``source`` to ``target``."""

    def __init__(self, splice: Splice, source: socket.socket, target: socket.socket) -> None:
        self._splice = splice
        self._loop = splice._loop
        self._source = source.fileno()
        self._target = target.fileno()
        self._target_socket = target
        self._pending = 0  # bytes read and not yet written
        self._reading = False
        self._writing = False
        self.done = False
        self._pipe: tuple[int, int] | None = None
        self._buffer: memoryview | None = None
        self._offset = 0
        if _SPLICE is not None:
            with contextlib.suppress(OSError):  # out of descriptors: copy instead
                self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(self._pipe[1], _F_SETPIPE_SZ, CHUNK)
        else:
            # Smaller: a fresh buffer costs page faults on every new connection.
            self._buffer = memoryview(bytearray(COPY_BUFFER))

    def start(self) -> None:
        self._set_reading(True)

    def release(self) -> None:
        self._set_reading(False)
        self._set_writing(False)
        if self._pipe is not None:
            for end in self._pipe:
                os.close(end)
            self._pipe = None

    def _readable(self) -> None:
        try:
            count = self._fill()
        except BlockingIOError:
            return
        except OSError:
            self._splice.reset()  # the source reset: so does the target
            return
        if count == 0:  # the source's EOF: pass it on (the way is empty: see _drain)
            self._set_reading(False)
            with contextlib.suppress(OSError):
                self._target_socket.shutdown(socket.SHUT_WR)
            self.done = True
            self._splice.way_done()
            return
        self._pending += count
        self._drain()

    def _writable(self) -> None:
        self._drain()

    def _drain(self) -> None:
        while self._pending:
            try:
                written = self._flush()
            except BlockingIOError:
                # The target cannot take more: stop reading until it can (backpressure).
                self._set_reading(False)
                self._set_writing(True)
                return
            except OSError:
                self._splice.reset()  # the target is gone (a reset, EPIPE): so is the source
                return
            self._pending -= written
        self._set_writing(False)
        self._set_reading(True)

    def _fill(self) -> int:
        if self._pipe is not None and _SPLICE is not None:
            return int(_SPLICE(self._source, self._pipe[1], CHUNK, flags=_SPLICE_FLAGS))
        assert self._buffer is not None
        self._offset = 0
        return os.readv(self._source, [self._buffer])

    def _flush(self) -> int:
        if self._pipe is not None and _SPLICE is not None:
            return int(_SPLICE(self._pipe[0], self._target, self._pending, flags=_SPLICE_FLAGS))
        assert self._buffer is not None
        written = os.write(self._target, self._buffer[self._offset : self._offset + self._pending])
        self._offset += written
        return written

    def _set_reading(self, reading: bool) -> None:
        if reading == self._reading or (reading and (self.done or self._splice.closed)):
            return
        self._reading = reading
        if reading:
            self._loop.add_reader(self._source, self._readable)
        else:
            self._loop.remove_reader(self._source)

    def _set_writing(self, writing: bool) -> None:
        if writing == self._writing or (writing and self._splice.closed):
            return
        self._writing = writing
        if writing:
            self._loop.add_writer(self._target, self._writable)
        else:
            self._loop.remove_writer(self._target)
