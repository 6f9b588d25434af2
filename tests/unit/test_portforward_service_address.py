"""``address="service"`` against the fake apiserver: a direct route served at the
Service's ClusterIP when it answers, with nothing listening here.

The "ClusterIP" is 127.0.0.2 (loopback, answered by a server of this process in kube-proxy's
place); the "pod" is on 127.0.0.1, as in test_portforward_direct. The real cluster's
kube-proxy is in tests/integration/test_direct_address.py.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from kubefixtures.kube.portforward import ServicePortForward, _direct, _forwarder, stray_answer
from tests.unit.test_portforward_direct import _Pod, closed_port, pod
from tests.unit.test_portforward_fakeapi import NS, FakeApiServer, configuration, echo

CLUSTER_IP = "127.0.0.2"


def kube_proxy() -> contextlib.AbstractContextManager[_Pod]:
    """Answers at the "ClusterIP", as kube-proxy's rules to a pod would."""
    return pod("svc", CLUSTER_IP)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.pod_address = "127.0.0.1"
        yield server


def forward(
    api: FakeApiServer, route: str = "auto", address: str = "service"
) -> ServicePortForward:
    return ServicePortForward(
        configuration(api.port),
        NS,
        "web",
        "echo",
        route=route,  # type: ignore[arg-type]
        address=address,  # type: ignore[arg-type]
        connect_timeout=2,
    )


def test_a_cluster_ip_that_answers_is_handed_out_and_nothing_listens_here(
    api: FakeApiServer,
) -> None:
    with pod("a") as web_a, kube_proxy() as service:
        api.pod_port = web_a.port
        api.cluster_ip, api.service_port = CLUSTER_IP, service.port
        with forward(api) as pf:
            assert (pf.route, pf.host, pf.local_port) == ("service", CLUSTER_IP, service.port)
            assert pf.pod is None  # kube-proxy chooses, per connection
            assert f"-> {CLUSTER_IP}:{service.port}, service)" in repr(pf)
            with socket.create_connection((CLUSTER_IP, service.port), timeout=5) as sock:
                sock.sendall(b"hello")
                sock.shutdown(socket.SHUT_WR)
                assert b"".join(iter(lambda: sock.recv(100), b"")) == b"svc:hello"
        assert web_a.connections == 1  # the direct route's probe, and nothing else
        assert service.connections == 2  # the ClusterIP's probe, then the client


@pytest.mark.parametrize("cluster_ip", ["None", ""])
def test_a_headless_service_keeps_the_local_splice(api: FakeApiServer, cluster_ip: str) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        api.cluster_ip = cluster_ip
        with forward(api) as pf:
            assert (pf.route, pf.host) == ("direct", "127.0.0.1")
            assert echo(pf.local_port, b"x") == b"a:x"


def test_a_refusing_cluster_ip_is_probed_again_then_the_local_splice_serves(
    api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_forwarder, "SERVICE_PROBE_PATIENCE", 0.3)
    with pod("a") as web_a:
        api.pod_port = web_a.port
        api.cluster_ip, api.service_port = "127.0.0.1", closed_port()
        with forward(api) as pf:
            assert (pf.route, pf.host) == ("direct", "127.0.0.1")
            assert echo(pf.local_port, b"x") == b"a:x"


def test_the_forward_route_and_the_local_address_never_probe_the_cluster_ip(
    api: FakeApiServer,
) -> None:
    with pod("a") as web_a, kube_proxy() as service:
        api.pod_port = web_a.port
        api.cluster_ip, api.service_port = CLUSTER_IP, service.port
        with forward(api, route="forward") as pf:
            assert (pf.route, pf.host) == ("forward", "127.0.0.1")
        with forward(api, address="local") as pf:
            assert (pf.route, pf.host) == ("direct", "127.0.0.1")
            assert echo(pf.local_port, b"x") == b"a:x"
        assert service.connections == 0


def test_a_cluster_ip_is_not_handed_out_where_its_other_ports_answer_too(
    api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-all on the default route answers every port; kube-proxy only the Service's."""
    with pod("a") as web_a, kube_proxy() as service, pod("stranger", CLUSTER_IP) as stranger:
        monkeypatch.setattr(_direct, "CANARY_PORT", stranger.port)
        api.pod_port = web_a.port
        api.cluster_ip, api.service_port = CLUSTER_IP, service.port
        for _ in range(2):
            with forward(api) as pf:
                assert (pf.route, pf.host) == ("direct", "127.0.0.1")
                assert echo(pf.local_port, b"x") == b"a:x"
        assert service.connections == 0  # its answer would prove nothing
        assert stranger.connections == 1  # the canary, once for this cluster and process


def test_the_canary_skips_the_services_own_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    with kube_proxy() as service:
        monkeypatch.setattr(_direct, "CANARY_PORT", service.port)
        config = configuration(closed_port())
        # The Service's own port answers, the next one (the canary) does not: trusted.
        assert stray_answer(config, CLUSTER_IP, {service.port}) is None
        assert service.connections == 0
    with pod("stranger", CLUSTER_IP) as stranger:
        monkeypatch.setattr(_direct, "CANARY_PORT", stranger.port)
        # A cluster seen before keeps its verdict; another cluster is probed afresh.
        assert stray_answer(config, CLUSTER_IP, {80}) is None
        why = stray_answer(configuration(closed_port()), CLUSTER_IP, {80})
        assert why is not None
        assert f"its port {stranger.port}, which no Service uses" in why
