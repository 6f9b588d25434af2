"""Pure logic of the environment controls: targets, the exec channels and exit status,
selectors, messages."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubefixtures.control import ExecResult, Target, parse_target
from kubefixtures.control._core import _check_timeout, _exec_failure, _parse_time
from kubefixtures.errors import ControlError
from kubefixtures.kube._exec import ExecConnection, exit_code_of
from kubefixtures.kube.control import selector_of
from kubefixtures.kube.portforward import _wsframe as ws
from tests.unit.test_portforward_framing import server_frame


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("deployment/web", Target("deployment", "web")),
        ("deploy/web", Target("deployment", "web")),
        ("pod/web-7d9f-abc12", Target("pod", "web-7d9f-abc12")),
        ("statefulset/db", Target("statefulset", "db")),
        ("sts/db", Target("statefulset", "db")),
        ("job/migrate", Target("job", "migrate")),
        ("svc/redis", Target("service", "redis")),
        ("redis", Target("service", "redis")),
        ("Deployment/web", Target("deployment", "web")),
    ],
)
def test_targets_parse(text: str, expected: Target) -> None:
    assert parse_target(text, "exec in") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("widget/x", "unknown kind 'widget'"),
        ("deployment/Web", "'Web' is not a Kubernetes object name"),
        ("deployment/", "'' is not a Kubernetes object name"),
        ("", "a target is a string"),
        (None, "a target is a string"),
    ],
)
def test_bad_targets_name_the_verb_and_the_target(text: Any, problem: str) -> None:
    with pytest.raises(ControlError) as raised:
        parse_target(text, "restart")
    message = str(raised.value)
    assert message.startswith(f"restart {text!r}: ")
    assert problem in message
    assert "\n" not in message


def test_exit_code_comes_from_the_status_channel() -> None:
    assert exit_code_of({"metadata": {}, "status": "Success"}) == 0
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    assert exit_code_of(failure) == 3
    # The command never ran (no such executable): no exit code.
    assert exit_code_of({"status": "Failure", "message": "exec failed"}) is None


def channel_message(channel: int, data: bytes, *, fragments: int = 1) -> bytes:
    payload = bytes((channel,)) + data
    if fragments == 1:
        return server_frame(ws.OP_BINARY, payload)
    cut = len(payload) // 2
    return server_frame(ws.OP_BINARY, payload[:cut], fin=False) + server_frame(
        ws.OP_CONTINUATION, payload[cut:]
    )


def test_exec_connection_splits_the_channels() -> None:
    async def feed() -> ExecConnection:
        connection = ExecConnection(b"GET / HTTP/1.1\r\n\r\n", ws.new_key())
        connection.is_open = True
        stream = (
            channel_message(1, b"out-1 ")
            + channel_message(2, b"err")
            + channel_message(1, b"out-2", fragments=2)
            + channel_message(3, json.dumps({"status": "Success"}).encode())
        )
        for start in range(0, len(stream), 7):  # as it may arrive: in small pieces
            connection.data_received(stream[start : start + 7])
        return connection

    connection = asyncio.run(feed())
    assert bytes(connection.stdout) == b"out-1 out-2"
    assert bytes(connection.stderr) == b"err"
    assert json.loads(bytes(connection.status)) == {"status": "Success"}
    assert not connection.broken


def test_selectors_of_workloads_and_services() -> None:
    service = {"kind": "Service", "spec": {"selector": {"b": "2", "a": "1"}}}
    assert selector_of(service) == "a=1,b=2"
    deployment = {
        "kind": "Deployment",
        "spec": {
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            }
        },
    }
    assert selector_of(deployment) == "app=web,tier in (a,b),!canary"


def test_a_failed_check_names_the_command_the_code_and_the_last_stderr_lines() -> None:
    stderr = "".join(f"line {index}\n" for index in range(10)).encode()
    message = _exec_failure(
        "deployment/web (pod/web-1)", ["sh", "-c", "exit 3"], ExecResult(3, b"", stderr)
    )
    first, *rest = message.splitlines()
    assert first == "exec in deployment/web (pod/web-1): sh -c 'exit 3' exited with code 3"
    assert rest == [f"  stderr: line {index}" for index in range(5, 10)]


def test_event_times_parse_with_nanoseconds() -> None:
    assert _parse_time("2026-12-01T06:00:01Z") == datetime(2026, 12, 1, 6, 0, 1, tzinfo=UTC)
    assert _parse_time("2026-12-01T06:00:01.123456789Z").microsecond == 123456
    assert _parse_time("2026-12-01T06:00:01.024145Z") == datetime(
        2026, 12, 1, 6, 0, 1, 24145, tzinfo=UTC
    )


class _Transport(asyncio.Transport):
    """Enough of an asyncio transport for a handshake: what is written, and closing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += bytes(data)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


@pytest.mark.parametrize("chosen", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
def test_exec_offers_v5_then_v4_and_takes_the_servers_choice(chosen: str) -> None:
    async def handshake() -> tuple[ExecConnection, _Transport]:
        key = ws.new_key()
        connection = ExecConnection(b"GET /exec HTTP/1.1\r\n\r\n", key)
        transport = _Transport()
        connection.connection_made(transport)
        connection.data_received(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {ws.accept_for(key)}\r\n".encode()
            + f"Sec-WebSocket-Protocol: {chosen}\r\n\r\n".encode()
        )
        await connection.opened
        return connection, transport

    connection, transport = asyncio.run(handshake())
    assert ExecConnection.SUBPROTOCOL == "v5.channel.k8s.io, v4.channel.k8s.io"
    assert connection.subprotocol == chosen
    transport.written = b""
    # Only v5 can say that stdin ended (channel 255, then the stream's number).
    assert connection.close_stdin() is (chosen == "v5.channel.k8s.io")
    if connection.subprotocol == "v5.channel.k8s.io":
        [frame] = ws.FrameParser(from_client=True).feed(transport.written)
        assert frame.payload == bytes((255, 0))
    else:
        assert transport.written == b""


def test_exec_refuses_a_subprotocol_it_did_not_offer() -> None:
    async def handshake() -> BaseException | None:
        key = ws.new_key()
        connection = ExecConnection(b"GET /exec HTTP/1.1\r\n\r\n", key)
        connection.connection_made(_Transport())
        connection.data_received(
            b"HTTP/1.1 101 Switching Protocols\r\n"
            + f"Sec-WebSocket-Accept: {ws.accept_for(key)}\r\n".encode()
            + b"Sec-WebSocket-Protocol: channel.k8s.io\r\n\r\n"
        )
        try:
            await connection.opened
        except Exception as error:
            return error
        return None

    error = asyncio.run(handshake())
    assert error is not None
    assert "(it chose channel.k8s.io)" in str(error)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e12, "5", True])
def test_timeouts_out_of_range_are_one_line(timeout: Any) -> None:
    with pytest.raises(ControlError, match=r"^restart deployment/web: timeout "):
        _check_timeout("restart", "deployment/web", timeout)
    _check_timeout("restart", "deployment/web", 0.5)
