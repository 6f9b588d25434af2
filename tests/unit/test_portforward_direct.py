"""The direct route against the fake apiserver, with real TCP servers as the "pods".

The fake's EndpointSlice points at 127.0.0.1 and the port of a server in this process, so a
direct route dials it as it would dial a pod's IP; the tunnel's "pods" (the fake's echo)
answer when the route falls back to forwarding. The real cluster is in
tests/integration/test_direct_route.py.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubefixtures.kube.portforward import DirectRouteError, ServicePortForward, _direct
from tests.unit.test_portforward_fakeapi import NS, FakeApiServer, configuration, echo


class _Pod(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.connections = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(socketserver.BaseRequestHandler):
    """Echoes with the pod's name in front; b"reset" resets; b"fin" half-closes first."""

    def handle(self) -> None:
        pod = self.server
        assert isinstance(pod, _Pod)
        pod.connections += 1
        sock: socket.socket = self.request
        sent_prefix = False
        while chunk := sock.recv(65536):
            if chunk == b"reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # now: socketserver would shut the write side down first
                return
            if chunk == b"fin":
                # The pod finishes its side, then still reads: the client's bytes must come.
                sock.sendall(b"bye")
                sock.shutdown(socket.SHUT_WR)
                rest = b""
                while more := sock.recv(65536):
                    rest += more
                pod.last_after_fin = rest  # type: ignore[attr-defined]
                return
            if not sent_prefix:
                sock.sendall(pod.name.encode() + b":")
                sent_prefix = True
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)  # the client's FIN answered with ours


@contextlib.contextmanager
def pod(name: str) -> Iterator[_Pod]:
    server = _Pod(name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(params=["splice", "copy"])
def api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """Every test twice: bytes moved by splice(2), and copied where there is no splice."""
    if request.param == "copy":
        monkeypatch.setattr(_direct, "_SPLICE", None)
    with FakeApiServer() as server:
        server.pod_address = "127.0.0.1"
        yield server


def forward(api: FakeApiServer, route: str, **options: object) -> ServicePortForward:
    return ServicePortForward(configuration(api.port), NS, "web", "echo", route=route, **options)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upgrades(api: FakeApiServer) -> int:
    return sum("/portforward" in head for head in api.heads)


@pytest.mark.parametrize("route", ["direct", "auto"])
def test_direct_route_reaches_the_pod_without_the_apiserver(api: FakeApiServer, route: str) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, route) as pf:
            assert pf.route == "direct"
            assert "direct" in repr(pf)
            payload = bytes(range(256)) * 8000  # 2 MB: the buffers fill and drain
            assert echo(pf.local_port, payload) == b"a:" + payload
            assert echo(pf.local_port, b"x") == b"a:x"
        assert upgrades(api) == 0  # no tunnel opened, not even a spare one
        assert web_a.connections == 3  # the probe, then the two clients


def test_half_close_from_the_pod_leaves_the_clients_side_open(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with (
            forward(api, "direct") as pf,
            socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as sock,
        ):
            sock.sendall(b"fin")
            received = b""
            while chunk := sock.recv(64):  # the pod's FIN reaches us as an EOF...
                received += chunk
            assert received == b"bye"
            sock.sendall(b"still sending")  # ...and our side still carries bytes to it
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 5
            while not hasattr(web_a, "last_after_fin") and time.monotonic() < deadline:
                time.sleep(0.01)
        assert web_a.last_after_fin == b"still sending"  # type: ignore[attr-defined]


def test_a_reset_from_the_pod_resets_the_client(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            sock = socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
            with sock:
                sock.sendall(b"reset")
                with pytest.raises(ConnectionResetError):
                    sock.recv(64)
            assert echo(pf.local_port, b"next") == b"a:next"


def test_new_connections_follow_the_endpoints_to_the_next_pod(api: FakeApiServer) -> None:
    with pod("a") as web_a, pod("b") as web_b:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            assert echo(pf.local_port, b"one") == b"a:one"
            api.pod_port = web_b.port
            api.set_ready_pods(["web-b"])
            deadline = time.monotonic() + 2
            while pf.pod != "web-b" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert echo(pf.local_port, b"two") == b"b:two"
        assert upgrades(api) == 0


def test_auto_falls_back_to_the_tunnel_when_the_probe_fails(api: FakeApiServer) -> None:
    api.pod_port = closed_port()
    with forward(api, "auto") as pf:
        assert pf.route == "forward"
        assert echo(pf.local_port, b"tunnelled") == b"tunnelled"  # the fake tunnel's echo
    assert upgrades(api) == 1


def test_a_forced_direct_route_that_fails_its_probe_says_why(api: FakeApiServer) -> None:
    port = api.pod_port = closed_port()
    with pytest.raises(DirectRouteError) as caught:
        forward(api, "direct").start()
    assert str(caught.value) == (
        f"Service ns/web: no direct route to pod web-a at 127.0.0.1:{port}: Connection refused"
    )
    assert upgrades(api) == 0


def test_an_endpoint_without_a_pod_ip_is_forwarded(api: FakeApiServer) -> None:
    # (An unroutable address would be the natural test, but a transparent proxy, as on
    # some CI machines, accepts connections to any outside address; a local refusal is
    # deterministic, see above, and the real "no route" is in the integration tests.)
    api.pod_address = ""
    with forward(api, "auto") as pf:
        assert pf.route == "forward"
        assert echo(pf.local_port, b"tunnelled") == b"tunnelled"


def test_forward_route_never_probes(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "forward") as pf:
            assert pf.route == "forward"
            assert echo(pf.local_port, b"x") == b"x"
        assert web_a.connections == 0


def test_out_of_descriptors_for_pipes_the_bytes_are_copied(
    api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pipe(flags: int) -> tuple[int, int]:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(_direct.os, "pipe2", no_pipe)
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            payload = b"copied " * 50000
            assert echo(pf.local_port, payload) == b"a:" + payload


def test_only_addresses_with_a_route_of_their_own_are_probed(tmp_path: Path) -> None:
    # A default route, a /32 host route to one pod (the ptp CNI's), a /24 pod network.
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "veth1\t0500F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"
        "br0\t0001F50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert _direct.routed_here("10.244.0.5", str(routes))  # the pod's host route
    assert not _direct.routed_here("10.244.0.6", str(routes))  # only the default route
    assert _direct.routed_here("10.245.1.9", str(routes))  # the /24
    assert not _direct.routed_here("198.51.100.1", str(routes))
    assert _direct.routed_here("127.0.0.1", str(routes))  # loopback: not judged
    assert _direct.routed_here("fd00::5", str(routes))  # IPv6: not judged
    assert _direct.routed_here("10.0.0.1", str(tmp_path / "absent"))  # no table: not judged
