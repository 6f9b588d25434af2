"""Asyncio access to the apiserver for the port forwarder: JSON reads, watches, upgrades.

The synchronous client (kubefixtures.kube.client) spends a thread on every watch, so the
forwarder talks HTTP on its event loop: HTTP/1.1 on asyncio streams for JSON and watches
(what it needs of HTTP is small; a general client cost several times the CPU per request and
tens of milliseconds of import on the first forward), a raw TLS connection for the
WebSocket upgrades. Credentials, CA and TLS settings all come from the ClusterConfig the
caller loaded (kubefixtures.kube.config).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from kubefixtures.kube import _proxy
from kubefixtures.kube._headers import checked_headers
from kubefixtures.kube.config import ClusterConfig, as_cluster_config
from kubefixtures.kube.errors import (
    ApiServerUnreachableError,
    PortForwardError,
    PortForwardForbiddenError,
    PortForwardNotFound,
)

log = logging.getLogger("kubefixtures.portforward")

JSON = dict[str, Any]


@dataclass(frozen=True)
class ApiEndpoint:
    """Where the apiserver is and how to talk to it."""

    url: str  # scheme://host:port, no trailing slash
    host: str
    port: int
    base_path: str  # a path prefix some proxies put in front of the API
    ssl: ssl.SSLContext | None  # the context when loaded; see current_ssl()
    server_hostname: str | None
    config: ClusterConfig
    proxy: _proxy.Proxy | None = None

    @classmethod
    def from_configuration(cls, configuration: Any) -> ApiEndpoint:
        """From a ClusterConfig, or a ``kubernetes.client.Configuration``."""
        config = as_cluster_config(configuration)
        parts = urlsplit(config.server)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or "localhost"
        return cls(
            url=f"{parts.scheme}://{parts.netloc}",
            host=host,
            port=port,
            base_path=parts.path.rstrip("/"),
            ssl=config.ssl_context() if secure else None,
            server_hostname=(config.tls_server_name or host) if secure else None,
            config=config,
            proxy=config.proxy_for_server(),
        )

    @classmethod
    async def create(cls, configuration: Any) -> ApiEndpoint:
        """from_configuration(), off the event loop when a credential plugin must run first
        (its client certificate goes into the TLS context)."""
        config = as_cluster_config(configuration)
        if config.client_certificate is not None:
            return await asyncio.to_thread(cls.from_configuration, config)
        return cls.from_configuration(config)

    async def auth_headers(self) -> list[tuple[str, str]]:
        """Authorization and Impersonate-* headers, checked for control characters."""
        if self.config.authorization_may_block:  # an exec plugin: kept off the event loop
            return await asyncio.to_thread(self.config.request_headers)
        return self.config.request_headers()

    async def current_ssl(self) -> SSLContext | None:
        """The TLS context for a new connection: a credential plugin's client certificate
        may have been renewed since the endpoint was made."""
        if self.ssl is None or self.config.client_certificate is None:
            return self.ssl
        return await asyncio.to_thread(self.config.ssl_context)


def pod_portforward_path(
    endpoint: ApiEndpoint, namespace: str, pod: str, query: dict[str, str]
) -> str:
    path = (
        f"{endpoint.base_path}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/portforward"
    )
    return f"{path}?{urlencode(query)}" if query else path


def status_message(body: bytes, fallback: str) -> str:
    """The `message` of a Kubernetes Status body, else the body's first line, else `fallback`."""
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return text.splitlines()[0][:300] if text else fallback


class ApiClient:
    """JSON reads and watches on the forwarder's event loop: HTTP/1.1 on asyncio streams,
    one kept-alive connection for reads, a connection of its own for each watch."""

    def __init__(self, endpoint: ApiEndpoint, request_timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self._timeout = request_timeout
        self._idle: _Connection | None = None
        self._open: set[_Connection] = set()

    async def aclose(self) -> None:
        self._idle = None
        for connection in list(self._open):
            self._forget(connection)
        await asyncio.sleep(0)  # the aborted transports close their sockets on the next turn

    async def get(self, path: str, params: dict[str, str] | None = None, *, what: str) -> JSON:
        """GET a JSON object; `what` names it in errors ("Service ns/web")."""
        target = _target(self.endpoint, path, params)
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await self._get(target)
        except (OSError, EOFError, TimeoutError, _proxy.ProxyError, _HttpError) as error:
            raise ApiServerUnreachableError(
                f"cannot reach the Kubernetes API server at {self.endpoint.url}: "
                f"{_describe(error, self._timeout)}"
            ) from None
        _raise_for_status(status, body, what)
        try:
            result: JSON = json.loads(body)
        except ValueError:
            raise PortForwardError(f"reading {what}: the answer is not JSON") from None
        return result

    async def _get(self, target: str) -> tuple[int, bytes]:
        """One exchange, on the kept-alive connection if there is one. One the server closed
        meanwhile fails before anything comes back: then once more, on a new connection."""
        kept, self._idle = self._idle, None
        if kept is not None:
            try:
                return await self._exchange(kept, target)
            except (OSError, EOFError, _HttpError):
                if kept.answered:
                    raise
        return await self._exchange(await self._connect(), target)

    async def _exchange(self, connection: _Connection, target: str) -> tuple[int, bytes]:
        try:
            await connection.send(target, await self.endpoint.auth_headers())
            status, body = await connection.read_all()
        except BaseException:
            self._forget(connection)
            raise
        if connection.reusable and self._idle is None:
            self._idle = connection
        else:
            self._forget(connection)
        return status, body

    async def _connect(self) -> _Connection:
        connection = await _Connection.open(self.endpoint, await self.endpoint.current_ssl())
        self._open.add(connection)
        return connection

    def _forget(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def watch(self, path: str, params: dict[str, str], *, what: str) -> AsyncIterator[JSON]:
        """Yields watch events until the server ends the watch (then the caller re-lists)."""
        query = {**params, "watch": "1", "allowWatchBookmarks": "true"}
        target = _target(self.endpoint, path, query)
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
                await connection.send(target, await self.endpoint.auth_headers())
                status = await connection.read_head()
                if status != 200:
                    _raise_for_status(status, (await connection.read_all())[1], what)
            async for line in connection.lines():
                yield json.loads(line)
        except (OSError, EOFError, TimeoutError, _proxy.ProxyError, _HttpError) as error:
            raise ApiServerUnreachableError(
                f"watch of {what} at {self.endpoint.url} broke: {_describe(error, self._timeout)}"
            ) from None
        finally:
            if connection is not None:
                self._forget(connection)


def _target(endpoint: ApiEndpoint, path: str, params: dict[str, str] | None) -> str:
    target = endpoint.base_path + path
    return f"{target}?{urlencode(params)}" if params else target


def host_header(endpoint: ApiEndpoint) -> str:
    """The Host header's value: the server's host (an IPv6 literal bracketed), with its
    port unless that is the scheme's default."""
    default_port = 443 if endpoint.ssl is not None else 80
    host = _proxy.authority(endpoint.host, endpoint.port)
    return host.rsplit(":", 1)[0] if endpoint.port == default_port else host


class _HttpError(Exception):
    """The server's answer is not HTTP/1.1 as this client reads it."""


class _Connection:
    """One HTTP/1.1 connection to the apiserver: a request, then its answer read whole
    (``read_all``) or line by line as it arrives (``read_head``, then ``lines``)."""

    _LIMIT = 1 << 20  # the longest head or chunk-size line accepted

    def __init__(
        self, endpoint: ApiEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._endpoint = endpoint
        self._reader = reader
        self._writer = writer
        self._head: dict[str, str] = {}
        self._status = 0
        self.answered = False  # the server sent something back on this connection
        self.reusable = False

    @classmethod
    async def open(cls, endpoint: ApiEndpoint, context: SSLContext | None) -> _Connection:
        # tls-server-name: the certificate is checked against this name, the host dialled.
        hostname = endpoint.server_hostname if context is not None else None
        if endpoint.proxy is None:
            reader, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=context,
                server_hostname=hostname,
                limit=cls._LIMIT,
            )
            return cls(endpoint, reader, writer)
        sock = await _proxy.tunnel_async(endpoint.proxy, endpoint.host, endpoint.port)
        try:
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=hostname, limit=cls._LIMIT
            )
        except BaseException:
            sock.close()
            raise
        return cls(endpoint, reader, writer)

    async def send(self, target: str, credentials: list[tuple[str, str]]) -> None:
        """A GET of ``target`` (path and query); ``credentials`` are checked headers."""
        self._head, self._status = {}, 0
        headers = checked_headers(
            [
                ("Host", host_header(self._endpoint)),
                ("Accept", "application/json"),
                ("User-Agent", "kubefixtures-portforward"),
            ],
            self._endpoint.config.source,
        )
        lines = [f"GET {target} HTTP/1.1", *(f"{n}: {v}" for n, v in [*headers, *credentials])]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._writer.drain()

    async def read_head(self) -> int:
        """The answer's status; its headers are kept to read the body by."""
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            self.answered = bool(error.partial)
            raise EOFError("the server closed the connection") from None
        except asyncio.LimitOverrunError:
            self.answered = True
            raise _HttpError("an answer's head longer than 1 MiB") from None
        self.answered = True
        status_line, *fields = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise _HttpError(f"not an HTTP/1.1 answer ({status_line[:60]!r})")
        for line in fields:
            name, separator, value = line.partition(":")
            if separator:
                self._head[name.strip().lower()] = value.strip()
        self._status = int(code)
        self.reusable = (
            version == "HTTP/1.1" and "close" not in self._head.get("connection", "").lower()
        )
        return self._status

    async def read_all(self) -> tuple[int, bytes]:
        status = self._status or await self.read_head()
        return status, b"".join([chunk async for chunk in self._body()])

    async def lines(self) -> AsyncIterator[bytes]:
        """The body's non-empty lines as they arrive (a watch's events)."""
        buffer = b""
        async for chunk in self._body():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                if line.strip():
                    yield line
        if buffer.strip():
            yield buffer

    async def _body(self) -> AsyncIterator[bytes]:
        reader = self._reader
        if self._status in (204, 304) or self._status < 200:
            return
        try:
            if "chunked" in self._head.get("transfer-encoding", "").lower():
                while size := _chunk_size(await reader.readuntil(b"\r\n")):
                    yield (await reader.readexactly(size + 2))[:-2]
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return
            length = self._head.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise _HttpError("a malformed Content-Length")
                if int(length):
                    yield await reader.readexactly(int(length))
                return
            self.reusable = False  # the body ends where the connection does
            while chunk := await reader.read(65536):
                yield chunk
        except asyncio.IncompleteReadError:
            raise EOFError("the server closed the connection in mid-answer") from None
        except asyncio.LimitOverrunError:
            raise _HttpError("a chunk-size line longer than 1 MiB") from None

    def close(self) -> None:
        # No TLS close_notify to wait for: nothing more is read from a connection given up.
        self._writer.transport.abort()


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise _HttpError("a malformed chunk size") from None


def _describe(error: BaseException, timeout: float | None = None) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {timeout:g}s" if timeout else "timed out"
    cause: BaseException | None = error
    while cause is not None and cause.__cause__ is not None and not str(cause):
        cause = cause.__cause__
    text = str(cause or error) or type(error).__name__
    return text.splitlines()[0]


def _raise_for_status(status: int, body: bytes, what: str) -> None:
    if status < 300:
        return
    message = status_message(body, f"HTTP {status}")
    if status == 404:
        raise PortForwardNotFound(f"{what} not found")
    if status == 401:
        raise ApiServerUnreachableError(
            f"the Kubernetes API server rejected our credentials (401): {message}"
        )
    if status == 403:
        raise PortForwardForbiddenError(f"RBAC forbids reading {what}: {message}")
    raise PortForwardError(f"reading {what} failed with HTTP {status}: {message}")
