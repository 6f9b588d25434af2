"""The local end of a forwarded connection: a TCP client of 127.0.0.1:<local_port>."""

from __future__ import annotations

import asyncio
from typing import Protocol

from kubefixtures.kube.portforward._wsconn import WRITE_HIGH_WATER


class Sink(Protocol):
    """Where a local connection's bytes go (a tunnel stream, or a v4 WebSocket)."""

    def send(self, data: bytes) -> None: ...
    def send_eof(self) -> None: ...
    def local_closed(self) -> None: ...
    def pause_remote(self) -> None: ...
    def resume_remote(self) -> None: ...


class Attacher(Protocol):
    def attach(self, local: LocalConnection) -> None: ...
    def detach(self, local: LocalConnection) -> None: ...


class LocalConnection(asyncio.Protocol):
    """Reads nothing until a sink is attached, then pipes both ways with backpressure."""

    def __init__(self, owner: Attacher) -> None:
        self._owner = owner
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self._upstream_paused = False
        self._reading = True
        self.finished = False

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._set_reading(False)
        self._owner.attach(self)

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.send(data)

    def eof_received(self) -> bool:
        if self.sink is not None:
            self.sink.send_eof()
        return True  # keep the write half open: the pod may still be answering

    def connection_lost(self, exc: Exception | None) -> None:
        self.finished = True
        if self.sink is not None:
            self.sink.local_closed()
        self._owner.detach(self)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_remote()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_remote()

    # -- for the remote side ---------------------------------------------------------------
    def attached(self, sink: Sink) -> None:
        self.sink = sink
        self._update_reading()

    def pause_upstream(self) -> None:
        """The tunnel cannot take more: stop reading from the local client."""
        self._upstream_paused = True
        self._update_reading()

    def resume_upstream(self) -> None:
        self._upstream_paused = False
        self._update_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.finished:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is None or self.finished or not self.transport.can_write_eof():
            return
        try:
            self.transport.write_eof()
        except OSError:
            # The client is gone already: it closed after sending its EOF (redis-py's
            # disconnect does shutdown() then close()) and its kernel answered a late
            # reply with a reset, which asyncio does not see once reading stopped at the
            # EOF. shutdown() then fails (ENOTCONN), and, raised from the tunnel's
            # data_received, the error made asyncio close the whole tunnel, silently
            # (it logs OSErrors only in debug mode): every other connection on it was
            # dropped, new ones before their first reply. Only this one is over.
            self.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Resets the client's connection, so that it fails at once instead of hanging."""
        if self.transport is not None:
            self.transport.abort()

    def _update_reading(self) -> None:
        self._set_reading(self.sink is not None and not self._upstream_paused)

    def _set_reading(self, reading: bool) -> None:
        if self.transport is None or self.finished or reading == self._reading:
            return
        self._reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()
