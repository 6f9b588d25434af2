"""The direct route: a local connection spliced to the pod's own IP, no apiserver in between.

Where the pod network is reachable from this process (the host of a local cluster, a CI
runner inside the cluster, Linux kind with a route to the node), a forward need not pay the
apiserver, the kubelet and the runtime on every connection: the listener stays the same
(127.0.0.1, ``LocalConnection``), and each accepted connection is joined to a TCP
connection to the pod. Bytes are copied in user space through one reused buffer per
connection; half-closes pass both ways (a FIN from either end becomes a ``shutdown(SHUT_WR)``
of the other), and a reset from the pod resets the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from kubefixtures.kube.portforward._local import LocalConnection
from kubefixtures.kube.portforward._wsconn import WRITE_HIGH_WATER

# Bytes read from the pod per call. Large, so that a bulk transfer costs few trips through
# the event loop (benchmarks/direct_route.py); the kernel hands over what it has.
READ_BUFFER = 256 * 1024


async def probe(address: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to ``address:port`` opens within ``timeout``, else why not.

    The connection is closed at once without a byte sent, as a kubelet TCP probe does.
    """
    if not address:
        return "its EndpointSlice gives no pod IP"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (address, port))
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except OSError as error:
            return describe_connect_error(error)
    return None


def describe_connect_error(error: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('10.0.0.7', 80)"."""
    return os.strerror(error.errno) if error.errno else str(error)


class DirectConnection(asyncio.BufferedProtocol):
    """The pod end of one directly routed connection, and the ``Sink`` of its local end."""

    def __init__(self, local: LocalConnection, on_lost: Callable[[DirectConnection], None]) -> None:
        self.local = local
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray(READ_BUFFER)
        self._eof_sent = False  # the client's FIN, passed to the pod
        self._eof_received = False  # the pod's FIN, passed to the client

    # -- the pod's side (asyncio.BufferedProtocol) -----------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self.local.finished:  # the client gave up while we connected
            transport.close()
            return
        self.local.attached(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.local.write(memoryview(self._buffer)[:nbytes])
        local = self.local.transport
        if local is not None and local.get_write_buffer_size():
            # The client's transport kept part of it; some Pythons (3.12+) keep a view of
            # our buffer rather than a copy, so the next read must go elsewhere.
            self._buffer = bytearray(READ_BUFFER)

    def eof_received(self) -> bool:
        self._eof_received = True
        self.local.write_eof()
        self._maybe_done()
        return True  # the client may still be sending

    def pause_writing(self) -> None:
        self.local.pause_upstream()

    def resume_writing(self) -> None:
        self.local.resume_upstream()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.local.reset()  # a reset from the pod resets the client
        else:
            self.local.close()
        self._on_lost(self)

    # -- Sink: the client's side (called by LocalConnection) ---------------------------------
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self._eof_sent:
            self.transport.write(data)

    def send_eof(self) -> None:
        if self.transport is None or self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(OSError):  # the pod is gone: connection_lost follows
            self.transport.write_eof()
        self._maybe_done()

    def local_closed(self) -> None:
        if self.transport is not None:
            self.transport.close()  # after what the client sent has reached the pod

    def pause_remote(self) -> None:
        # Not after the pod's FIN: asyncio stopped reading then, and resuming would read
        # the end of the stream a second time.
        if self.transport is not None and not self._eof_received:
            self.transport.pause_reading()

    def resume_remote(self) -> None:
        if self.transport is not None and not self._eof_received:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _maybe_done(self) -> None:
        if self._eof_sent and self._eof_received:
            # Both ways are finished: close both ends once their buffers are written.
            self.local.close()
            if self.transport is not None:
                self.transport.close()
