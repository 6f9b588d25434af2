"""SPDY/3.1 frames from the server: caps on what is buffered and inflated, and malformed
name/value blocks (issue 12)."""

from __future__ import annotations

import struct
import zlib

import pytest

from kubefixtures.kube.portforward import _spdy as spdy


def deflater() -> zlib._Compress:
    return zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)


def syn_reply(deflate: zlib._Compress, block: bytes, stream_id: int = 1) -> bytes:
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack("!I", stream_id) + compressed
    return struct.pack("!II", 0x80030002, len(body)) + body


def raw_block(*pairs: tuple[bytes, bytes], count: int | None = None) -> bytes:
    parts = [struct.pack("!I", len(pairs) if count is None else count)]
    for name, value in pairs:
        parts += [struct.pack("!I", len(name)), name, struct.pack("!I", len(value)), value]
    return b"".join(parts)


def rejects(data: bytes, match: str) -> None:
    with pytest.raises(spdy.SpdyProtocolError, match=match) as raised:
        spdy.FrameParser().feed(data)
    assert "\n" not in str(raised.value)


def test_header_block_inflation_is_capped() -> None:
    # 256 MiB of zeros deflate to about 254 KiB; the parser must stop at its cap.
    bomb = raw_block((b"x", bytes(spdy.MAX_HEADER_BLOCK * 4)))
    frame = syn_reply(deflater(), bomb)
    assert len(frame) < 1024
    rejects(frame, "inflates past the limit")


def test_header_block_at_the_cap_is_accepted() -> None:
    block = raw_block((b"x", b"v" * (spdy.MAX_HEADER_BLOCK - 13)))
    assert len(block) == spdy.MAX_HEADER_BLOCK
    [reply] = spdy.FrameParser().feed(syn_reply(deflater(), block))
    assert isinstance(reply, spdy.ControlFrame)
    assert reply.headers == (("x", "v" * (spdy.MAX_HEADER_BLOCK - 13)),)


def test_frame_length_is_capped_before_the_body_arrives() -> None:
    header = spdy.data_frame_header(1, spdy.MAX_FRAME_LENGTH + 1)
    rejects(header, "exceeds the limit")


def test_header_count_is_capped() -> None:
    block = raw_block(*((f"h{i}".encode(), b"") for i in range(spdy.MAX_HEADER_COUNT + 1)))
    rejects(syn_reply(deflater(), block), "headers announced")


def test_header_count_beyond_the_block_is_rejected_without_looping() -> None:
    rejects(syn_reply(deflater(), raw_block(count=50)), "50 headers announced")


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (b"\x00\x00", "shorter than its header count"),
        (raw_block((b"a", b"b"))[:-1], "overruns"),
        (raw_block((b"a", b"b")) + b"\x00", "bytes after the last header"),
        (raw_block((b"", b"b")), "empty header name"),
        (raw_block((b"Host", b"b")), "not lowercase"),
        (raw_block((b"a", b"1"), (b"a", b"2")), "twice"),
        (raw_block((b"a", b"\x00x")), "empty value"),
        (raw_block((b"a", b"x\x00")), "empty value"),
        (raw_block((b"a", b"x\x00\x00y")), "empty value"),
        (raw_block((b"a", b"\xff")), "not UTF-8"),
    ],
    ids=[
        "short",
        "truncated",
        "trailing",
        "empty-name",
        "uppercase",
        "duplicate",
        "leading-nul",
        "trailing-nul",
        "double-nul",
        "not-utf8",
    ],
)
def test_malformed_name_value_blocks_are_rejected(block: bytes, match: str) -> None:
    rejects(syn_reply(deflater(), block), match)


def test_multiple_values_and_empty_values_pass() -> None:
    block = raw_block((b"a", b"x\x00y"), (b"b", b""))
    [reply] = spdy.FrameParser().feed(syn_reply(deflater(), block))
    assert isinstance(reply, spdy.ControlFrame)
    assert reply.headers == (("a", "x\x00y"), ("b", ""))


@pytest.mark.parametrize(
    ("frame_type", "length"),
    [
        (spdy.TYPE_RST_STREAM, 4),
        (spdy.TYPE_RST_STREAM, 12),
        (spdy.TYPE_PING, 8),
        (spdy.TYPE_GOAWAY, 4),
        (spdy.TYPE_WINDOW_UPDATE, 9),
    ],
)
def test_fixed_size_control_frames_of_another_size_are_rejected(
    frame_type: int, length: int
) -> None:
    frame = struct.pack("!II", 0x80030000 | frame_type, length) + bytes(length)
    rejects(frame, f"type {frame_type} has {length} bytes")


def test_settings_length_must_match_its_entries() -> None:
    good = struct.pack("!III", 0x80030004, 12, 1) + bytes(8)
    [settings] = spdy.FrameParser().feed(good)
    assert isinstance(settings, spdy.ControlFrame)
    assert settings.type == spdy.TYPE_SETTINGS
    rejects(struct.pack("!III", 0x80030004, 12, 2) + bytes(8), "SETTINGS")


def test_truncated_syn_stream_is_rejected() -> None:
    rejects(struct.pack("!III", 0x80030001, 6, 2) + bytes(2), "truncated")


def test_one_compression_context_spans_the_session() -> None:
    # Later blocks refer back to earlier ones (and to the dictionary): each inflates only
    # after its predecessors, in one context.
    deflate = deflater()
    blocks = [spdy.encode_header_block({"streamtype": "data", "port": str(p)}) for p in range(3)]
    session = b"".join(syn_reply(deflate, block, 2 * i + 1) for i, block in enumerate(blocks))
    frames = spdy.FrameParser().feed(session)
    assert [f.headers for f in frames if isinstance(f, spdy.ControlFrame)] == [
        (("streamtype", "data"), ("port", str(p))) for p in range(3)
    ]
    # The first block names the SPDY/3 dictionary in its zlib header (FDICT, DICTID).
    first_block = session[12 : 8 + struct.unpack_from("!I", session, 4)[0]]
    assert first_block[1] & 0x20
    assert struct.unpack_from("!I", first_block, 2)[0] == zlib.adler32(spdy.DICTIONARY)
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(first_block)


def test_a_block_that_ends_the_compression_stream_is_rejected() -> None:
    deflate = deflater()
    compressed = deflate.compress(raw_block()) + deflate.flush(zlib.Z_FINISH)
    body = struct.pack("!I", 1) + compressed
    rejects(struct.pack("!II", 0x80030002, len(body)) + body, "ended the session")
