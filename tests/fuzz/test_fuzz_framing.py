"""Property-based fuzzing of the port-forward parsers: the WebSocket frame parser and message
assembler, and the SPDY/3.1 frame parser.

Whatever bytes arrive, in whatever pieces, a parser returns frames or raises its protocol
error, and never holds more than its caps; valid streams round-trip.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from kubefixtures.kube.portforward import _spdy as spdy
from kubefixtures.kube.portforward import _wsframe as ws
from tests.fuzz._support import mutate, raised, split

SMALL_CAP = 1024  # a WebSocket frame cap that random lengths can actually cross


# -- WebSocket ---------------------------------------------------------------------------


def server_frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    """An unmasked frame with its length in the shortest form, as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return bytes((first, 126)) + struct.pack("!H", size) + payload
    return bytes((first, 127)) + struct.pack("!Q", size) + payload


control_frames = st.one_of(
    st.builds(lambda p: ws.Frame(True, ws.OP_PING, p), st.binary(max_size=125)),
    st.builds(lambda p: ws.Frame(True, ws.OP_PONG, p), st.binary(max_size=125)),
)


@st.composite
def messages(draw: st.DrawFn) -> list[ws.Frame]:
    """One data message, maybe fragmented, with control frames between its fragments."""
    if draw(st.booleans()):
        opcode, body = ws.OP_TEXT, draw(st.text(max_size=300)).encode()
    else:
        opcode, body = ws.OP_BINARY, draw(st.binary(max_size=70_000))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    bounds = [0, *cuts, len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    frames: list[ws.Frame] = []
    for index, piece in enumerate(pieces):
        frames.append(
            ws.Frame(index == len(pieces) - 1, opcode if index == 0 else ws.OP_CONTINUATION, piece)
        )
        if index < len(pieces) - 1 and draw(st.booleans()):
            frames.append(draw(control_frames))
    return frames


@st.composite
def server_streams(draw: st.DrawFn) -> list[ws.Frame]:
    frames = [frame for message in draw(st.lists(messages(), max_size=4)) for frame in message]
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=20)).encode()[:123]
        frames.append(ws.Frame(True, ws.OP_CLOSE, struct.pack("!H", code) + reason))
    return frames


def feed_all(parser: ws.FrameParser, pieces: list[bytes]) -> list[ws.Frame]:
    frames: list[ws.Frame] = []
    for piece in pieces:
        frames += parser.feed(piece)
        assert parser.buffered <= 14 + SMALL_CAP or parser.buffered <= 14 + ws.MAX_MESSAGE_SIZE
    return frames


@given(st.data())
def test_valid_server_streams_round_trip(data: st.DataObject) -> None:
    frames = data.draw(server_streams())
    stream = b"".join(server_frame(f.fin, f.opcode, f.payload) for f in frames)
    parser = ws.FrameParser()
    assert feed_all(parser, data.draw(split(stream))) == frames
    assert parser.buffered == 0


@given(st.data())
def test_mutated_server_streams_give_frames_or_a_protocol_error(data: st.DataObject) -> None:
    frames = data.draw(server_streams())
    stream = b"".join(server_frame(f.fin, f.opcode, f.payload) for f in frames)
    for _ in range(data.draw(st.integers(1, 3))):
        stream = mutate(stream, data.draw)
    parser = ws.FrameParser(SMALL_CAP)
    pieces = data.draw(split(stream))

    def parse() -> None:
        for piece in pieces:
            parser.feed(piece)
            assert parser.buffered <= 14 + SMALL_CAP

    error = raised(ws.WebSocketProtocolError, parse)
    if error is not None:
        assert error.close_code in (
            ws.CLOSE_PROTOCOL_ERROR,
            ws.CLOSE_INVALID_DATA,
            ws.CLOSE_TOO_BIG,
        )


@given(st.binary(max_size=4096), st.data())
def test_arbitrary_bytes_give_frames_or_a_protocol_error(raw: bytes, data: st.DataObject) -> None:
    parser = ws.FrameParser(SMALL_CAP, from_client=data.draw(st.booleans()))
    pieces = data.draw(split(raw))

    def parse() -> None:
        for piece in pieces:
            for frame in parser.feed(piece):
                assert len(frame.payload) <= SMALL_CAP
                if frame.opcode in (ws.OP_CLOSE, ws.OP_PING, ws.OP_PONG):
                    assert frame.fin
                    assert len(frame.payload) <= 125
            assert parser.buffered <= 14 + SMALL_CAP

    raised(ws.WebSocketProtocolError, parse)


@given(
    st.sampled_from([ws.OP_BINARY, ws.OP_TEXT, ws.OP_PING, ws.OP_CLOSE]),
    st.lists(st.binary(max_size=40_000), max_size=3),
)
def test_client_frames_round_trip(opcode: int, parts: list[bytes]) -> None:
    payload = b"".join(parts)
    if opcode in (ws.OP_PING, ws.OP_CLOSE):
        payload = struct.pack("!H", 1000) if opcode == ws.OP_CLOSE else payload[:125]
        parts = [payload]
    if opcode == ws.OP_TEXT:
        payload = payload.decode("utf-8", "replace").encode()
        parts = [payload]
    frame = ws.encode_client_frame(opcode, *parts)
    assert ws.FrameParser(from_client=True).feed(frame) == [ws.Frame(True, opcode, payload)]


@given(
    st.lists(
        st.builds(
            ws.Frame,
            st.booleans(),
            st.sampled_from([ws.OP_CONTINUATION, ws.OP_BINARY, ws.OP_TEXT]),
            st.binary(max_size=64),
        ),
        max_size=20,
    )
)
def test_message_assembly_stays_within_its_cap(frames: list[ws.Frame]) -> None:
    assembler = ws.MessageAssembler(max_size=100)

    def assemble() -> None:
        for frame in frames:
            message = assembler.add(frame)
            if message is not None:
                assert len(message[1]) <= 100

    raised(ws.WebSocketProtocolError, assemble)


# -- SPDY ----------------------------------------------------------------------------------

header_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-:", min_size=1, max_size=20)
header_values = st.lists(
    st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), min_size=1, max_size=40),
    max_size=3,
).map("\x00".join)
header_dicts = st.dictionaries(header_names, header_values, max_size=8)


@dataclass
class Session:
    """A server's session: the bytes, and the frames they must parse to."""

    data: bytes
    frames: list[spdy.Frame]


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)
    stream_ids = st.integers(1, 2**31 - 1)
    data = b""
    frames: list[spdy.Frame] = []
    for kind in draw(st.lists(st.sampled_from(["reply", "data", "rst", "ping", "goaway"]))):
        if kind == "reply":
            stream_id, headers = draw(stream_ids), draw(header_dicts)
            block = deflate.compress(spdy.encode_header_block(headers))
            block += deflate.flush(zlib.Z_SYNC_FLUSH)
            body = struct.pack("!I", stream_id) + block
            data += struct.pack("!II", 0x80030002, len(body)) + body
            frames.append(
                spdy.ControlFrame(spdy.TYPE_SYN_REPLY, 0, stream_id, headers=tuple(headers.items()))
            )
        elif kind == "data":
            stream_id, fin, payload = (
                draw(stream_ids),
                draw(st.booleans()),
                draw(st.binary(max_size=33_000)),
            )
            data += spdy.data_frame_header(stream_id, len(payload), fin=fin) + payload
            frames.append(spdy.DataFrame(stream_id, fin, payload))
        elif kind == "rst":
            stream_id, status = draw(stream_ids), draw(st.integers(1, 11))
            data += spdy.encode_rst_stream(stream_id, status)
            frames.append(spdy.ControlFrame(spdy.TYPE_RST_STREAM, 0, stream_id, status))
        elif kind == "ping":
            ping_id = draw(st.integers(0, 2**32 - 1))
            data += spdy.encode_ping(ping_id)
            frames.append(spdy.ControlFrame(spdy.TYPE_PING, 0, ping_id))
        else:
            last = draw(stream_ids)
            data += spdy.encode_goaway(last, 0)
            frames.append(spdy.ControlFrame(spdy.TYPE_GOAWAY, 0, last, 0))
    return Session(data, frames)


def spdy_feed(parser: spdy.FrameParser, pieces: list[bytes]) -> list[spdy.Frame]:
    frames: list[spdy.Frame] = []
    for piece in pieces:
        frames += parser.feed(piece)
        assert parser.buffered <= 8 + spdy.MAX_FRAME_LENGTH
    return frames


@given(st.data())
def test_valid_spdy_sessions_round_trip(data: st.DataObject) -> None:
    session = data.draw(sessions())
    parser = spdy.FrameParser()
    assert spdy_feed(parser, data.draw(split(session.data))) == session.frames
    assert parser.buffered == 0


@given(st.data())
def test_mutated_spdy_sessions_give_frames_or_a_protocol_error(data: st.DataObject) -> None:
    session = data.draw(sessions())
    stream = session.data
    for _ in range(data.draw(st.integers(1, 3))):
        stream = mutate(stream, data.draw)
    pieces = data.draw(split(stream))

    def parse() -> None:
        for frame in spdy_feed(spdy.FrameParser(), pieces):
            if isinstance(frame, spdy.ControlFrame):
                assert len(frame.headers) <= spdy.MAX_HEADER_COUNT

    raised(spdy.SpdyProtocolError, parse)


@given(st.binary(max_size=4096), st.data())
def test_arbitrary_bytes_give_spdy_frames_or_a_protocol_error(
    raw: bytes, data: st.DataObject
) -> None:
    pieces = data.draw(split(raw))
    raised(spdy.SpdyProtocolError, lambda: spdy_feed(spdy.FrameParser(), pieces))


@given(st.binary(max_size=2048))
def test_arbitrary_header_blocks_decode_or_give_a_protocol_error(block: bytes) -> None:
    decoded: list[tuple[tuple[str, str], ...]] = []
    if raised(spdy.SpdyProtocolError, lambda: decoded.append(spdy.decode_header_block(block))):
        return
    [pairs] = decoded
    assert len(pairs) <= spdy.MAX_HEADER_COUNT
    assert len({name for name, _ in pairs}) == len(pairs)


@given(header_dicts)
def test_header_blocks_round_trip(headers: dict[str, str]) -> None:
    assert spdy.decode_header_block(spdy.encode_header_block(headers)) == tuple(headers.items())


@given(st.binary(min_size=1, max_size=512), st.integers(1, 64))
def test_inflation_never_passes_the_cap(seed: bytes, repeat_kib: int) -> None:
    # Highly compressible blocks around and far beyond the cap: parsed only if within it.
    value = (seed * (repeat_kib * 1024 // len(seed) + 1))[: repeat_kib * 1024]
    block = spdy.encode_header_block({"x": value.decode("latin-1")})
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=spdy.DICTIONARY)
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack("!I", 1) + compressed
    frame = struct.pack("!II", 0x80030002, len(body)) + body
    error = raised(spdy.SpdyProtocolError, lambda: spdy.FrameParser().feed(frame))
    # Within the cap it parses, unless the random bytes make a value that is no header value.
    if len(block) > spdy.MAX_HEADER_BLOCK:
        assert error is not None
        assert "past the limit" in str(error)
    elif error is not None:
        assert "past the limit" not in str(error)
