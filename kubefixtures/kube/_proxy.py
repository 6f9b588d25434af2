"""HTTP CONNECT proxies between us and the apiserver, chosen as client-go chooses them.

A cluster's ``proxy-url`` in the kubeconfig wins and is used for every request (NO_PROXY
does not apply to it, as in client-go). Otherwise HTTPS_PROXY / https_proxy (HTTP_PROXY /
http_proxy for an ``http://`` server) and NO_PROXY / no_proxy are read as Go's
``golang.org/x/net/http/httpproxy`` reads them, localhost and loopback addresses never
going through an environment proxy.

Every transport (the synchronous client, the asyncio JSON client, WebSocket upgrades)
tunnels with CONNECT, so TLS to the apiserver is end to end and ``tls-server-name`` applies
through the proxy as it does without one. Only ``http://`` proxies are spoken to.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from kubefixtures.errors import ClusterError

__all__ = [
    "ConnectReply",
    "Proxy",
    "ProxyError",
    "authority",
    "connect_request",
    "environment_proxy",
    "no_proxy_matches",
    "parse_proxy",
    "tunnel",
    "tunnel_async",
    "unreachable",
]

_MAX_REPLY_HEAD = 64 * 1024


class ProxyError(ClusterError):
    """The proxy could not be reached or refused the tunnel."""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy that tunnels with CONNECT."""

    host: str
    port: int
    source: str  # where it was configured: "kubeconfig F: proxy-url" or "HTTPS_PROXY"
    # "Basic ..." from the URL's userinfo; never in messages.
    authorization: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (brackets around an IPv6 literal), for messages."""
        return authority(self.host, self.port)


def authority(host: str, port: int) -> str:
    """``host:port`` as it goes in a Host header or a CONNECT line."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_proxy(value: str, source: str) -> Proxy:
    """A proxy URL as Go reads one (``host:port`` means ``http://host:port``); a scheme
    other than http, or no host, is a ClusterError naming ``source``."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ClusterError(f"{source}: not a valid proxy URL") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ClusterError(
            f"{source}: {scheme}:// proxies are not supported (only http:// proxies, "
            "which tunnel with CONNECT)"
        )
    if not parts.hostname:
        raise ClusterError(f"{source}: the proxy URL has no host")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port or 80, source, authorization)


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        if env.get(name):
            return name, env[name]
    return names[0], ""


def environment_proxy(
    scheme: str, host: str, port: int, env: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy the environment names for ``scheme://host:port``, or None."""
    env = os.environ if env is None else env
    if scheme == "https":
        name, value = _first(env, "HTTPS_PROXY", "https_proxy")
    else:
        name, value = _first(env, "HTTP_PROXY", "http_proxy")
        if env.get("REQUEST_METHOD"):  # a CGI request may have set HTTP_PROXY (httpoxy)
            value = ""
    if not value:
        return None
    if no_proxy_matches(_first(env, "NO_PROXY", "no_proxy")[1], host, port):
        return None
    return parse_proxy(value, name)


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def no_proxy_matches(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``host:port`` goes direct: localhost and loopback always do; otherwise a
    NO_PROXY entry matches, as in Go: ``*``; an IP or CIDR; ``name`` (itself and its
    subdomains), ``.name`` or ``*.name`` (subdomains only); each optionally ``:port``."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    try:
        ip: _IP | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host == "localhost" or (ip is not None and ip.is_loopback):
        return True
    entries = (raw.strip().lower() for raw in no_proxy.split(","))
    return any(_entry_matches(entry, host, ip, port) for entry in entries if entry)


def _entry_matches(entry: str, host: str, ip: _IP | None, port: int) -> bool:
    if entry == "*":
        return True
    if "/" in entry:
        try:
            return ip is not None and ip in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry_host, entry_port = _split_host_port(entry)
    if not entry_host or (entry_port and entry_port != str(port)):
        return False
    try:
        entry_ip = ipaddress.ip_address(entry_host)
    except ValueError:
        entry_ip = None
    if entry_ip is not None:
        return entry_ip == ip
    # "*.name" and ".name": subdomains only; "name": itself and its subdomains.
    suffix = entry_host[1:] if entry_host.startswith("*.") else entry_host
    return host.endswith(suffix if suffix.startswith(".") else "." + suffix) or host == suffix


def _split_host_port(entry: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port``, or a bare host (an IPv6 literal without brackets is a
    bare host), as Go's net.SplitHostPort would have it."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return entry, ""
        rest = entry[close + 1 :]
        return entry[1:close], rest[1:] if rest.startswith(":") else ""
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, port
    return entry, ""


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    target = authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ConnectReply:
    """The proxy's answer to CONNECT, fed as it arrives; raises ProxyError unless 2xx."""

    def __init__(self, proxy: Proxy, host: str, port: int) -> None:
        self._proxy = proxy
        self._target = authority(host, port)
        self._buffer = b""

    def _error(self, what: str) -> ProxyError:
        return ProxyError(f"proxy {self._proxy.address} ({self._proxy.source}) {what}")

    def feed(self, chunk: bytes) -> bool:
        """Whether the tunnel is open (False: more to read)."""
        if not chunk:
            raise self._error("closed the connection during CONNECT")
        self._buffer += chunk
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_REPLY_HEAD:
                raise self._error("sent a reply head too large")
            return False
        status_line = self._buffer[:end].split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise self._error("did not answer CONNECT in HTTP")
        if not 200 <= int(parts[1]) <= 299:
            said = " ".join(" ".join(parts[1:]).split())[:200]
            raise self._error(f"refused CONNECT {self._target}: {said}")
        if self._buffer[end + 4 :]:
            raise self._error("sent data before the tunnel opened")
        return True


def unreachable(proxy: Proxy, error: OSError) -> ProxyError:
    reason = error.strerror or str(error) or type(error).__name__
    return ProxyError(f"cannot reach proxy {proxy.address} ({proxy.source}): {reason}")


def tunnel(proxy: Proxy, host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected socket to ``host:port`` through ``proxy`` (blocking, ``timeout`` set)."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as error:
        raise unreachable(proxy, error) from None
    try:
        sock.sendall(connect_request(proxy, host, port))
        reply = ConnectReply(proxy, host, port)
        while not reply.feed(sock.recv(4096)):
            pass
    except OSError as error:
        sock.close()
        raise unreachable(proxy, error) from None
    except BaseException:
        sock.close()
        raise
    return sock


async def tunnel_async(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to ``host:port`` through ``proxy``, for
    ``loop.create_connection(sock=...)``. The caller bounds the time it takes."""
    import asyncio  # lazy: the synchronous client never needs it

    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise unreachable(proxy, error) from None
    last: OSError = OSError("no address")
    for family, kind, protocol, _, address in infos:
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as error:
            sock.close()
            last = error
            continue
        except BaseException:
            sock.close()
            raise
        try:
            await loop.sock_sendall(sock, connect_request(proxy, host, port))
            reply = ConnectReply(proxy, host, port)
            while not reply.feed(await loop.sock_recv(sock, 4096)):
                pass
        except OSError as error:
            sock.close()
            raise unreachable(proxy, error) from None
        except BaseException:
            sock.close()
            raise
        return sock
    raise unreachable(proxy, last)
