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
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

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
    ssl: ssl.SSLContext | None
    server_hostname: str | None
    config: ClusterConfig

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
        )

    async def auth_headers(self) -> dict[str, str]:
        if self.config.authorization_may_block:  # an exec plugin: kept off the event loop
            value = await asyncio.to_thread(self.config.authorization)
        else:
            value = self.config.authorization()
        return {"Authorization": value} if value else {}


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
        self._client = httpx.AsyncClient(
            base_url=endpoint.url,
            verify=endpoint.ssl if endpoint.ssl is not None else False,
            timeout=httpx.Timeout(request_timeout),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, str] | None = None, *, what: str) -> JSON:
        """GET a JSON object; `what` names it in errors ("Service ns/web")."""
        httpx = self._httpx
        headers = await self.endpoint.auth_headers()
        try:
            response = await self._client.get(
                self.endpoint.base_path + path, params=params, headers=headers
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
        try:
            async with self._client.stream(
                "GET",
                self.endpoint.base_path + path,
                params=query,
                headers=headers,
                timeout=timeout,
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
