"""The real cluster through what the kubeconfig asks for: an HTTP CONNECT proxy
(``proxy-url``) for the API and a port-forward, and impersonation (``as``, ``as-groups``)
of a ServiceAccount with no roles, which gets the 403s the admin does not."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kubefixtures.kube import ApiError, Cluster
from kubefixtures.kube.client import NAMESPACE
from kubefixtures.kube.config import load_config
from kubefixtures.kube.portforward import PortForwardForbiddenError, ServicePortForward
from tests.integration.test_credentials import who_am_i
from tests.integration.test_portforward import deployment, service
from tests.unit.transport_support import ConnectProxy

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def namespace(kubefixtures_cluster: Cluster) -> Iterator[str]:
    """A namespace with the echo Deployment and Service (test_portforward.py's) and a
    ServiceAccount ``tester`` without roles."""
    cluster = kubefixtures_cluster
    name = f"kf-transport-{secrets.token_hex(3)}"
    cluster.create_namespace(name, {"kubefixtures.io/test": "transports"})
    try:
        cluster.request(
            "POST", f"/apis/apps/v1/namespaces/{name}/deployments", body=deployment("echo")
        )
        cluster.request("POST", f"/api/v1/namespaces/{name}/services", body=service("echo"))
        cluster.request(
            "POST",
            f"/api/v1/namespaces/{name}/serviceaccounts",
            body={"metadata": {"name": "tester"}},
        )
        yield name
    finally:
        cluster.delete_namespace(name)


def admin_kubeconfig(
    path: Path, cluster: Cluster, *, cluster_extra: Mapping[str, Any], user_extra: Mapping[str, Any]
) -> Path:
    """A kubeconfig with the suite's credentials and the extra fields; 0600 from creation
    (it holds the admin's key)."""
    config = cluster.config
    entry: dict[str, Any] = {"server": config.server, **cluster_extra}
    if config.ca_pem:
        entry["certificate-authority-data"] = base64.b64encode(config.ca_pem.encode()).decode()
    elif config.ca_file:
        entry["certificate-authority"] = config.ca_file
    if config.tls_server_name:
        entry["tls-server-name"] = config.tls_server_name
    user: dict[str, Any] = dict(user_extra)
    if config.client_cert is not None:
        cert, key = config.client_cert
        user["client-certificate-data"] = base64.b64encode(cert.encode()).decode()
        user["client-key-data"] = base64.b64encode(key.encode()).decode()
    elif config.client_cert_files is not None:
        user["client-certificate"], user["client-key"] = config.client_cert_files
    authorization = config.authorization()
    if authorization and authorization.startswith("Bearer "):
        user["token"] = authorization.removeprefix("Bearer ")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [{"name": "t", "cluster": entry}],
        "users": [{"name": "t", "user": user}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        yaml.safe_dump(document, out)
    return path


def wait_ready(cluster: Cluster, namespace: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
        if any(
            condition["type"] == "Ready" and condition["status"] == "True"
            for pod in pods
            for condition in pod.get("status", {}).get("conditions") or []
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"no echo pod ready in {namespace} after {timeout}s")


def echo_roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_api_and_a_port_forward_through_a_connect_proxy(
    tmp_path: Path, kubefixtures_cluster: Cluster, namespace: str
) -> None:
    proxy = ConnectProxy(credentials=("kf", "s3cret"))
    host = proxy.url.removeprefix("http://")
    path = admin_kubeconfig(
        tmp_path / "config",
        kubefixtures_cluster,
        cluster_extra={"proxy-url": f"http://kf:s3cret@{host}"},
        user_extra={},
    )
    config = load_config(str(path))
    cluster = Cluster(config)
    try:
        assert who_am_i(cluster) == who_am_i(kubefixtures_cluster)
        wait_ready(cluster, namespace)
        with ServicePortForward(config, namespace, "echo", "echo") as forward:
            assert echo_roundtrip(forward.local_port, b"via the proxy") == b"via the proxy"
    finally:
        cluster.close()
        proxy.close()
    server = urlsplit(config.server)
    authority = f"{server.hostname}:{server.port or 443}"
    # The API call, the forwarder's reads and watch, and its upgrade: all tunnelled.
    assert len(proxy.targets) >= 3
    assert set(proxy.targets) == {authority}


def test_impersonating_a_service_account_gets_its_403s(
    tmp_path: Path, kubefixtures_cluster: Cluster, namespace: str
) -> None:
    account = f"system:serviceaccount:{namespace}:tester"
    path = admin_kubeconfig(
        tmp_path / "config",
        kubefixtures_cluster,
        cluster_extra={},
        user_extra={
            "as": account,
            "as-groups": ["system:serviceaccounts", "system:authenticated"],
        },
    )
    config = load_config(str(path))
    cluster = Cluster(config)
    try:
        assert who_am_i(cluster) == account
        # The admin may list namespaces; the ServiceAccount it impersonates may not.
        kubefixtures_cluster.list_objects(NAMESPACE, None)
        with pytest.raises(ApiError, match="HTTP 403 Forbidden"):
            cluster.list_objects(NAMESPACE, None)
        # The forwarder sends the same headers: RBAC forbids it reading the Service.
        wait_ready(kubefixtures_cluster, namespace)
        with (
            pytest.raises(PortForwardForbiddenError, match=r"RBAC forbids reading"),
            ServicePortForward(config, namespace, "echo", "echo"),
        ):
            pass
    finally:
        cluster.close()
