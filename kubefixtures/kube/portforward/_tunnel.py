"""The SPDY-over-WebSocket tunnel to one pod: many forwarded connections on one upgrade.

Per forwarded connection kubectl's protocol opens an error stream (the kubelet writes a
message there if it cannot dial the pod port) and a data stream, paired by `requestID`.
Half-closes travel as FIN flags; a connection that ends early is reset (RST_STREAM) so
the kubelet closes its side in the pod at once.

A connection the kubelet could not dial (nothing listening in the pod yet) jams the
tunnel if the client had already written to it: the kubelet's SPDY library hands each
data frame to the stream's reader and waits, holding one of its few frame workers, and
a failed connection has no reader. Every later frame that worker is given (new
connections, resets, pings) then waits forever, so such a tunnel takes no new
connections (kubectl closes its whole tunnel on any failed connection).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from kubefixtures.kube.portforward import _spdy as spdy
from kubefixtures.kube.portforward._endpoints import Target
from kubefixtures.kube.portforward._local import LocalConnection
from kubefixtures.kube.portforward._wsconn import WebSocketProtocol

log = logging.getLogger("kubefixtures.portforward")


class TunnelOwner(Protocol):
    connect_timeout: float  # for the kubelet's answer to a new connection
    ping_interval: float

    def tunnel_closed(self, tunnel: SpdyTunnel) -> None: ...
    def tunnel_idle(self, tunnel: SpdyTunnel) -> None: ...
    def tunnel_jammed(self, tunnel: SpdyTunnel) -> None: ...


class SpdyTunnel(WebSocketProtocol):
    SUBPROTOCOL = "SPDY/3.1+portforward.k8s.io"

    def __init__(self, request: bytes, key: str, target: Target, owner: TunnelOwner) -> None:
        super().__init__(request, key, self.SUBPROTOCOL)
        self.target = target
        self._owner = owner
        self._open_timeout = owner.connect_timeout
        self._ping_interval = owner.ping_interval
        self._compressor = spdy.Compressor()
        self._spdy = spdy.FrameParser()
        self._streams: dict[int, TunnelStream] = {}
        self._next_stream_id = 1  # clients use odd ids
        self._next_request_id = 0
        self._next_ping_id = 1
        self._ping_outstanding = False
        self._ping_handle: asyncio.TimerHandle | None = None
        self._remote_paused = 0  # local clients that cannot take more bytes right now
        self.draining = False
        self.gone_away = False

    @property
    def usable(self) -> bool:
        return self.is_open and not self._closing and not self.gone_away and not self.draining

    @property
    def connection_count(self) -> int:
        return len({id(stream) for stream in self._streams.values()})

    def connect(self, local: LocalConnection, port: int) -> TunnelStream:
        """Starts forwarding `local` to `port` in the pod; returns at once (no round trip)."""
        error_id = self._next_stream_id
        data_id = error_id + 2
        self._next_stream_id += 4
        request_id = str(self._next_request_id)
        self._next_request_id += 1
        headers = {"streamtype": "error", "port": str(port), "requestid": request_id}
        frames = self._compressor.syn_stream(error_id, headers)
        # We never write to the error stream: half-close it right away, as kubectl does.
        frames += spdy.data_frame_header(error_id, 0, fin=True)
        headers["streamtype"] = "data"
        frames += self._compressor.syn_stream(data_id, headers)
        stream = TunnelStream(self, local, error_id, data_id)
        self._streams[error_id] = stream
        self._streams[data_id] = stream
        self.send_binary(frames)
        stream.reply_timer = asyncio.get_running_loop().call_later(
            self._open_timeout, stream.reply_overdue
        )
        return stream

    def forget(self, stream: TunnelStream) -> None:
        self._streams.pop(stream.error_id, None)
        self._streams.pop(stream.data_id, None)
        if stream.remote_paused:
            stream.remote_paused = False
            self.resume_one()
        if not self._streams:
            self._owner.tunnel_idle(self)

    def jammed(self) -> None:
        self.draining = True
        self._owner.tunnel_jammed(self)

    def send_spdy(self, *parts: bytes) -> None:
        self.send_binary(*parts)

    def pause_one(self) -> None:
        # One slow local reader stops the whole tunnel (head-of-line blocking, as with
        # kubectl): the alternative is unbounded buffering of the pod's bytes in memory.
        self._remote_paused += 1
        if self._remote_paused == 1 and self.transport is not None:
            self.transport.pause_reading()

    def resume_one(self) -> None:
        self._remote_paused -= 1
        if self._remote_paused == 0 and self.transport is not None and not self._closing:
            self.transport.resume_reading()

    # -- WebSocketProtocol hooks ---------------------------------------------------------
    def on_data(self, payload: bytes) -> None:
        try:
            frames = self._spdy.feed(payload)
        except spdy.SpdyProtocolError as error:
            # A session error (SPDY/3.1 section 2.4.1): GOAWAY, then close the connection.
            self.send_spdy(spdy.encode_goaway(0, spdy.GOAWAY_PROTOCOL_ERROR))
            self.fail(f"pod {self.target.pod}: SPDY: {error}")
            return
        for frame in frames:
            if isinstance(frame, spdy.DataFrame):
                stream = self._streams.get(frame.stream_id)
                if stream is None:
                    continue
                try:
                    stream.on_data(frame.stream_id, frame.data, frame.fin)
                except OSError as error:
                    # One client's socket failing ends that connection only. Raised from
                    # here, asyncio would close this tunnel and every connection on it,
                    # and say nothing (see LocalConnection.write_eof).
                    log.debug("a forwarded connection's client failed (%s); dropping it", error)
                    stream.local.abort()
            else:
                self._control(frame)

    def _control(self, frame: spdy.ControlFrame) -> None:
        kind = frame.type
        if kind == spdy.TYPE_SYN_REPLY:
            stream = self._streams.get(frame.stream_id)
            if stream is not None and frame.stream_id == stream.data_id:
                stream.on_reply()
        elif kind == spdy.TYPE_RST_STREAM:
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream.on_reset(frame.stream_id, frame.value)
        elif kind == spdy.TYPE_PING:
            if frame.stream_id % 2 == 0:  # the server's ping: answer it
                self.send_spdy(spdy.encode_ping(frame.stream_id))
            else:
                self._ping_outstanding = False
        elif kind == spdy.TYPE_GOAWAY:
            # No new streams here; the owner opens another tunnel for the next connection.
            self.gone_away = True
            if not self._streams:
                self.close()
        elif kind == spdy.TYPE_SYN_STREAM:
            self.send_spdy(spdy.encode_rst_stream(frame.stream_id, spdy.RST_PROTOCOL_ERROR))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._ping_handle = asyncio.get_running_loop().call_later(self._ping_interval, self._ping)

    def pause_writing(self) -> None:
        for stream in set(self._streams.values()):
            stream.local.pause_upstream()

    def resume_writing(self) -> None:
        for stream in set(self._streams.values()):
            stream.local.resume_upstream()

    def _ping(self) -> None:
        # A tunnel whose pong is a whole interval late is dead (a half-open TCP connection,
        # a stuck kubelet): close it, so that connections fail instead of hanging.
        if self._closing:
            return
        if self._ping_outstanding:
            log.warning(
                "port-forward tunnel to pod %s stopped answering pings; closing it", self.target.pod
            )
            self.abort()
            return
        self._ping_outstanding = True
        self.send_spdy(spdy.encode_ping(self._next_ping_id))
        self._next_ping_id += 2
        self._ping_handle = asyncio.get_running_loop().call_later(self._ping_interval, self._ping)

    def on_closed(self) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
        for stream in set(self._streams.values()):
            stream.tunnel_lost()
        self._streams.clear()
        self._owner.tunnel_closed(self)


class TunnelStream:
    """One forwarded connection inside a tunnel (a Sink for the local connection)."""

    __slots__ = (
        "data_id",
        "error_id",
        "error_text",
        "fin_received",
        "fin_sent",
        "local",
        "remote_paused",
        "replied",
        "reply_timer",
        "tunnel",
        "wrote",
    )

    def __init__(
        self, tunnel: SpdyTunnel, local: LocalConnection, error_id: int, data_id: int
    ) -> None:
        self.tunnel = tunnel
        self.local = local
        self.error_id = error_id
        self.data_id = data_id
        self.fin_sent = False
        self.fin_received = False
        self.wrote = False  # bytes went to the pod before it said whether it could dial
        self.replied = False
        self.remote_paused = False
        self.error_text = b""
        self.reply_timer: asyncio.TimerHandle | None = None

    # -- Sink (called by the local connection) -----------------------------------------
    def send(self, data: bytes) -> None:
        if not self.fin_sent:
            self.wrote = True
            self.tunnel.send_spdy(spdy.data_frame_header(self.data_id, len(data)), data)

    def send_eof(self) -> None:
        if not self.fin_sent:
            self.fin_sent = True
            self.tunnel.send_spdy(spdy.data_frame_header(self.data_id, 0, fin=True))
            self._maybe_done()

    def local_closed(self) -> None:
        self._cancel_timer()
        if self.tunnel.is_open:
            # Reset what is not finished both ways, so the kubelet closes its end in the pod
            # now; the error stream too, which it may still hold open for us.
            frames = [spdy.encode_rst_stream(self.error_id)]
            if not (self.fin_sent and self.fin_received):
                frames.append(spdy.encode_rst_stream(self.data_id))
            self.tunnel.send_spdy(*frames)
        self.tunnel.forget(self)

    def pause_remote(self) -> None:
        if not self.remote_paused:
            self.remote_paused = True
            self.tunnel.pause_one()

    def resume_remote(self) -> None:
        if self.remote_paused:
            self.remote_paused = False
            self.tunnel.resume_one()

    # -- from the tunnel ---------------------------------------------------------------
    def on_reply(self) -> None:
        self.replied = True
        self._cancel_timer()

    def on_data(self, stream_id: int, data: bytes, fin: bool) -> None:
        if stream_id == self.data_id:
            if data:
                self.local.write(data)
            if fin and not self.fin_received:
                self.fin_received = True
                self.local.write_eof()
                self._maybe_done()
            return
        # The error stream: the kubelet says why it could not forward this connection.
        self.error_text += data
        if fin and self.error_text:
            message = self.error_text.decode("utf-8", "replace").strip()
            log.warning("port-forward to pod %s failed: %s", self.tunnel.target.pod, message)
            if self.wrote:
                # Before the abort: the tunnel must be draining when it forgets this stream,
                # so that, idle, it closes at once (see the module's docstring).
                log.debug(
                    "port-forward tunnel to pod %s jammed; replacing it", self.tunnel.target.pod
                )
                self.tunnel.jammed()
            self.local.abort()

    def on_reset(self, stream_id: int, status: int) -> None:
        if stream_id == self.data_id and not self.fin_received:
            log.debug(
                "pod %s reset a forwarded connection (status %d)", self.tunnel.target.pod, status
            )
            self.local.abort()

    def reply_overdue(self) -> None:
        if not self.replied and not self.local.finished:
            log.warning(
                "port-forward tunnel to pod %s did not answer a new connection in time; closing it",
                self.tunnel.target.pod,
            )
            self.local.abort()
            self.tunnel.abort()

    def tunnel_lost(self) -> None:
        self._cancel_timer()
        if not self.local.finished:
            self.local.abort()

    def _maybe_done(self) -> None:
        if self.fin_sent and self.fin_received:
            self.local.close()

    def _cancel_timer(self) -> None:
        if self.reply_timer is not None:
            self.reply_timer.cancel()
            self.reply_timer = None
