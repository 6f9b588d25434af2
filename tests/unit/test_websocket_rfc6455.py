"""RFC 6455's rules on frames from the server, one test per rule (issue 12)."""

from __future__ import annotations

import struct

import pytest

from kubefixtures.kube.portforward import _wsframe as ws


def frame(first: int, payload: bytes = b"", *, length: bytes | None = None) -> bytes:
    """A raw server frame: `first` is the FIN/RSV/opcode byte; `length` overrides the
    length field (to write non-minimal or oversized lengths)."""
    if length is None:
        length = (
            bytes((len(payload),))
            if len(payload) < 126
            else b"\x7e" + struct.pack("!H", len(payload))
        )
    return bytes((first,)) + length + payload


FIN = 0x80


def rejects(data: bytes, match: str, code: int = ws.CLOSE_PROTOCOL_ERROR) -> None:
    with pytest.raises(ws.WebSocketProtocolError, match=match) as raised:
        ws.FrameParser().feed(data)
    assert raised.value.close_code == code
    assert "\n" not in str(raised.value)


def test_masked_server_frame_is_rejected() -> None:  # 5.1
    masked = bytes((FIN | ws.OP_BINARY, 0x80 | 2)) + b"\x01\x02\x03\x04" + b"ab"
    rejects(masked, "masked frame from the server")


def test_fragmented_control_frame_is_rejected() -> None:  # 5.5
    rejects(frame(ws.OP_PING, b"hi"), "control frame .* fragmented")


def test_control_frame_over_125_bytes_is_rejected() -> None:  # 5.5
    rejects(frame(FIN | ws.OP_PING, b"x" * 126), "over 125 bytes")


def test_control_frame_length_is_checked_before_its_payload_arrives() -> None:
    rejects(bytes((FIN | ws.OP_PONG, 126)), "over 125 bytes")


@pytest.mark.parametrize("opcode", [*range(0x3, 0x8), *range(0xB, 0x10)])
def test_reserved_opcodes_are_rejected(opcode: int) -> None:  # 5.2
    rejects(frame(FIN | opcode), f"reserved opcode {opcode:#x}")


@pytest.mark.parametrize("bit", [0x40, 0x20, 0x10])
def test_reserved_bits_without_an_extension_are_rejected(bit: int) -> None:  # 5.2
    rejects(frame(FIN | bit | ws.OP_BINARY), "reserved bits")


def test_one_byte_close_payload_is_rejected() -> None:  # 5.5.1
    rejects(frame(FIN | ws.OP_CLOSE, b"\x03"), "1-byte payload")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes_are_rejected(code: int) -> None:  # 7.4
    rejects(frame(FIN | ws.OP_CLOSE, struct.pack("!H", code)), f"invalid code {code}")


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_valid_close_codes_pass(code: int) -> None:
    payload = struct.pack("!H", code) + "bye ✓".encode()
    assert ws.FrameParser().feed(frame(FIN | ws.OP_CLOSE, payload)) == [
        ws.Frame(True, ws.OP_CLOSE, payload)
    ]


def test_close_reason_must_be_utf8() -> None:  # 5.5.1
    rejects(frame(FIN | ws.OP_CLOSE, b"\x03\xe8\xff"), "reason", ws.CLOSE_INVALID_DATA)


def test_continuation_without_a_message_is_rejected() -> None:  # 5.4
    rejects(frame(FIN | ws.OP_CONTINUATION, b"x"), "continuation frame without")


def test_new_data_frame_inside_a_fragmented_message_is_rejected() -> None:  # 5.4
    rejects(frame(ws.OP_BINARY, b"a") + frame(FIN | ws.OP_BINARY, b"b"), "inside a fragmented")


def test_control_frames_may_interleave_with_fragments() -> None:  # 5.4
    stream = frame(ws.OP_BINARY, b"a") + frame(FIN | ws.OP_PING) + frame(FIN | 0, b"b")
    frames = ws.FrameParser().feed(stream)
    assert [(f.fin, f.opcode, f.payload) for f in frames] == [
        (False, ws.OP_BINARY, b"a"),
        (True, ws.OP_PING, b""),
        (True, ws.OP_CONTINUATION, b"b"),
    ]


@pytest.mark.parametrize(
    "length",
    [b"\x7e" + struct.pack("!H", 125), b"\x7f" + struct.pack("!Q", 65535)],
    ids=["16-bit", "64-bit"],
)
def test_non_minimal_lengths_are_rejected(length: bytes) -> None:  # 5.2
    rejects(frame(FIN | ws.OP_BINARY, length=length), "shortest form")


def test_64_bit_length_with_the_top_bit_is_rejected() -> None:  # 5.2
    rejects(frame(FIN | ws.OP_BINARY, length=b"\x7f" + struct.pack("!Q", 1 << 63)), "top bit")


def test_invalid_utf8_text_is_rejected_as_it_arrives() -> None:  # 8.1
    parser = ws.FrameParser()
    # A sequence split across fragments is fine...
    euro = "€".encode()
    assert len(parser.feed(frame(ws.OP_TEXT, euro[:1]) + frame(FIN, euro[1:]))) == 2
    # ...a bad byte fails the message at once, before it ends.
    with pytest.raises(ws.WebSocketProtocolError, match="UTF-8") as raised:
        parser.feed(frame(ws.OP_TEXT, b"ok\xc3\x28"))
    assert raised.value.close_code == ws.CLOSE_INVALID_DATA


def test_text_message_ending_mid_sequence_is_rejected() -> None:  # 8.1
    rejects(frame(FIN | ws.OP_TEXT, "€".encode()[:2]), "UTF-8", ws.CLOSE_INVALID_DATA)


def test_frame_over_the_limit_is_rejected_before_it_is_buffered() -> None:
    too_big = ws.MAX_MESSAGE_SIZE + 1
    rejects(
        frame(FIN | ws.OP_BINARY, length=b"\x7f" + struct.pack("!Q", too_big)),
        "exceeds the limit",
        ws.CLOSE_TOO_BIG,
    )


def test_message_assembly_is_capped() -> None:
    assembler = ws.MessageAssembler(max_size=10)
    assert assembler.add(ws.Frame(False, ws.OP_BINARY, b"x" * 6)) is None
    with pytest.raises(ws.WebSocketProtocolError, match="exceeds the limit") as raised:
        assembler.add(ws.Frame(False, ws.OP_CONTINUATION, b"x" * 5))
    assert raised.value.close_code == ws.CLOSE_TOO_BIG


def test_message_at_the_cap_is_assembled() -> None:
    assembler = ws.MessageAssembler(max_size=10)
    assert assembler.add(ws.Frame(False, ws.OP_BINARY, b"x" * 6)) is None
    assert assembler.add(ws.Frame(True, ws.OP_CONTINUATION, b"y" * 4)) == (
        ws.OP_BINARY,
        b"xxxxxxyyyy",
    )
