"""The direct route against the fake apiserver, with real TCP servers as the "pods".

The fake's EndpointSlice points at 127.0.0.1 and the port of a server in this process, so a
direct route dials it as it would dial a pod's IP; the tunnel's "pods" (the fake's echo)
answer when the route falls back to forwarding. The real cluster is in
tests/integration/test_direct_route.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.kube.portforward import (
    DirectRouteError,
    ServicePortForward,
    _direct,
    _direct_listener,
)
from kubefixtures.kube.portforward._endpoints import Target
from tests.unit.test_portforward_fakeapi import (
    NS,
    FakeApiServer,
    assert_reset_after_the_connect_timeout,
    configuration,
    echo,
)


class _Pod(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
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
def pod(name: str, host: str = "127.0.0.1") -> Iterator[_Pod]:
    server = _Pod(name, host)
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


def test_a_connection_made_while_no_pod_is_ready_waits_for_one(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            no_pod_ready(api, pf)
            with socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as sock:
                sock.sendall(b"early")
                time.sleep(0.2)  # accepted meanwhile, and waiting
                api.set_ready_pods(["web-a"])
                sock.shutdown(socket.SHUT_WR)
                assert receive_all(sock) == b"a:early"


def test_no_ready_pod_within_the_connect_timeout_resets_the_client(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct", connect_timeout=0.3) as pf:
            no_pod_ready(api, pf)
            assert_reset_after_the_connect_timeout(pf.local_port)
            api.set_ready_pods(["web-a"])
            assert echo(pf.local_port, b"back") == b"a:back"
    assert f"connection to 127.0.0.1:{pf.local_port} dropped: no ready pod behind" in caplog.text


def test_a_pod_that_refuses_resets_the_client_and_says_why(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            web_a.shutdown()  # (its poll() would hold the socket open a while)
            web_a.server_close()  # the pod stays ready, its port is closed
            # Reset at once: on a busy machine the reset can come before connect() returns
            # (create_connection's timeout makes it wait for the handshake and read SO_ERROR).
            with (
                contextlib.suppress(ConnectionResetError, BrokenPipeError),
                connection(pf) as sock,
            ):
                sock.sendall(b"hello")
                assert sock.recv(10) == b""
    assert (
        f"connection to 127.0.0.1:{pf.local_port} dropped: pod ns/web-a at"
        f" 127.0.0.1:{web_a.port}: Connection refused"
    ) in caplog.text


def test_stop_resets_the_connections_in_flight(api: FakeApiServer) -> None:
    with pod("a") as web_a, contextlib.ExitStack() as sockets:
        api.pod_port = web_a.port
        pf = forward(api, "direct")
        pf.start()
        try:
            spliced = sockets.enter_context(connection(pf))
            spliced.sendall(b"x")
            assert receive(spliced, 3) == b"a:x"
            no_pod_ready(api, pf)
            waiting = sockets.enter_context(connection(pf))
            waiting.sendall(b"y")
            time.sleep(0.1)  # accepted, and waiting for a ready pod
        finally:
            pf.stop()
        for sock in (spliced, waiting):
            with pytest.raises(ConnectionResetError):
                sock.recv(10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_chunks_slow_readers_and_half_closes_arrive_whole(
    api: FakeApiServer, seed: int
) -> None:
    """Small and bulk chunks mixed in one connection (a way switches from copying to
    splicing), readers that lag behind (backpressure), a half-close at the end."""
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:

            def one(number: int) -> None:
                rng = random.Random(seed * 1000 + number)
                sizes = [1, 3, 100, 4000, 70_000, 200_000]
                chunks = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.randint(1, 8))]
                with socket.create_connection(("127.0.0.1", pf.local_port), timeout=10) as sock:
                    received = bytearray()
                    reader = threading.Thread(
                        target=lambda: received.extend(receive_all(sock, lag=rng.random() / 50))
                    )
                    reader.start()
                    for chunk in chunks:
                        sock.sendall(chunk)
                        time.sleep(rng.choice([0, 0, 0.001, 0.01]))
                    sock.shutdown(socket.SHUT_WR)
                    reader.join(10)
                assert bytes(received) == b"a:" + b"".join(chunks)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(8)))


@pytest.mark.parametrize("api", ["splice"], indirect=True)
@pytest.mark.skipif(_direct._SPLICE is None, reason="no splice(2) here: no pipes")
def test_only_bulk_ways_take_a_pipe_and_give_it_back(
    api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[int, int]] = []
    closed: list[int] = []
    pipe2, close = os.pipe2, os.close

    def counting_pipe2(flags: int) -> tuple[int, int]:
        created.append(pipe2(flags))
        return created[-1]

    def recording_close(descriptor: int) -> None:
        closed.append(descriptor)
        close(descriptor)

    monkeypatch.setattr(os, "pipe2", counting_pipe2)
    monkeypatch.setattr(os, "close", recording_close)
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with forward(api, "direct") as pf:
            for _ in range(20):
                assert echo(pf.local_port, b"small") == b"a:small"
            assert created == []
            payload = bytes(range(256)) * 4000  # 1 MB each way
            assert echo(pf.local_port, payload) == b"a:" + payload
            after_one = len(created)
            assert 1 <= after_one <= 2
            assert echo(pf.local_port, payload) == b"a:" + payload
            assert len(created) == after_one  # the spare pipes of the first served the second
    assert {end for pipe in created for end in pipe} <= set(closed)  # by stop()


def no_pod_ready(api: FakeApiServer, pf: ServicePortForward) -> None:
    wait_until(lambda: api.watching)
    api.set_ready_pods([])
    wait_until(lambda: pf.pod is None)


def wait_until(condition: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def connection(pf: ServicePortForward) -> socket.socket:
    return socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)


def receive(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size and (chunk := sock.recv(size - len(received))):
        received += chunk
    return received


def receive_all(sock: socket.socket, lag: float = 0) -> bytes:
    received = bytearray()
    while chunk := sock.recv(65536):
        received += chunk
        if lag:
            time.sleep(lag)
    return bytes(received)


def test_out_of_descriptors_the_listener_pauses_then_accepts_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_direct_listener, "ACCEPT_RETRY_DELAY", 0.2)

    class OutOfDescriptorsOnce(socket.socket):
        failed = False

        def accept(self) -> tuple[socket.socket, Any]:
            if not self.failed:
                self.failed = True
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            return super().accept()

    class OnePod:
        def __init__(self, port: int) -> None:
            self.target = Target("web-a", port, "127.0.0.1")

        async def ready_target(self) -> Target:
            return self.target

    async def serve_one(port: int) -> tuple[bytes, float]:
        sock = OutOfDescriptorsOnce(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        listener = _direct_listener.DirectListener(
            sock, OnePod(port), namespace=NS, what="Service ns/web", connect_timeout=5
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await loop.run_in_executor(None, echo, listener.port, b"x")
        finally:
            await listener.close()
        return answer, loop.time() - started

    with pod("a") as web_a:
        answer, took = asyncio.run(serve_one(web_a.port))
    assert answer == b"a:x"
    assert took >= 0.15  # served once the pause was over
    assert "cannot accept connections for 0.2s: Too many open files" in caplog.text
