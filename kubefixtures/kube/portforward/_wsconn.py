"""The client side of one WebSocket connection to the apiserver, as an asyncio protocol.

A Protocol rather than streams: bytes go from the socket to the frame parser to the local
connection without a task switch per chunk, which is most of what throughput costs here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubefixtures.kube._headers import checked_headers
from kubefixtures.kube._proxy import ProxyError, tunnel_async
from kubefixtures.kube.errors import (
    ApiServerUnreachableError,
    PortForwardForbiddenError,
    PortForwardNotFound,
    TunnelError,
)
from kubefixtures.kube.portforward import _wsframe as ws
from kubefixtures.kube.portforward._api import ApiEndpoint, host_header, status_message

log = logging.getLogger("kubefixtures.portforward")

_MAX_RESPONSE_HEAD = 64 * 1024
# asyncio's default high-water mark (64 KiB) pauses producers after a single 256 KiB read;
# a larger one lets one local read and one tunnel write overlap.
WRITE_HIGH_WATER = 1024 * 1024
# How long a failed connection waits for the peer to read its close frame and hang up
# before it resets the TCP connection (see WebSocketProtocol.fail).
FAIL_CLOSE_TIMEOUT = 2.0


class WebSocketProtocol(asyncio.Protocol):
    """Opening handshake, frame parsing, ping/pong and close; subclasses handle data."""

    SUBPROTOCOL = ""  # what subclasses ask for in Sec-WebSocket-Protocol

    def __init__(self, request: bytes, key: str, subprotocol: str) -> None:
        self._request = request
        self._key = key
        self._subprotocol = subprotocol
        self.subprotocol = ""  # the one the server chose, once open
        self._head = bytearray()
        self._status = 0
        self._body_wanted = -1
        self._parser = ws.FrameParser()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.is_open = False
        self._closing = False
        self._notified_closed = False
        self._fail_deadline: asyncio.TimerHandle | None = None

    # -- for subclasses ---------------------------------------------------------------
    def on_data(self, payload: bytes) -> None:
        """A binary (or continuation) frame's payload, in order."""

    def on_frame(self, frame: ws.Frame) -> None:
        """Every data frame (binary, text, continuation) as it arrived; by default its
        payload goes to `on_data`. Protocols that need message boundaries (v4's channels,
        exec's streams) take the frames themselves. May raise `WebSocketProtocolError`."""
        self.on_data(frame.payload)

    def on_protocol_error(self, error: ws.WebSocketProtocolError) -> None:
        """The server broke RFC 6455 (or the subprotocol): fail the connection."""
        self.fail(str(error), error.close_code)

    def on_closed(self) -> None:
        """The connection is gone (either side closed it, or it broke)."""

    def send_binary(self, *parts: bytes | bytearray | memoryview) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(ws.encode_client_frame(ws.OP_BINARY, *parts))

    def close(self) -> None:
        """Closes politely: a close frame, then the TCP connection."""
        if self.transport is None or self._closing:
            return
        self._closing = True
        if self.is_open:
            self.transport.write(ws.encode_close())
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self._closing = True
            self.transport.abort()

    def fail(self, reason: str, close_code: int = ws.CLOSE_PROTOCOL_ERROR) -> None:
        """Fails the connection (RFC 6455 section 7.1.7) after the peer broke a protocol:
        logs one line, sends a close frame with `close_code` and drops the connection at
        once for its users, never waiting on a peer that no longer makes sense."""
        log.warning("port-forward tunnel: %s; closing it (WebSocket close %d)", reason, close_code)
        transport = self.transport
        if transport is None or self._closing:
            return
        self._closing = True
        if not self.is_open:
            transport.abort()
            return
        transport.write(ws.encode_close(close_code))
        # Closing the socket now would lose the close frame: the peer goes on sending (here
        # the rest of what broke the protocol, replies already on their way), a socket
        # closed with unread bytes, or receiving more, answers with a TCP reset, and a reset
        # makes the peer's kernel drop what it had not read yet - our close frame with it.
        # So the socket stays open, reading and discarding (data_received), until the peer
        # hangs up after reading the frame, or FAIL_CLOSE_TIMEOUT passes: then a reset.
        # The users are told now (on_closed): for them the connection is gone.
        transport.resume_reading()
        self._fail_deadline = asyncio.get_running_loop().call_later(
            FAIL_CLOSE_TIMEOUT, transport.abort
        )
        self._notify_closed()

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self._closing:  # a failed connection waiting for the peer to hang up (fail)
            return
        if self.is_open:
            self._frames(data)
        else:
            self._handshake(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        self._closing = True
        if self._fail_deadline is not None:
            self._fail_deadline.cancel()
        if not self.opened.done():
            if self._status:
                self._fail_open(bytes(self._head))
            else:
                reason = f": {exc}" if exc else ""
                self._set_open_error(
                    TunnelError(
                        f"the apiserver closed the connection before answering the upgrade{reason}"
                    )
                )
        if not self.closed.done():
            self.closed.set_result(None)
        self._notify_closed()

    # -- internals -----------------------------------------------------------------------
    def _notify_closed(self) -> None:
        if not self._notified_closed:
            self._notified_closed = True
            self.on_closed()

    def _handshake(self, data: bytes) -> None:
        self._head += data
        if self._status:  # an error response: collecting its body
            if 0 <= self._body_wanted <= len(self._head):
                self._fail_open(bytes(self._head[: self._body_wanted]))
            return
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_RESPONSE_HEAD:
                self._fail_open(b"response head too large")
            return
        head = bytes(self._head[:end]).decode("latin-1")
        rest = bytes(self._head[end + 4 :])
        lines = head.split("\r\n")
        try:
            self._status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._status = 1
            self._fail_open(b"malformed response status line")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if self._status != 101:
            self._head = bytearray(rest)
            self._body_wanted = int(headers.get("content-length", "-1") or -1)
            if 0 <= self._body_wanted <= len(self._head):
                self._fail_open(bytes(self._head[: self._body_wanted]))
            return
        if headers.get("sec-websocket-accept") != ws.accept_for(self._key):
            self._fail_open(b"the apiserver answered the upgrade with a wrong Sec-WebSocket-Accept")
            return
        # SUBPROTOCOL may offer several, best first ("v5.channel.k8s.io, v4.channel.k8s.io"):
        # the server picks one of them.
        offered = [name.strip() for name in self._subprotocol.split(",")]
        chosen = headers.get("sec-websocket-protocol", "")
        if chosen not in offered:
            self._status = 1
            self._fail_open(
                f"the apiserver does not speak {self._subprotocol} "
                f"(it chose {chosen or 'none'})".encode()
            )
            return
        self.subprotocol = chosen
        self._head = bytearray()
        self.is_open = True
        self.opened.set_result(None)
        if rest:
            self._frames(rest)

    def _set_open_error(self, error: TunnelError) -> None:
        self.opened.set_exception(error)
        # Whoever opened us may have given up (cancelled, timed out) and will never look:
        # mark the error as seen so asyncio does not log "exception was never retrieved".
        self.opened.exception()

    def _fail_open(self, body: bytes) -> None:
        if not self.opened.done():
            message = status_message(body, f"HTTP {self._status}")
            self._set_open_error(TunnelError(message, self._status))
        self.abort()

    def _frames(self, data: bytes) -> None:
        """Control frames are answered here (RFC 6455 5.5: a ping with its pong, a close
        with ours); data frames go to `on_frame`."""
        try:
            for frame in self._parser.feed(data):
                opcode = frame.opcode
                if opcode == ws.OP_PING:
                    if self.transport is not None and not self._closing:
                        self.transport.write(ws.encode_client_frame(ws.OP_PONG, frame.payload))
                elif opcode == ws.OP_CLOSE:
                    self.close()
                elif opcode != ws.OP_PONG:
                    self.on_frame(frame)
                if self._closing:
                    return
        except ws.WebSocketProtocolError as error:
            self.on_protocol_error(error)


async def upgrade_request(
    endpoint: ApiEndpoint,
    path: str,
    subprotocol: str,
    key: str,
    user_agent: str = "kubefixtures-portforward",
) -> bytes:
    """The HTTP/1.1 request that opens a WebSocket on `path` (credentials included); every
    header value is checked for control characters, an IPv6 host is bracketed."""
    headers = checked_headers(
        [
            ("Host", host_header(endpoint)),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", subprotocol),
            ("User-Agent", user_agent),
        ],
        endpoint.config.source,
    )
    headers += await endpoint.auth_headers()  # checked there too
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def connect(endpoint: ApiEndpoint, factory: Callable[[], asyncio.Protocol]) -> None:
    """A connection to the apiserver for ``factory``'s protocol: through the kubeconfig's
    proxy when it has one, with TLS and the current client certificate. Raises OSError,
    ProxyError (a ClusterError) or the TLS error."""
    loop = asyncio.get_running_loop()
    context = await endpoint.current_ssl()
    if endpoint.proxy is not None:
        sock = await tunnel_async(endpoint.proxy, endpoint.host, endpoint.port)
        await loop.create_connection(
            factory, sock=sock, ssl=context, server_hostname=endpoint.server_hostname
        )
    else:
        await loop.create_connection(
            factory,
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=endpoint.server_hostname,
        )


async def open_websocket(
    endpoint: ApiEndpoint,
    path: str,
    protocol_type: type[WebSocketProtocol],
    *args: Any,
    timeout: float = 10.0,
    what: str,
) -> Any:
    """Connects, upgrades and returns the open `protocol_type(request, key, *args)`.

    `what` names the target in errors ("pod ns/web-1").
    """
    key = ws.new_key()
    request = await upgrade_request(endpoint, path, protocol_type.SUBPROTOCOL, key)
    protocol: WebSocketProtocol | None = None

    def factory() -> WebSocketProtocol:
        nonlocal protocol
        protocol = protocol_type(request, key, *args)
        return protocol

    try:
        async with asyncio.timeout(timeout):
            await connect(endpoint, factory)
            assert protocol is not None
            await protocol.opened
    except TimeoutError:
        if protocol is not None:
            protocol.abort()
        raise TunnelError(f"port-forward upgrade to {what} timed out after {timeout:g}s") from None
    except asyncio.CancelledError:
        if protocol is not None:
            protocol.abort()
        raise
    except TunnelError as error:
        raise _upgrade_error(error, what, endpoint) from None
    except ProxyError as error:
        if protocol is not None:
            protocol.abort()
        raise ApiServerUnreachableError(
            f"cannot reach the Kubernetes API server at {endpoint.url}: {error}"
        ) from None
    except OSError as error:
        if protocol is not None:
            protocol.abort()
        raise ApiServerUnreachableError(
            f"cannot reach the Kubernetes API server at {endpoint.url}: {error.strerror or error}"
        ) from None
    return protocol


def _upgrade_error(error: TunnelError, what: str, endpoint: ApiEndpoint) -> Exception:
    if error.status == 403:
        return PortForwardForbiddenError(f"RBAC forbids port-forwarding to {what}: {error}")
    if error.status == 401:
        return ApiServerUnreachableError(
            f"the Kubernetes API server at {endpoint.url} rejected our credentials (401): {error}"
        )
    if error.status == 404:
        return PortForwardNotFound(f"{what} not found: {error}")
    return TunnelError(f"port-forward upgrade to {what} failed: {error}", error.status)
