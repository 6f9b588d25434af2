"""The `v4.channel.k8s.io` port-forward protocol: one WebSocket per forwarded connection.

Kept as the fallback for apiservers without the SPDY tunnel (before Kubernetes 1.30, or
with the PortForwardWebsockets gate off), and as the baseline of the benchmark.

Each message starts with a channel byte: 0 carries data, 1 carries the kubelet's error
text, both for the single port asked for. The first message the server sends on each
channel starts with the port number (2 bytes, little-endian), which is not data. The
protocol has no half-close: a local EOF cannot be passed on. After one, the connection
lingers while the pod is still sending (a client that half-closed may be awaiting the
answer) and closes once the pod has been quiet for `LINGER` seconds; otherwise every client
that closed would leave a WebSocket open until the pod's server timed it out.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from kubefixtures.kube.portforward import _wsframe as ws
from kubefixtures.kube.portforward._endpoints import Target
from kubefixtures.kube.portforward._local import LocalConnection
from kubefixtures.kube.portforward._wsconn import WebSocketProtocol

log = logging.getLogger("kubefixtures.portforward")

DATA_CHANNEL = 0
ERROR_CHANNEL = 1
_PORT = struct.Struct("<H")
_DATA_PREFIX = bytes((DATA_CHANNEL,))
LINGER = 2.0


class ChannelDecoder:
    """Splits v4 messages into (channel, bytes), stripping each channel's port header."""

    def __init__(self) -> None:
        self._assembler = ws.MessageAssembler()
        self._header_pending = {DATA_CHANNEL: True, ERROR_CHANNEL: True}
        self.port: int | None = None

    def feed(self, frame: ws.Frame) -> tuple[int, bytes] | None:
        message = self._assembler.add(frame)
        if message is None or not message[1]:
            return None
        payload = message[1]
        channel = payload[0]
        data = payload[1:]
        if self._header_pending.get(channel):
            if len(data) < 2:
                raise ws.WebSocketProtocolError(f"channel {channel} began without its port header")
            self._header_pending[channel] = False
            (self.port,) = _PORT.unpack_from(data, 0)
            data = data[2:]
        return channel, data


def encode_data(data: bytes | bytearray | memoryview) -> bytearray:
    return ws.encode_client_frame(ws.OP_BINARY, _DATA_PREFIX, data)


class V4Connection(WebSocketProtocol):
    SUBPROTOCOL = "v4.channel.k8s.io"

    def __init__(self, request: bytes, key: str, target: Target, local: LocalConnection) -> None:
        super().__init__(request, key, self.SUBPROTOCOL)
        self.target = target
        self.local = local
        self._decoder = ChannelDecoder()
        self._error_text = b""
        self._linger: asyncio.TimerHandle | None = None

    # v4 needs message boundaries (the channel byte), so it takes whole frames.
    def on_frame(self, frame: ws.Frame) -> None:
        decoded = self._decoder.feed(frame)
        if decoded is None:
            return
        channel, chunk = decoded
        if channel == DATA_CHANNEL:
            if chunk:
                self.local.write(chunk)
                if self._linger is not None:
                    self._start_linger()
        elif channel == ERROR_CHANNEL:
            self._error_text += chunk
            if self._error_text:
                message = self._error_text.decode("utf-8", "replace").strip()
                log.warning("port-forward to pod %s failed: %s", self.target.pod, message)
                self.local.abort()
                self.abort()

    def on_protocol_error(self, error: ws.WebSocketProtocolError) -> None:
        self.local.abort()
        self.fail(f"pod {self.target.pod}: {error}", error.close_code)

    def on_closed(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        # The pod side ended: flush what was received, then close the local connection.
        if not self.local.finished:
            self.local.write_eof()
            self.local.close()

    # -- Sink ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(encode_data(data))

    def send_eof(self) -> None:
        """v4 cannot carry a half-close: linger, then close (see the module docstring)."""
        self._start_linger()

    def _start_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._linger = asyncio.get_running_loop().call_later(LINGER, self._linger_over)

    def _linger_over(self) -> None:
        self.close()
        self.local.close()

    def local_closed(self) -> None:
        self.close()

    def pause_remote(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_remote(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.local.pause_upstream()

    def resume_writing(self) -> None:
        self.local.resume_upstream()
