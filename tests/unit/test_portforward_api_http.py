"""The forwarder's own HTTP/1.1 reads and watches (kube/portforward/_api.py) against a
scripted server: keep-alive, a kept connection the server closed, chunked and sized
bodies, ``Connection: close``, timeouts and answers that are not HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kubefixtures.kube.config import ClusterConfig
from kubefixtures.kube.portforward._api import ApiClient, ApiEndpoint, PortForwardNotFound
from kubefixtures.kube.portforward._api import ApiServerUnreachableError as Unreachable

Answer = Callable[[int], bytes]  # the n-th request on a connection -> raw answer bytes


def sized(body: dict[str, Any], *extra: str) -> bytes:
    data = json.dumps(body).encode()
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + data


def chunked(*pieces: bytes, status: str = "200 OK") -> bytes:
    out = f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    for piece in pieces:
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: 1\r\n\r\n"


class Server:
    def __init__(self, answer: Answer, close_after: int | None = None) -> None:
        self.answer = answer
        self.close_after = close_after  # requests per connection before the server hangs up
        self.connections = 0
        self.heads: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head.decode())
                writer.write(self.answer(served))
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def client_of(server: Server, timeout: float = 5.0) -> AsyncIterator[ApiClient]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    config = ClusterConfig(
        server=f"http://127.0.0.1:{port}",
        context="t",
        source="test",
        authorization=lambda: "Bearer t0ken",
    )
    client = ApiClient(await ApiEndpoint.create(config), request_timeout=timeout)
    try:
        yield client
    finally:
        await client.aclose()
        listening.close()
        await listening.wait_closed()


def test_reads_share_one_kept_alive_connection() -> None:
    async def scenario() -> None:
        server = Server(lambda n: sized({"n": n}))
        async with client_of(server) as client:
            answers = [await client.get("/x", {"a": "b c"}, what="x") for _ in range(3)]
        assert answers == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert server.connections == 1
        first = server.heads[0].split("\r\n")
        assert first[0] == "GET /x?a=b+c HTTP/1.1"
        assert "Authorization: Bearer t0ken" in first
        assert any(line.startswith("Host: 127.0.0.1:") for line in first)

    asyncio.run(scenario())


def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    async def scenario() -> None:
        server = Server(lambda n: sized({"n": n}), close_after=1)
        async with client_of(server) as client:
            assert await client.get("/x", what="x") == {"n": 0}
            await asyncio.sleep(0.05)  # the server has hung up meanwhile
            assert await client.get("/x", what="x") == {"n": 0}
        assert server.connections == 2

    asyncio.run(scenario())


def test_connection_close_and_a_body_until_the_end() -> None:
    async def scenario() -> None:
        body = b'{"until": "eof"}'
        server = Server(lambda n: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        server.close_after = 1
        async with client_of(server) as client:
            assert await client.get("/x", what="x") == {"until": "eof"}
            assert await client.get("/x", what="x") == {"until": "eof"}
        assert server.connections == 2

    asyncio.run(scenario())


def test_chunked_bodies_with_trailers_and_errors_by_status() -> None:
    async def scenario() -> None:
        pieces = [b'{"a": ', b"[1, 2]}"]
        missing = b'{"kind": "Status", "message": "services \\"nope\\" not found"}'
        server = Server(lambda n: chunked(*pieces) if n == 0 else chunked(missing, status="404 NF"))
        async with client_of(server) as client:
            assert await client.get("/x", what="x") == {"a": [1, 2]}
            with pytest.raises(PortForwardNotFound, match="Service ns/nope not found"):
                await client.get("/y", what="Service ns/nope")
        assert server.connections == 1  # the 404's body was read: the connection stays

    asyncio.run(scenario())


def test_a_watch_yields_events_split_across_chunks() -> None:
    async def scenario() -> None:
        events = [{"type": "ADDED", "object": {"n": i}} for i in range(3)]
        text = b"".join(json.dumps(event).encode() + b"\n" for event in events)
        server = Server(lambda n: chunked(text[:10], text[10:50], text[50:]))
        async with client_of(server) as client:
            seen = [event async for event in client.watch("/w", {"labelSelector": "a=b"}, what="w")]
        assert seen == events
        request_line = server.heads[0].split("\r\n")[0]
        assert request_line == (
            "GET /w?labelSelector=a%3Db&watch=1&allowWatchBookmarks=true HTTP/1.1"
        )

    asyncio.run(scenario())


def test_no_answer_and_not_http_are_one_line_each() -> None:
    async def scenario() -> None:
        silent = Server(lambda n: b"")
        async with client_of(silent, timeout=0.3) as client:
            with pytest.raises(Unreachable, match=r"at http://127\.0\.0\.1:\d+: no answer within"):
                await client.get("/x", what="x")
        garbage = Server(lambda n: b"SSH-2.0-OpenSSH\r\n\r\n")
        async with client_of(garbage) as client:
            with pytest.raises(Unreachable, match=r"not an HTTP/1\.1 answer"):
                await client.get("/x", what="x")

    asyncio.run(scenario())
