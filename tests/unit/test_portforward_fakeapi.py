"""The whole forwarder against an in-process fake apiserver (no cluster needed).

The fake speaks just enough HTTP, WebSocket and SPDY: a Service, its EndpointSlices (list
and watch), pods, and the port-forward upgrade whose "pods" are echo servers. The real
protocol details are checked against the cluster in tests/integration/test_portforward.py;
this file pins the forwarder's own behaviour: concurrency, half-close, healing, errors,
clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from kubefixtures.kube.portforward import (
    ApiServerUnreachableError,
    KnownEndpoints,
    NoReadyEndpointsError,
    PortForwardForbiddenError,
    ServiceNotFoundError,
    ServicePortForward,
)
from kubefixtures.kube.portforward import _spdy as spdy
from kubefixtures.kube.portforward import _wsframe as ws
from kubefixtures.kube.portforward._loop import THREAD_NAME

NS = "ns"


def endpoint_slice(pods: list[str], address: str = "10.0.0.1", port: int = 7000) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "echo", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": pod},
            }
            for pod in pods
        ],
    }


def server_frame_header(size: int, first: int = 0x82) -> bytes:
    """An unmasked frame's header, its length in the shortest form (RFC 6455 5.2)."""
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + struct.pack("!H", size)
    return bytes((first, 127)) + struct.pack("!Q", size)


class FakeApiServer:
    """Runs on its own loop in a thread; its state is changed from the test thread."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # serve HTTPS with this context
        self.heads: list[str] = []  # every request head received, as text
        self.peer_subjects: list[Any] = []  # client certificates' subjects (TLS)
        self.ready_pods: list[str] = ["web-a"]
        # Where the EndpointSlice says the pods are (one address and port for all of them):
        # a direct route dials it.
        self.pod_address = "10.0.0.1"
        self.pod_port = 7000
        # The Service's ClusterIP ("None": headless; None: not in its spec) and port.
        self.cluster_ip: str | None = None
        self.service_port = 7000
        self.forbid_portforward = False
        # Pods whose port-forward upgrade fails with this status (an apiserver that does not
        # offer the SPDY tunnel says 400), and every upgrade asked for, by pod.
        self.failing_upgrades: dict[str, int] = {}
        self.upgrades_per_pod: Counter[str] = Counter()
        # Seconds the "pod" takes to answer a client's FIN with its own (containerd's
        # port-forward takes up to one).
        self.fin_delay = 0.0
        self.streams_per_pod: Counter[str] = Counter()
        self.tokens: set[str] = set()
        # Raw bytes sent once in place of the next SYN_REPLY (a server breaking the protocol),
        # and the codes of the close frames the client sent.
        self.protocol_breach: bytes | None = None
        self.close_codes: list[int] = []
        # Nothing listens in the "pod": the first frame of a data stream (bytes or FIN) is
        # answered with the kubelet's message on the error stream.
        self.refusing = False
        self.tunnels_opened: Counter[str] = Counter()
        self._watchers: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tunnels: dict[str, list[asyncio.StreamWriter]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for queue in self._watchers:
                queue.put_nowait(None)
            for writer in self._writers:
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=1)
                # A watch that registered its queue after the None above waits on it for
                # ever (its aborted writer does not wake it): left pending, its task would
                # be destroyed with the loop, an unraisable error in whatever test ran then.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(5)

    @property
    def watching(self) -> bool:
        """Whether a client watches the EndpointSlices (a change made before is not seen)."""
        return bool(self._watchers)

    def set_ready_pods(self, pods: list[str], *, kill: list[str] = ()) -> None:  # type: ignore[assignment]
        async def change() -> None:
            for pod in kill:  # the pod dies: its tunnels break
                for writer in self._tunnels.pop(pod, []):
                    writer.transport.abort()
            self.ready_pods = pods
            item = endpoint_slice(pods, self.pod_address, self.pod_port)
            for queue in self._watchers:
                queue.put_nowait({"type": "MODIFIED", "object": item})

        self._call(change())

    # -- HTTP ---------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            # TLS after the connection is in _writers: shutdown aborts it even mid-handshake.
            if self.tls is not None:
                await writer.start_tls(self.tls)
                peer = writer.get_extra_info("peercert")
                if peer:
                    self.peer_subjects.append(peer.get("subject"))
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if True:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                self.heads.append(head)
                request_line, *header_lines = head.strip().split("\r\n")
                _method, target, _ = request_line.split(" ")
                headers = {
                    k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)
                }
                self.tokens.add(headers.get("authorization", ""))
                url = urlsplit(target)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path.endswith("/portforward"):
                    await self._portforward(url.path.split("/")[-2], headers, reader, writer)
                    return
                if query.get("watch") == "1":
                    await self._watch(writer)
                    return
                status, body = self._get(url.path)
                payload = json.dumps(body).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()

    def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == f"/api/v1/namespaces/{NS}/services/web":
            spec: dict[str, Any] = {
                "selector": {"app": "web"},
                "ports": [{"name": "echo", "port": self.service_port, "targetPort": "echo"}],
            }
            if self.cluster_ip is not None:
                spec["clusterIP"] = self.cluster_ip
            return 200, {"metadata": {"name": "web", "namespace": NS}, "spec": spec}
        if path == f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices":
            return 200, {
                "metadata": {"resourceVersion": "1"},
                "items": [endpoint_slice(self.ready_pods, self.pod_address, self.pod_port)],
            }
        if path == f"/api/v1/namespaces/{NS}/pods":
            waiting = {"waiting": {"reason": "CrashLoopBackOff"}}
            status = {"phase": "Running", "containerStatuses": [{"name": "app", "state": waiting}]}
            container = {"name": "app", "ports": [{"name": "echo", "containerPort": 7000}]}
            pod = {
                "metadata": {"name": "web-a"},
                "spec": {"containers": [container]},
                "status": status,
            }
            return 200, {"items": [pod]}
        return 404, {"kind": "Status", "message": f"{path} not found"}

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._watchers.append(queue)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        while True:
            event = await queue.get()
            if event is None:
                return
            line = json.dumps(event).encode() + b"\n"
            writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            await writer.drain()

    # -- the port-forward upgrade ---------------------------------------------------------
    async def _refuse_upgrade(self, pod: str, writer: asyncio.StreamWriter) -> bool:
        """Answer an upgrade this fake is told to refuse; whether it did."""
        if pod in self.failing_upgrades:
            status = self.failing_upgrades[pod]
            body = json.dumps({"kind": "Status", "message": "upgrade refused"})
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
            )
        elif self.forbid_portforward:
            body = json.dumps(
                {"kind": "Status", "message": f'pods "{pod}" is forbidden: no portforward'}
            )
            writer.write(
                f"HTTP/1.1 403 Forbidden\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
            )
        else:
            return False
        await writer.drain()
        return True

    async def _portforward(
        self,
        pod: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.upgrades_per_pod[pod] += 1
        if await self._refuse_upgrade(pod, writer):
            return
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {ws.accept_for(headers['sec-websocket-key'])}\r\n"
                f"Sec-WebSocket-Protocol: {headers['sec-websocket-protocol']}\r\n\r\n"
            ).encode()
        )
        self._tunnels.setdefault(pod, []).append(writer)
        self.tunnels_opened[pod] += 1
        deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)
        frames = ws.FrameParser(from_client=True)
        session = spdy.FrameParser()

        def send(*chunks: bytes) -> None:
            payload = b"".join(chunks)
            writer.write(server_frame_header(len(payload)) + payload)

        def echo(item: spdy.DataFrame) -> None:
            """The "pod" is an echo server; its FIN answers the client's FIN."""
            if item.stream_id % 4 != 3 or not (item.data or item.fin):
                return
            if self.refusing:
                refusal = b"dial tcp4 127.0.0.1:7000: connect: connection refused"
                error_id = item.stream_id - 2
                send(spdy.data_frame_header(error_id, len(refusal), fin=True), refusal)
                return
            delayed_fin = item.fin and self.fin_delay > 0
            send(
                spdy.data_frame_header(
                    item.stream_id, len(item.data), fin=item.fin and not delayed_fin
                ),
                item.data,
            )
            if delayed_fin:
                fin = spdy.data_frame_header(item.stream_id, 0, fin=True)
                asyncio.get_running_loop().call_later(self.fin_delay, send, fin)

        while True:
            data = await reader.read(65536)
            if not data:
                return
            for frame in frames.feed(data):
                if frame.opcode == ws.OP_CLOSE:
                    self.close_codes.append(struct.unpack_from("!H", frame.payload)[0])
                    writer.close()
                    return
                for item in session.feed(frame.payload):
                    if isinstance(item, spdy.DataFrame):
                        echo(item)
                    elif item.type == spdy.TYPE_SYN_STREAM and self.protocol_breach:
                        writer.write(self.protocol_breach)
                        self.protocol_breach = None
                    elif item.type == spdy.TYPE_SYN_STREAM:
                        if dict(item.headers)["streamtype"] == "data":
                            self.streams_per_pod[pod] += 1
                        block = deflate.compress(spdy.encode_header_block({}))
                        block += deflate.flush(zlib.Z_SYNC_FLUSH)
                        body = struct.pack("!I", item.stream_id) + block
                        send(struct.pack("!II", 0x80030002, len(body)), body)
                    elif item.type == spdy.TYPE_PING:
                        send(spdy.encode_ping(item.stream_id))
            await writer.drain()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


def configuration(port: int) -> Any:
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.api_key = {"authorization": "s3cret"}
    config.api_key_prefix = {"authorization": "Bearer"}
    return config


def forward(api: FakeApiServer, **options: Any) -> ServicePortForward:
    return ServicePortForward(
        configuration(api.port), NS, "web", options.pop("port", "echo"), **options
    )


def echo(port: int, payload: bytes, *, half_close: bool = True, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while len(received) < len(payload) or half_close:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def forwarder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture
def threads_before() -> list[threading.Thread]:
    """The loop thread is shared: another test's live forward (a session-scoped environment
    in the same xdist worker) may own it. Ours must leave it as they found it."""
    return forwarder_threads()


def test_echo_and_half_close_through_one_tunnel(api: FakeApiServer) -> None:
    with forward(api) as pf:
        assert pf.transport == "spdy"
        assert pf.pod == "web-a"
        payload = bytes(range(256)) * 4000
        assert echo(pf.local_port, payload) == payload  # full data, then EOF passed back
        assert echo(pf.local_port, b"x", half_close=False) == b"x"
    assert api.tokens == {"Bearer s3cret"}
    assert api.streams_per_pod == Counter({"web-a": 2})
    # One upgrade: the tunnel opened by start(), no spare opened beside it and retired.
    assert sum("/portforward" in head for head in api.heads) == 1


def test_a_client_gone_before_the_pods_fin_takes_no_other_connection_down(
    api: FakeApiServer,
) -> None:
    # A client sends its EOF and closes; its kernel resets the connection (here at once,
    # as it does when a late reply arrives after a close). When the pod's FIN comes, the
    # forward cannot pass it on: that must end this connection alone, not the tunnel that
    # carries the others.
    api.fin_delay = 0.5
    with forward(api) as pf:
        with socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as other:
            other.sendall(b"before")
            assert other.recv(64) == b"before"
            gone = socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
            gone.sendall(b"x")
            assert gone.recv(64) == b"x"
            gone.shutdown(socket.SHUT_WR)
            time.sleep(0.2)  # the forward has passed the EOF on
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.close()  # a reset
            time.sleep(api.fin_delay + 0.3)  # the pod's FIN has come
            other.sendall(b"after")
            assert other.recv(64) == b"after"
        assert echo(pf.local_port, b"new") == b"new"


def test_fifty_concurrent_connections_get_their_own_bytes(api: FakeApiServer) -> None:
    async def client(port: int, index: int) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = f"connection {index} ".encode() * 500
        writer.write(payload)
        writer.write_eof()
        received = await reader.read()
        writer.close()
        return received == payload

    async def clients(port: int) -> list[bool]:
        return await asyncio.gather(*(client(port, i) for i in range(50)))

    with forward(api) as pf:
        assert all(asyncio.run(clients(pf.local_port)))


def test_new_connections_go_to_the_next_ready_pod(api: FakeApiServer) -> None:
    with forward(api) as pf:
        assert echo(pf.local_port, b"one") == b"one"
        api.set_ready_pods(["web-b"], kill=["web-a"])
        deadline = time.monotonic() + 2
        while pf.pod != "web-b" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pf.pod == "web-b"
        assert echo(pf.local_port, b"two") == b"two"
    assert api.streams_per_pod == Counter({"web-a": 1, "web-b": 1})


def upgrades_after(api: FakeApiServer, seconds: float) -> Counter[str]:
    time.sleep(seconds)
    return Counter(api.upgrades_per_pod)


def test_after_falling_back_to_v4_nothing_retries_the_tunnel(api: FakeApiServer) -> None:
    api.failing_upgrades["web-a"] = 400  # no SPDY tunnel offered
    with forward(api) as pf:
        assert pf.transport == "v4"
        assert upgrades_after(api, 1.5) == Counter({"web-a": 1})


def test_a_tunnel_that_keeps_failing_is_not_retried_until_stop(api: FakeApiServer) -> None:
    with forward(api, connect_timeout=0.5) as pf:
        api.failing_upgrades["web-b"] = 500
        api.set_ready_pods(["web-b"], kill=["web-a"])
        # The new pod's tunnel is prewarmed, and fails: waited for as an event, however
        # late a busy machine makes it, then given the time its attempts take.
        deadline = time.monotonic() + 30
        while not api.upgrades_per_pod["web-b"] and time.monotonic() < deadline:
            time.sleep(0.01)
        first = upgrades_after(api, 1.5)["web-b"]
        assert first >= 1
        assert upgrades_after(api, 2.0)["web-b"] == first  # then given up: no retry loop
        del api.failing_upgrades["web-b"]
        assert echo(pf.local_port, b"later") == b"later"  # the next client tries again


def test_a_connection_waits_for_a_ready_pod_then_is_reset(api: FakeApiServer) -> None:
    with forward(api, connect_timeout=0.3) as pf:
        api.set_ready_pods([], kill=["web-a"])
        deadline = time.monotonic() + 2
        while pf.pod is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_reset_after_the_connect_timeout(pf.local_port)
        api.set_ready_pods(["web-c"])
        assert echo(pf.local_port, b"back") == b"back"


def assert_reset_after_the_connect_timeout(port: int) -> None:
    """A client that finds no ready pod is reset once the connect timeout (0.3 s) is over."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"hello")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    assert 0.25 < time.monotonic() - started < 3


def test_missing_service(api: FakeApiServer, threads_before: list[threading.Thread]) -> None:
    pf = ServicePortForward(configuration(api.port), NS, "nope", 80)
    with pytest.raises(ServiceNotFoundError, match=r"^Service ns/nope not found$"):
        pf.start()
    assert forwarder_threads() == threads_before


def test_missing_service_port(api: FakeApiServer) -> None:
    with pytest.raises(ServiceNotFoundError, match=r"has no port 81 \(its ports: 7000/echo\)"):
        forward(api, port=81).start()


def test_no_ready_endpoints_says_why(api: FakeApiServer) -> None:
    api.ready_pods = []
    with pytest.raises(NoReadyEndpointsError) as caught:
        forward(api, ready_timeout=0.2).start()
    assert str(caught.value) == (
        "Service ns/web has no ready endpoints for port echo after 0.2s: "
        "pod web-a not ready (phase Running; container app waiting: CrashLoopBackOff)"
    )


def test_rbac_forbidding_portforward(
    api: FakeApiServer, threads_before: list[threading.Thread]
) -> None:
    api.forbid_portforward = True
    with pytest.raises(
        PortForwardForbiddenError,
        match=r"RBAC forbids port-forwarding to pod ns/web-a: .*forbidden",
    ):
        forward(api).start()
    assert forwarder_threads() == threads_before


def test_unreachable_apiserver() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pf = ServicePortForward(configuration(port), NS, "web", 80)
    with pytest.raises(
        ApiServerUnreachableError,
        match=rf"cannot reach the Kubernetes API server at http://127.0.0.1:{port}",
    ):
        pf.start()


def test_stop_closes_the_port_and_leaves_no_thread(
    api: FakeApiServer, threads_before: list[threading.Thread]
) -> None:
    first, second = forward(api), forward(api)
    first.start()
    second.start()
    assert len(forwarder_threads()) == 1  # one loop thread for all forwards (and others')
    port = first.local_port
    first.stop()
    first.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert echo(second.local_port, b"still") == b"still"
    second.stop()
    assert forwarder_threads() == threads_before
    with second:  # a stopped forward starts again
        assert echo(second.local_port, b"again") == b"again"
    assert forwarder_threads() == threads_before


def refused(port: int, *, write_first: bool) -> bool:
    """Whether a connection through the forward was closed or reset (not answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if write_first:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        else:
            sock.shutdown(socket.SHUT_WR)
        try:
            return sock.recv(10) == b""
        except ConnectionResetError:
            return True


def test_a_refused_connection_the_client_wrote_to_retires_its_tunnel(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The kubelet would never read those bytes, jamming the tunnel's later connections.
    with caplog.at_level("ERROR", "kubefixtures.portforward"), forward(api) as pf:
        assert echo(pf.local_port, b"up") == b"up"
        api.refusing = True
        assert refused(pf.local_port, write_first=False)
        assert api.tunnels_opened == Counter({"web-a": 1})  # nothing written: kept
        assert refused(pf.local_port, write_first=True)
        api.refusing = False
        assert echo(pf.local_port, b"listening") == b"listening"
    assert api.tunnels_opened == Counter({"web-a": 2})


def test_a_forward_given_its_endpoints_asks_nothing_before_it_serves_then_follows_them(
    api: FakeApiServer,
) -> None:
    # A pool's spare: the caller listed the Service and its slices a moment ago.
    status, service = api._get(f"/api/v1/namespaces/{NS}/services/web")
    assert status == 200
    known = KnownEndpoints.find(
        "web",
        [service],
        [endpoint_slice(["web-a"]), {**endpoint_slice(["other"]), "metadata": {"name": "x"}}],
        "1",
    )
    assert known is not None
    assert [item["metadata"]["name"] for item in known.slices] == ["web-abc"]
    with forward(api, known=known) as pf:
        assert pf.pod == "web-a"
        assert echo(pf.local_port, b"one") == b"one"
        listed = [
            head.split(" ")[1]
            for head in api.heads
            if head.startswith("GET") and "watch=1" not in head and "/portforward" not in head
        ]
        assert listed == []  # no GET of the Service, no list of its slices
        api.set_ready_pods(["web-b"], kill=["web-a"])  # the watch from version 1 follows
        deadline = time.monotonic() + 2
        while pf.pod != "web-b" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pf.pod == "web-b"
        assert echo(pf.local_port, b"two") == b"two"
    assert any("watch=1" in head and "resourceVersion=1" in head for head in api.heads)


def test_known_endpoints_are_found_by_service_name_only() -> None:
    assert KnownEndpoints.find("web", [], [endpoint_slice(["web-a"])], "1") is None
