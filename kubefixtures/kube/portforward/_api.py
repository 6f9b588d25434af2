"""Asyncio access to the apiserver for the port forwarder: JSON reads, watches, upgrades.

The synchronous client (kubefixtures.kube.client) spends a thread on every watch, so the
forwarder talks HTTP on its event loop: httpx for JSON and watches, a raw TLS connection
for the WebSocket upgrades. Credentials, CA and TLS
settings all come from the ClusterConfig the caller loaded (kubefixtures.kube.config).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

from kubefixtures.kube import _proxy
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
    """JSON reads and watches on the forwarder's event loop."""

    def __init__(self, endpoint: ApiEndpoint, request_timeout: float = 10.0) -> None:
        import httpx

        self.endpoint = endpoint
        self._httpx = httpx
        self._timeout = request_timeout
        self._ssl = endpoint.ssl
        self._client = self._new_client(endpoint.ssl)
        # tls-server-name: httpx checks the certificate against this name, dialling the host.
        self._extensions = (
            {"sni_hostname": endpoint.server_hostname}
            if endpoint.ssl is not None and endpoint.server_hostname
            else {}
        )

    def _new_client(self, context: ssl.SSLContext | None) -> Any:
        httpx = self._httpx
        return httpx.AsyncClient(
            base_url=self.endpoint.url,
            transport=_transport(context, self.endpoint.proxy),
            timeout=httpx.Timeout(self._timeout),
            trust_env=False,  # proxies are chosen by the ClusterConfig, as client-go does
        )

    async def _current_client(self) -> Any:
        context = await self.endpoint.current_ssl()
        if context is not self._ssl:  # a renewed client certificate: new connections
            old, self._client, self._ssl = self._client, self._new_client(context), context
            await old.aclose()
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, str] | None = None, *, what: str) -> JSON:
        """GET a JSON object; `what` names it in errors ("Service ns/web")."""
        httpx = self._httpx
        headers = await self.endpoint.auth_headers()
        client = await self._current_client()
        try:
            response = await client.get(
                self.endpoint.base_path + path,
                params=params,
                headers=headers,
                extensions=self._extensions,
            )
        except httpx.TransportError as error:
            raise ApiServerUnreachableError(
                f"cannot reach the Kubernetes API server at {self.endpoint.url}: {_describe(error)}"
            ) from None
        _raise_for_status(response.status_code, response.content, what)
        result: JSON = response.json()
        return result

    async def watch(self, path: str, params: dict[str, str], *, what: str) -> AsyncIterator[JSON]:
        """Yields watch events until the server ends the watch (then the caller re-lists)."""
        httpx = self._httpx
        headers = await self.endpoint.auth_headers()
        query = {**params, "watch": "1", "allowWatchBookmarks": "true"}
        timeout = httpx.Timeout(10.0, read=None)
        client = await self._current_client()
        try:
            async with client.stream(
                "GET",
                self.endpoint.base_path + path,
                params=query,
                headers=headers,
                timeout=timeout,
                extensions=self._extensions,
            ) as response:
                if response.status_code != 200:
                    _raise_for_status(response.status_code, await response.aread(), what)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as error:
            raise ApiServerUnreachableError(
                f"watch of {what} at {self.endpoint.url} broke: {_describe(error)}"
            ) from None


def _transport(context: ssl.SSLContext | None, proxy: _proxy.Proxy | None) -> Any:
    import httpx

    transport = httpx.AsyncHTTPTransport(verify=context or False, trust_env=False)
    if proxy is not None:
        import httpcore

        # httpx's own proxy support loses sni_hostname (tls-server-name) in its tunnel, and
        # takes no network backend as a parameter: its pool is rebuilt on one that opens each
        # connection through the proxy with CONNECT, so TLS and its checks stay as without.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            network_backend=cast(Any, _TunnelBackend(proxy)),  # duck-typed: httpcore stays lazy
        )
    return transport


class _TunnelBackend:
    """httpcore's network backend, each TCP connection a CONNECT tunnel through ``proxy``."""

    def __init__(self, proxy: _proxy.Proxy) -> None:
        import httpcore

        self._proxy = proxy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        import httpcore

        proxy = self._proxy
        try:
            stream = await self._inner.connect_tcp(
                proxy.host, proxy.port, timeout, local_address, socket_options
            )
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
            raise httpcore.ProxyError(
                str(_proxy.unreachable(proxy, OSError(_describe(error))))
            ) from None
        try:
            await stream.write(_proxy.connect_request(proxy, host, port), timeout)
            reply = _proxy.ConnectReply(proxy, host, port)
            while not reply.feed(await stream.read(4096, timeout)):
                pass
        except _proxy.ProxyError as error:
            await stream.aclose()
            raise httpcore.ProxyError(str(error)) from None
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None, **_: Any) -> Any:
        raise NotImplementedError("the apiserver is reached over TCP")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _describe(error: BaseException) -> str:
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
