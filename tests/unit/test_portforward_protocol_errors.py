"""A server that breaks the WebSocket or SPDY protocol fails its tunnel with a close code and
one line; the forward heals with a new tunnel for the next connection (issue 12)."""

from __future__ import annotations

import errno
import logging
import struct
import time
from collections.abc import Callable

import pytest

from kubefixtures.kube.portforward import _spdy as spdy
from kubefixtures.kube.portforward import _wsframe as ws
from tests.unit.test_portforward_fakeapi import (
    FakeApiServer,
    api,  # noqa: F401 (the fixture)
    echo,
    forward,
    server_frame_header,
)


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def echo_or_reset(port: int, payload: bytes) -> bytes:
    """What echo() receives; b"" when the connection is reset (timeouts still raise)."""
    try:
        return echo(port, payload)
    except OSError as error:
        if error.errno not in (errno.ECONNRESET, errno.ENOTCONN):
            raise
        return b""


BREACHES = {
    # A masked frame from the server (RFC 6455 5.1).
    "masked": (
        bytes((0x82, 0x80 | 2)) + b"\x00\x00\x00\x00" + b"hi",
        ws.CLOSE_PROTOCOL_ERROR,
        "masked frame from the server",
    ),
    # A reserved opcode (5.2).
    "opcode": (server_frame_header(0, 0x83), ws.CLOSE_PROTOCOL_ERROR, "reserved opcode"),
    # A frame announcing more than a message may hold: refused before it is buffered.
    "too-big": (
        bytes((0x82, 127)) + struct.pack("!Q", ws.MAX_MESSAGE_SIZE + 1),
        ws.CLOSE_TOO_BIG,
        "exceeds the limit",
    ),
    # A SPDY frame longer than the session allows, inside a valid WebSocket frame.
    "spdy": (
        server_frame_header(8) + spdy.data_frame_header(3, spdy.MAX_FRAME_LENGTH + 1),
        ws.CLOSE_PROTOCOL_ERROR,
        "SPDY: frame of",
    ),
}


@pytest.mark.parametrize("breach", BREACHES)
def test_a_protocol_breach_fails_the_tunnel_and_the_forward_heals(
    api: FakeApiServer,  # noqa: F811
    breach: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, close_code, message = BREACHES[breach]
    api.protocol_breach = data
    with caplog.at_level(logging.WARNING, "kubefixtures.portforward"), forward(api) as pf:
        # The first connection's tunnel breaks: the connection is reset, not hung. The reset
        # may come before the client's shutdown (ENOTCONN) or its recv (ECONNRESET).
        assert echo_or_reset(pf.local_port, b"first") == b""
        # Waits for this tunnel's close frame; another tunnel's (a normal 1000) would not do.
        wait_for(lambda: close_code in api.close_codes)
        # The next connection gets a new tunnel and works.
        assert echo(pf.local_port, b"second") == b"second"
    assert api.close_codes == [close_code]  # the second tunnel is aborted by stop()
    failures = [r.getMessage() for r in caplog.records if message in r.getMessage()]
    assert len(failures) == 1
    assert "\n" not in failures[0]
    assert f"(WebSocket close {close_code})" in failures[0]
