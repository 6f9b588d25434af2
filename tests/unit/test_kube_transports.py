"""Every way kubefixtures reaches an apiserver (the synchronous client, the port
forwarder's own HTTP reads and watches, its WebSocket/SPDY upgrades) against a local TLS fake
apiserver: tls-server-name, CONNECT proxies, client certificates from a credential plugin,
impersonation headers, and header values that would inject lines."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefixtures.errors import ClusterError, ControlError
from kubefixtures.kube._exec import PodExec
from kubefixtures.kube._http import Connections
from kubefixtures.kube._proxy import parse_proxy
from kubefixtures.kube.config import ClusterConfig, load_config
from kubefixtures.kube.portforward import ApiServerUnreachableError, ServicePortForward
from kubefixtures.kube.portforward._api import ApiEndpoint
from kubefixtures.kube.portforward._tunnel import SpdyTunnel
from kubefixtures.kube.portforward._wsconn import open_websocket
from tests.unit.test_portforward_fakeapi import NS, FakeApiServer, echo
from tests.unit.transport_support import SERVER_NAME, ConnectProxy, Pki, make_pki

TIMEOUT = (5.0, 5.0)
SERVICE = f"/api/v1/namespaces/{NS}/services/web"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki, *, client_ca: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if client_ca:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def api(pki: Pki) -> Iterator[FakeApiServer]:
    with FakeApiServer(tls=server_tls(pki)) as server:
        yield server


@pytest.fixture
def proxy(api: FakeApiServer) -> Iterator[ConnectProxy]:
    served = ConnectProxy(upstream=("127.0.0.1", api.port), credentials=("alice", "p@ss"))
    yield served
    served.close()


def config(pki: Pki, server: str, **fields: Any) -> ClusterConfig:
    fields.setdefault("authorization", lambda: "Bearer s3cret")
    return ClusterConfig(
        server=server, context="t", source="test", ca_pem=pki.ca.read_text(), **fields
    )


def every_transport(cluster: ClusterConfig) -> None:
    """A GET on the synchronous client, then a forward: its GETs and a watch, a WebSocket
    upgrade speaking SPDY, and bytes through it; then an exec's upgrade (the fake has no
    exec: its 404 shows the upgrade reached it)."""
    connections = Connections(cluster)
    try:
        response = connections.request("GET", SERVICE, headers={}, timeout=TIMEOUT)
    finally:
        connections.close()
    assert response.status == 200
    with ServicePortForward(cluster, NS, "web", "echo", transport="spdy") as forward:
        assert echo(forward.local_port, b"hello through everything") == b"hello through everything"
    runner = PodExec(cluster)
    try:
        with pytest.raises(ControlError, match=r"^exec in pod/web-a: not found"):
            runner.run(
                NS, "web-a", ["true"], container=None, stdin=None, timeout=5, what="pod/web-a"
            )
    finally:
        runner.close()


def upgrades(api: FakeApiServer) -> list[str]:
    return [head for head in api.heads if "/portforward" in head.split("\r\n", 1)[0]]


def test_tls_server_name_is_what_every_transport_checks_the_certificate_against(
    pki: Pki, api: FakeApiServer
) -> None:
    # The certificate names SERVER_NAME, not 127.0.0.1: without tls-server-name, TLS fails.
    with pytest.raises(ClusterError, match="CERTIFICATE_VERIFY_FAILED"):
        Connections(config(pki, f"https://127.0.0.1:{api.port}")).request(
            "GET", SERVICE, headers={}, timeout=TIMEOUT
        )
    every_transport(config(pki, f"https://127.0.0.1:{api.port}", tls_server_name=SERVER_NAME))
    assert upgrades(api)


def test_a_proxy_url_carries_every_transport_with_its_credentials(
    pki: Pki, api: FakeApiServer, proxy: ConnectProxy
) -> None:
    # Nobody resolves this name but the proxy (which sends every tunnel to the fake).
    server = f"https://{SERVER_NAME}:6443"
    host = proxy.url.removeprefix("http://")
    every_transport(config(pki, server, proxy=parse_proxy(f"http://alice:p%40ss@{host}", "t")))
    assert set(proxy.targets) == {f"{SERVER_NAME}:6443"}
    # The sync client's connection, the forwarder's (reads, the watch) and the upgrade's.
    assert len(proxy.targets) >= 3
    expected = "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert set(proxy.authorizations) == {expected}
    assert all(f"Host: {SERVER_NAME}:6443" in head for head in api.heads)


def test_https_proxy_from_the_environment_is_used_unless_no_proxy_matches(
    pki: Pki,
    api: FakeApiServer,
    proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = proxy.url.removeprefix("http://")
    monkeypatch.setenv("HTTPS_PROXY", f"alice:p%40ss@{host}")  # Go reads a bare host:port
    monkeypatch.setenv("NO_PROXY", "example.com,10.0.0.0/8")
    every_transport(config(pki, f"https://{SERVER_NAME}:6443"))
    assert set(proxy.targets) == {f"{SERVER_NAME}:6443"}

    # NO_PROXY matches: the name is dialled directly (and does not resolve).
    monkeypatch.setenv("NO_PROXY", ".test")
    proxy.targets.clear()
    with pytest.raises(ClusterError):
        Connections(config(pki, f"https://{SERVER_NAME}:6443")).request(
            "GET", SERVICE, headers={}, timeout=TIMEOUT
        )
    assert proxy.targets == []


def test_a_proxy_that_refuses_the_tunnel_is_one_line_naming_it(
    pki: Pki, api: FakeApiServer, proxy: ConnectProxy
) -> None:
    cluster = config(pki, f"https://{SERVER_NAME}:6443", proxy=parse_proxy(proxy.url, "P"))
    with pytest.raises(ClusterError, match=r"^proxy 127\.0\.0\.1:\d+ \(P\) refused CONNECT .*407"):
        Connections(cluster).request("GET", SERVICE, headers={}, timeout=TIMEOUT)
    with (
        pytest.raises(ApiServerUnreachableError, match=r"proxy .* refused CONNECT .*407"),
        ServicePortForward(cluster, NS, "web", "echo"),
    ):
        pass


def test_an_ipv6_host_is_bracketed_in_host_and_connect(
    pki: Pki, api: FakeApiServer, proxy: ConnectProxy
) -> None:
    host = proxy.url.removeprefix("http://")
    cluster = config(
        pki,
        "https://[fd00::5]:6443",
        tls_server_name=SERVER_NAME,
        proxy=parse_proxy(f"http://alice:p%40ss@{host}", "t"),
    )
    every_transport(cluster)
    assert set(proxy.targets) == {"[fd00::5]:6443"}
    assert upgrades(api)
    assert all("Host: [fd00::5]:6443\r\n" in head for head in api.heads)


@pytest.mark.parametrize(
    "token",
    ["tok-3f9a\r\nX-Injected: yes", "tok-3f9a\ufffd\u20ac"],
    ids=["line-break", "beyond-latin-1"],
)
def test_a_header_value_with_a_line_break_is_refused_on_every_transport(
    pki: Pki, api: FakeApiServer, token: str
) -> None:
    cluster = config(
        pki,
        f"https://127.0.0.1:{api.port}",
        tls_server_name=SERVER_NAME,
        authorization=lambda: f"Bearer {token}",
    )
    with pytest.raises(ClusterError, match="refused to send the Authorization header") as raised:
        Connections(cluster).request("GET", SERVICE, headers={}, timeout=TIMEOUT)
    assert "tok-3f9a" not in str(raised.value)

    async def upgrade() -> None:
        endpoint = ApiEndpoint.from_configuration(cluster)
        await open_websocket(endpoint, "/x/portforward", SpdyTunnel, None, None, what="pod")

    with pytest.raises(ClusterError, match="refused to send the Authorization header") as raised:
        asyncio.run(upgrade())
    assert "tok-3f9a" not in str(raised.value)
    with (
        pytest.raises(ClusterError, match="refused to send the Authorization header"),
        ServicePortForward(cluster, NS, "web", "echo"),
    ):
        pass
    assert not any("X-Injected" in head for head in api.heads)


def test_impersonation_headers_go_with_every_request(pki: Pki, api: FakeApiServer) -> None:
    impersonation = (
        ("Impersonate-User", "jane"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
    )
    every_transport(
        config(
            pki,
            f"https://127.0.0.1:{api.port}",
            tls_server_name=SERVER_NAME,
            impersonation=impersonation,
        )
    )
    assert upgrades(api)
    for head in api.heads:
        lines = head.split("\r\n")
        assert "Impersonate-User: jane" in lines
        assert [line for line in lines if line.startswith("Impersonate-Group:")] == [
            "Impersonate-Group: devs",
            "Impersonate-Group: ops",
        ]


def test_a_credential_plugins_client_certificate_is_used_on_every_transport(
    pki: Pki, tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin"
    status = {
        "clientCertificateData": pki.client_cert.read_text(),
        "clientKeyData": pki.client_key.read_text(),
    }
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    plugin.write_text(
        f"#!{sys.executable}\nprint({json.dumps({**credential, 'status': status})!r})\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    with FakeApiServer(tls=server_tls(pki, client_ca=True)) as api:
        kubeconfig = tmp_path / "config"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "current-context": "c",
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": f"https://127.0.0.1:{api.port}",
                                "certificate-authority": str(pki.ca),
                                "tls-server-name": SERVER_NAME,
                            },
                        }
                    ],
                    "users": [{"name": "c", "user": {"exec": {"command": str(plugin)}}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "c"}}],
                }
            )
        )
        cluster = load_config(str(kubeconfig))
        assert cluster.authorization() is None  # a certificate and no token
        every_transport(cluster)
        assert api.peer_subjects
        assert all(subject == ((("commonName", "exec-user"),),) for subject in api.peer_subjects)


def test_a_forward_loads_no_general_http_client() -> None:
    """The forwarder's reads and watches are its own HTTP/1.1 on asyncio: a first forward
    imports no httpx (whose client cost 4.6 times the CPU per request, and tens of ms of
    import). Run in a process of its own: other tests import httpx."""
    code = """
import sys
from kubefixtures.kube.config import ClusterConfig
from kubefixtures.kube.portforward import ServicePortForward
from tests.unit.test_portforward_fakeapi import NS, FakeApiServer, echo
with FakeApiServer() as api:
    config = ClusterConfig(server=f"http://127.0.0.1:{api.port}", context="t", source="t")
    with ServicePortForward(config, NS, "web", "echo") as forward:
        assert echo(forward.local_port, b"ping") == b"ping"
print(sorted(name for name in ("httpx", "httpcore", "anyio", "h11") if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
