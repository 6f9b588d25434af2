"""HTTP/1.1 to one API server, on the standard library: a small pool of keep-alive
connections; a watch keeps the connection it took.

http.client is already loaded by the time most suites start and costs nothing to set up;
what the API needs of HTTP (JSON bodies, chunked watch streams, one TLS context) is small.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubefixtures.clock import ServerClock
from kubefixtures.errors import ClusterError
from kubefixtures.kube import _proxy
from kubefixtures.kube._headers import checked_headers
from kubefixtures.kube.config import ClusterConfig

__all__ = ["Connections", "Response", "Stream"]

Timeout = tuple[float, float]  # (connect, read) seconds
# A kept-alive connection the server has closed meanwhile fails like this on its next
# request, before the server saw it: safe to retry on a new connection. (Not a timeout:
# the server may be working on that request.)
_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    data: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299


class _Connection(http.client.HTTPConnection):
    """HTTP, or HTTPS whose certificate is checked against ``server_hostname``
    (tls-server-name) rather than the host dialled; through a CONNECT proxy if given."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None,
        server_hostname: str,
        proxy: _proxy.Proxy | None,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context = context
        self._server_hostname = server_hostname
        self._proxy = proxy

    def connect(self) -> None:
        if self._proxy is None:
            super().connect()
        else:
            self.sock = _proxy.tunnel(self._proxy, self.host, self.port, self.timeout)
        if self._context is not None:
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


class Stream:
    """A response being read as it arrives (a watch); ``close()`` may come from any thread.

    Closing a connection under a read in progress would pull the buffer from under that
    read, so ``close()`` during a read only shuts the socket down (which ends the read), and
    the reading thread releases the connection as soon as its read returns. Otherwise
    ``close()`` releases it at once: the connection never waits for a generator to be
    finalized.
    """

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._connection = connection
        self._response = response
        self.status = response.status
        self.reason = response.reason
        self._closed = False
        self._in_read = False
        self._lock = threading.Lock()

    def read_all(self) -> bytes:
        try:
            return self._response.read()
        finally:
            self.close()

    def lines(self) -> Iterator[bytes]:
        """The body's non-empty lines, until the server ends it or ``close()`` is called.
        A connection that breaks otherwise raises ClusterError."""
        buffer = b""
        try:
            while True:
                chunk = self._read()
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield line
        finally:
            self.close()

    def _read(self) -> bytes:
        """The next bytes; b"" at the end of the body or once closed."""
        with self._lock:
            if self._closed:
                return b""
            self._in_read = True
        try:
            return self._response.read1(65536)
        except (OSError, http.client.HTTPException) as error:
            if self.closed:  # close() ended the read
                return b""
            raise ClusterError(f"the stream broke: {_describe(error)}") from None
        finally:
            with self._lock:
                self._in_read = False
                closed_meanwhile = self.closed
            if closed_meanwhile:
                self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            in_read = self._in_read
        if not in_read:
            self._release()
            return
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


class Connections:
    """Connections to ``config.server``; thread-safe."""

    def __init__(
        self, config: ClusterConfig, keep: int = 16, server_clock: ServerClock | None = None
    ) -> None:
        parts = urlsplit(config.server)
        # Every answer's Date header keeps the estimate of the server's time up to date.
        self.server_clock = server_clock or ServerClock()
        self._config = config
        self._secure = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._secure else 80)
        self.base_path = parts.path.rstrip("/")
        self._proxy = config.proxy_for_server()
        self._keep = keep
        self._idle: list[http.client.HTTPConnection] = []
        self._closed = False
        self._lock = threading.Lock()

    def _new(self, connect_timeout: float) -> http.client.HTTPConnection:
        return _Connection(
            self._host,
            self._port,
            context=self._config.ssl_context() if self._secure else None,
            server_hostname=self._config.tls_server_name or self._host,
            proxy=self._proxy,
            timeout=connect_timeout,
        )

    def _take(self) -> http.client.HTTPConnection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append(connection)
                return
        connection.close()

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: list[tuple[str, str]],
        timeout: Timeout,
    ) -> http.client.HTTPResponse:
        if connection.sock is None:
            connection.timeout = timeout[0]
            connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(timeout[1])
        # putheader rather than request(headers=dict): a header may repeat (Impersonate-Group).
        names = {name.lower() for name, _ in headers}
        connection.putrequest(
            method,
            self.base_path + target,
            skip_host="host" in names,
            skip_accept_encoding="accept-encoding" in names,
        )
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body)
        return connection.getresponse()

    def _timed_send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: list[tuple[str, str]],
        timeout: Timeout,
    ) -> http.client.HTTPResponse:
        clock = self.server_clock.local
        sent = clock.wall()
        response = self._send(
            connection, method, target, body=body, headers=headers, timeout=timeout
        )
        self.server_clock.observe(response.getheader("Date"), sent, clock.wall())
        return response

    def _open(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: Timeout,
        reuse: bool,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        pairs = checked_headers(headers.items(), self._config.source)
        pairs += self._config.request_headers()
        kept = self._take() if reuse else None
        if kept is not None:
            try:
                response = self._timed_send(
                    kept, method, target, body=body, headers=pairs, timeout=timeout
                )
                return kept, response
            except _STALE:
                kept.close()
            except BaseException:
                kept.close()
                raise
        connection = self._new(timeout[0])
        try:
            return connection, self._timed_send(
                connection, method, target, body=body, headers=pairs, timeout=timeout
            )
        except BaseException:
            connection.close()
            raise

    def warm(self, count: int, connect_timeout: float) -> None:
        """Open up to ``count`` connections in the background, so that the first burst of
        requests (an environment's objects, applied at once) pays no TLS handshakes."""

        def open_one() -> None:
            connection = self._new(connect_timeout)
            try:
                connection.connect()
            except (OSError, http.client.HTTPException, ClusterError):
                connection.close()  # the request that needs it will say what is wrong
                return
            self._give_back(connection)

        with self._lock:
            count = min(count, self._keep - len(self._idle))
        for index in range(count):
            threading.Thread(target=open_one, name=f"kubefixtures-connect-{index}").start()

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout,
    ) -> Response:
        """One request and its whole answer. Connection problems raise ClusterError."""
        try:
            connection, response = self._open(
                method, target, body=body, headers=headers, timeout=timeout, reuse=True
            )
            try:
                data = response.read()
            except BaseException:
                connection.close()
                raise
        except (OSError, http.client.HTTPException) as error:
            raise ClusterError(_describe(error)) from None
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return Response(response.status, response.reason, data)

    def stream(self, target: str, *, headers: Mapping[str, str], timeout: Timeout) -> Stream:
        """A GET read as it arrives; its connection is not shared again."""
        try:
            connection, response = self._open(
                "GET", target, body=None, headers=headers, timeout=timeout, reuse=True
            )
        except (OSError, http.client.HTTPException) as error:
            raise ClusterError(_describe(error)) from None
        return Stream(connection, response)

    def close(self) -> None:
        """Close the idle connections; those in use are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, socket.timeout | TimeoutError):
        return f"timed out ({text})"
    return text
