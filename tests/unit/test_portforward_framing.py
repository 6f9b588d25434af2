"""WebSocket and SPDY framing of the port forwarder, and the v4 channel decoding."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from kubefixtures.kube.portforward import _spdy as spdy
from kubefixtures.kube.portforward import _wsframe as ws
from kubefixtures.kube.portforward._v4 import (
    DATA_CHANNEL,
    ERROR_CHANNEL,
    ChannelDecoder,
    encode_data,
)


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """An unmasked frame, as a server sends it."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return bytes((first, 126)) + struct.pack("!H", size) + payload
    return bytes((first, 127)) + struct.pack("!Q", size) + payload


def test_accept_key_matches_the_rfc_example() -> None:
    assert ws.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 65535, 65536, 300_000])
def test_client_frames_are_masked_and_parse_back(size: int) -> None:
    payload = os.urandom(size)
    frame = ws.encode_client_frame(ws.OP_BINARY, payload[: size // 2], payload[size // 2 :])
    assert frame[0] == 0x80 | ws.OP_BINARY
    assert frame[1] & 0x80, "client frames must be masked"
    if size >= 16:
        assert payload not in frame
    [parsed] = ws.FrameParser(from_client=True).feed(frame)
    assert parsed == ws.Frame(True, ws.OP_BINARY, payload)


def test_mask_is_its_own_inverse() -> None:
    data = os.urandom(1001)
    key = b"\x01\x80\xff\x33"
    masked = ws.apply_mask(data, key)
    assert masked != data
    assert ws.apply_mask(masked, key) == data
    assert masked[:4] == bytes(b ^ k for b, k in zip(data[:4], key, strict=True))


def test_parser_handles_frames_split_anywhere() -> None:
    stream = server_frame(ws.OP_BINARY, b"a" * 70_000) + server_frame(ws.OP_PING, b"hi")
    stream += server_frame(ws.OP_BINARY, b"xyz", fin=False) + server_frame(ws.OP_CONTINUATION, b"!")
    parser = ws.FrameParser()
    frames: list[ws.Frame] = []
    for start in range(0, len(stream), 7):
        frames += parser.feed(stream[start : start + 7])
    assert [(f.opcode, len(f.payload), f.fin) for f in frames] == [
        (ws.OP_BINARY, 70_000, True),
        (ws.OP_PING, 2, True),
        (ws.OP_BINARY, 3, False),
        (ws.OP_CONTINUATION, 1, True),
    ]


def test_parser_rejects_reserved_bits() -> None:
    with pytest.raises(ws.WebSocketProtocolError, match="reserved bits"):
        ws.FrameParser().feed(b"\xc2\x00")


def test_assembler_joins_fragments() -> None:
    assembler = ws.MessageAssembler()
    assert assembler.add(ws.Frame(False, ws.OP_BINARY, b"ab")) is None
    assert assembler.add(ws.Frame(True, ws.OP_CONTINUATION, b"cd")) == (ws.OP_BINARY, b"abcd")
    with pytest.raises(ws.WebSocketProtocolError):
        assembler.add(ws.Frame(True, ws.OP_CONTINUATION, b"x"))


# -- SPDY -------------------------------------------------------------------------------


def test_dictionary_is_the_spdy3_one() -> None:
    # Chromium's kV3DictionarySize; the text ends with the spec's last entry.
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_syn_stream_layout_and_headers_round_trip() -> None:
    compressor = spdy.Compressor()
    frames = [
        compressor.syn_stream(1, {"streamType": "error", "port": "8080", "requestID": "0"}),
        compressor.syn_stream(3, {"streamtype": "data", "port": "8080", "requestid": "0"}),
    ]
    first_word, flags_length = struct.unpack_from("!II", frames[0])
    assert first_word == 0x80030001  # control bit, version 3, SYN_STREAM
    assert flags_length >> 24 == 0
    assert (flags_length & 0xFFFFFF) == len(frames[0]) - 8
    # A server inflates every block with one context for the session.
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    blocks = [spdy.decode_header_block(inflate.decompress(frame[18:])) for frame in frames]
    assert blocks == [
        (("streamtype", "error"), ("port", "8080"), ("requestid", "0")),
        (("streamtype", "data"), ("port", "8080"), ("requestid", "0")),
    ]


def reply_frame(deflate: zlib._Compress, stream_id: int, headers: dict[str, str]) -> bytes:
    block = deflate.compress(spdy.encode_header_block(headers)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack("!I", stream_id) + block
    return struct.pack("!II", 0x80030002, len(body)) + body


def test_parser_reads_a_server_session() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)
    session = reply_frame(deflate, 1, {})
    session += reply_frame(deflate, 3, {"x": "y"})
    session += spdy.data_frame_header(3, 5) + b"hello"
    session += spdy.data_frame_header(3, 0, fin=True)
    session += spdy.encode_rst_stream(1, spdy.RST_CANCEL)
    session += spdy.encode_ping(2)
    session += spdy.encode_goaway(7)
    session += struct.pack("!IIII", 0x80030009, 8, 3, 65536)  # WINDOW_UPDATE: ignored
    parser = spdy.FrameParser()
    frames: list[spdy.Frame] = []
    for start in range(0, len(session), 5):
        frames += parser.feed(session[start : start + 5])
    assert frames == [
        spdy.ControlFrame(spdy.TYPE_SYN_REPLY, 0, 1),
        spdy.ControlFrame(spdy.TYPE_SYN_REPLY, 0, 3, headers=(("x", "y"),)),
        spdy.DataFrame(3, False, b"hello"),
        spdy.DataFrame(3, True, b""),
        spdy.ControlFrame(spdy.TYPE_RST_STREAM, 0, 1, spdy.RST_CANCEL),
        spdy.ControlFrame(spdy.TYPE_PING, 0, 2),
        spdy.ControlFrame(spdy.TYPE_GOAWAY, 0, 7, 0),
        spdy.ControlFrame(spdy.TYPE_WINDOW_UPDATE, 0, 3, 65536),
    ]


def test_parser_rejects_other_versions_and_garbage_headers() -> None:
    with pytest.raises(spdy.SpdyProtocolError, match="version 2"):
        spdy.FrameParser().feed(struct.pack("!IIi", 0x80020006, 4, 1))
    bogus = struct.pack("!II", 0x80030002, 8) + struct.pack("!I", 1) + b"junk"
    with pytest.raises(spdy.SpdyProtocolError, match="inflate"):
        spdy.FrameParser().feed(bogus)


def test_data_frame_header() -> None:
    assert spdy.data_frame_header(5, 300, fin=True) == bytes.fromhex("00000005 01 00012c")


# -- v4.channel.k8s.io ----------------------------------------------------------------------


def test_v4_strips_the_port_header_once_per_channel() -> None:
    decoder = ChannelDecoder()
    port = struct.pack("<H", 8080)
    frames = [
        ws.Frame(True, ws.OP_BINARY, bytes([DATA_CHANNEL]) + port),
        ws.Frame(True, ws.OP_BINARY, bytes([ERROR_CHANNEL]) + port),
        ws.Frame(True, ws.OP_BINARY, bytes([DATA_CHANNEL]) + b"\x90\x1fpayload"),
        ws.Frame(True, ws.OP_BINARY, bytes([ERROR_CHANNEL]) + b"dial failed"),
    ]
    assert [decoder.feed(frame) for frame in frames] == [
        (DATA_CHANNEL, b""),
        (ERROR_CHANNEL, b""),
        (DATA_CHANNEL, b"\x90\x1fpayload"),  # bytes that look like a port are data now
        (ERROR_CHANNEL, b"dial failed"),
    ]
    assert decoder.port == 8080


def test_v4_header_may_arrive_with_data() -> None:
    decoder = ChannelDecoder()
    assert decoder.feed(ws.Frame(True, ws.OP_BINARY, b"\x00\x50\x00GET")) == (DATA_CHANNEL, b"GET")


def test_v4_data_is_sent_on_channel_zero() -> None:
    [frame] = ws.FrameParser(from_client=True).feed(encode_data(b"ping"))
    assert frame.payload == b"\x00ping"
