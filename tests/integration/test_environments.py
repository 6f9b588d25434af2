"""Environments on the real cluster: services come up and answer through forwarded ports."""

from __future__ import annotations

import socket

import httpx
import pytest
import redis

from kubefixtures import Environment
from kubefixtures.kube import Cluster
from kubefixtures.naming import MANAGED_BY_LABEL, SESSION_LABEL

pytestmark = pytest.mark.cluster


def test_redis_answers_through_its_forwarded_port(shop: Environment) -> None:
    service = shop.services["redis"]
    assert service.host == "127.0.0.1"
    assert service.ports == {6379: service.port}
    client = redis.Redis(
        host=service.host, port=service.port, password=shop.secrets["redis"], socket_timeout=5
    )
    try:
        assert client.ping()
        client.set("cart", "3 apples")
        assert client.get("cart") == b"3 apples"
    finally:
        client.close()


def test_redis_requires_the_generated_password(shop: Environment) -> None:
    service = shop.services["redis"]
    client = redis.Redis(host=service.host, port=service.port, socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()


def test_http_service_answers_on_its_url(shop: Environment) -> None:
    web = shop.services["web"]
    assert web.url == f"http://127.0.0.1:{web.ports[80]}"
    assert web.named_ports == {"http": web.port}
    response = httpx.get(f"{web.url}/health", timeout=5)
    assert response.status_code == 200
    echoed = httpx.post(f"{web.url}/", content=b"ping", timeout=5)
    assert echoed.content == b"ping"


def test_namespace_is_labelled_and_objects_rendered(
    shop: Environment, kubefixtures_cluster: Cluster
) -> None:
    namespace = kubefixtures_cluster.request("GET", f"/api/v1/namespaces/{shop.namespace}")
    labels = namespace["metadata"]["labels"]
    assert labels[MANAGED_BY_LABEL] == "kubefixtures"
    assert labels[SESSION_LABEL] == shop.session_id
    assert shop.namespace.startswith("kf-shop-")
    assert shop.context == kubefixtures_cluster.context
    config = kubefixtures_cluster.request(
        "GET", f"/api/v1/namespaces/{shop.namespace}/configmaps/web-settings"
    )
    assert config["data"] == {
        "greeting": "hello",
        "namespace": shop.namespace,
        "literal": "${not_a_placeholder}",
    }
    kinds = sorted(f"{obj['kind']}/{obj['metadata']['name']}" for obj in shop.objects)
    assert kinds == [
        "ConfigMap/web-settings",
        "Deployment/redis",
        "Deployment/web",
        "Secret/redis-auth",
        "Service/redis",
        "Service/web",
    ]
    deployment = next(obj for obj in shop.objects if obj["metadata"]["name"] == "redis")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "kubefixtures.local/redis:7.0"  # the image override reached the pod spec
    assert shop.details.ready_seconds > 0
    # Every step of a fresh setup was timed, in the order it ran (kubefixtures.timing).
    phases = shop.details.phases
    assert sorted(list(phases)[:2]) == ["connect", "render"]  # side by side
    assert list(phases)[2:] == ["resolve", "namespace", "apply", "ready", "forward"]
    assert all(seconds >= 0 for seconds in phases.values())
    assert phases["forward"] <= shop.details.ready_seconds


def test_a_helm_chart_source_works(echo_chart: Environment, kubefixtures_cluster: Cluster) -> None:
    service = echo_chart.services["echo"]
    with socket.create_connection(service.address, timeout=5) as connection:
        connection.sendall(b"hello chart\n")
        received = b""
        while not received.endswith(b"\n"):
            chunk = connection.recv(1024)
            assert chunk, "the echo server closed the connection"
            received += chunk
    assert received == b"hello chart\n"
    deployment = kubefixtures_cluster.request(
        "GET", f"/apis/apps/v1/namespaces/{echo_chart.namespace}/deployments/echo-chart-echo"
    )
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["message"] == "from-values"  # values reach the chart
