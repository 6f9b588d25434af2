"""The HTTP layer against a local server: keep-alive reuse, stale connections, watches."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from kubefixtures.errors import ClusterError
from kubefixtures.kube._http import Connections
from kubefixtures.kube.config import ClusterConfig

TIMEOUT = (2.0, 2.0)


class OneShotServer:
    """Answers one request per connection, saying keep-alive, then hangs up: what a server's
    idle timeout does to a pooled connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with client:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = client.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                body = b'{"ok": true}'
                client.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(body), body)
                )

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[OneShotServer]:
    served = OneShotServer()
    yield served
    served.close()


def connections(port: int, token: str | None = None) -> Connections:
    header = f"Bearer {token}" if token else None
    config = ClusterConfig(
        server=f"http://127.0.0.1:{port}", context="t", source="test", authorization=lambda: header
    )
    return Connections(config)


def test_a_connection_the_server_closed_is_replaced_without_an_error(
    server: OneShotServer,
) -> None:
    pool = connections(server.port)
    try:
        for _ in range(3):
            response = pool.request("GET", "/version", headers={}, timeout=TIMEOUT)
            assert (response.status, response.data) == (200, b'{"ok": true}')
        assert server.connections == 3  # each request after the first found its socket closed
    finally:
        pool.close()


def test_an_unreachable_server_is_a_cluster_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    pool = connections(port)
    with pytest.raises(ClusterError, match="refused"):
        pool.request("GET", "/version", headers={}, timeout=TIMEOUT)


def test_a_watch_stream_yields_lines_and_close_ends_it_from_another_thread() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen_headers: list[bytes] = []

    def serve() -> None:
        client, _ = listener.accept()
        with client:
            seen_headers.append(client.recv(4096))
            client.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'6\r\n{"a":1\r\n3\r\n}\n\n\r\n'  # one line split across two chunks
            )
            client.recv(1)  # then stay silent until the client goes away

    threading.Thread(target=serve, daemon=True).start()
    pool = connections(port, token="s3cret")
    stream = pool.stream("/watch", headers={}, timeout=(2.0, 30.0))
    lines = stream.lines()
    assert next(lines) == b'{"a":1}'
    threading.Timer(0.2, stream.close).start()
    assert list(lines) == []  # ended by close(), not by the 30 s read timeout
    assert b"Authorization: Bearer s3cret" in seen_headers[0]
    listener.close()
    pool.close()
