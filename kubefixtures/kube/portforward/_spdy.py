"""SPDY/3.1 framing, the subset the Kubernetes port-forward protocol uses.

The apiserver's `SPDY/3.1+portforward.k8s.io` WebSocket subprotocol carries a plain SPDY/3.1
session (the one kubectl speaks) inside WebSocket binary messages; the far end is the
kubelet's stream server. Every forwarded TCP connection is a pair of SPDY streams (an error
stream and a data stream, paired by a `requestID` header), so connections after the first
cost one round trip to the kubelet instead of a TLS handshake and an HTTP upgrade.

Pure framing, no I/O. Header blocks are zlib-compressed with one context per direction
for the whole session (SPDY/3 section 2.6.10), so every received header block must be
inflated in order, even the empty ones, or later ones become garbage.

What the peer sends is bounded before it is buffered or inflated: a frame holds at most
`MAX_FRAME_LENGTH` bytes, a header block inflates to at most `MAX_HEADER_BLOCK` bytes and
names at most `MAX_HEADER_COUNT` headers. Anything malformed or past a limit is a
`SpdyProtocolError`, a session error: the tunnel sends GOAWAY and closes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3

TYPE_SYN_STREAM = 1
TYPE_SYN_REPLY = 2
TYPE_RST_STREAM = 3
TYPE_SETTINGS = 4
TYPE_PING = 6
TYPE_GOAWAY = 7
TYPE_HEADERS = 8
TYPE_WINDOW_UPDATE = 9

FLAG_FIN = 0x01

RST_PROTOCOL_ERROR = 1
RST_CANCEL = 5
GOAWAY_PROTOCOL_ERROR = 1

MAX_DATA_LENGTH = (1 << 24) - 1
# The kubelet's data frames carry at most 32 KiB and its header blocks a few short headers;
# these limits leave ample headroom while keeping a broken or hostile peer from making us
# buffer 16 MiB frames or inflate a small frame into hundreds of megabytes.
MAX_FRAME_LENGTH = 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024
MAX_HEADER_COUNT = 100
# The fixed body lengths of the control frames that have one.
_CONTROL_LENGTHS = {TYPE_RST_STREAM: 8, TYPE_PING: 4, TYPE_GOAWAY: 8, TYPE_WINDOW_UPDATE: 8}

_HEADER = struct.Struct("!IB3s")  # first word, flags, 24-bit length
_U32 = struct.Struct("!I")
_CONTROL_BIT = 0x80000000
_ID_MASK = 0x7FFFFFFF


def _build_dictionary() -> bytes:
    # The header-compression dictionary of SPDY/3 (draft 3, section 2.6.10.1): these
    # names and values each prefixed by a 32-bit length, then a run of raw text.
    words = (
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    )
    prefixed = b"".join(_U32.pack(len(word)) + word.encode("ascii") for word in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode("ascii")


DICTIONARY = _build_dictionary()


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3.1."""


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    fin: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """A control frame; `stream_id` is the frame's first 31-bit field where it has one
    (RST_STREAM, SYN_*, HEADERS, WINDOW_UPDATE, GOAWAY's last good stream), the ping id for
    PING. `value` is RST_STREAM's status or GOAWAY's status. `headers` for SYN_*/HEADERS."""

    type: int
    flags: int
    stream_id: int
    value: int = 0
    headers: tuple[tuple[str, str], ...] = ()


Frame = DataFrame | ControlFrame


def encode_header_block(pairs: dict[str, str]) -> bytes:
    """An uncompressed name/value block; names must be lowercase (the Go framer rejects
    others) and the apiserver reads them case-insensitively."""
    parts = [_U32.pack(len(pairs))]
    for name, value in pairs.items():
        raw_name = name.lower().encode("utf-8")
        raw_value = value.encode("utf-8")
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of an inflated block; SPDY/3 section 2.6.10's rules apply:
    every length within the block and nothing after it, non-empty lowercase names, no name
    twice, values that neither start nor end with a NUL nor hold two in a row."""
    if len(block) < 4:
        raise SpdyProtocolError("malformed header block: shorter than its header count")
    (count,) = _U32.unpack_from(block, 0)
    # Each pair takes at least 8 bytes (two lengths), which bounds the loop by the block.
    if count > MAX_HEADER_COUNT or count * 8 > len(block) - 4:
        raise SpdyProtocolError(f"malformed header block: {count} headers announced")
    position = 4
    pairs: list[tuple[str, str]] = []
    names: set[str] = set()
    for _ in range(count):
        name, position = _length_prefixed(block, position)
        value, position = _length_prefixed(block, position)
        if not name:
            raise SpdyProtocolError("malformed header block: an empty header name")
        if name != name.lower():
            raise SpdyProtocolError(f"malformed header block: header name {name!r} not lowercase")
        if name in names:
            raise SpdyProtocolError(f"malformed header block: header {name!r} twice")
        if value.startswith("\0") or value.endswith("\0") or "\0\0" in value:
            raise SpdyProtocolError(f"malformed header block: header {name!r} has an empty value")
        names.add(name)
        pairs.append((name, value))
    if position != len(block):
        raise SpdyProtocolError("malformed header block: bytes after the last header")
    return tuple(pairs)


def _length_prefixed(block: bytes, position: int) -> tuple[str, int]:
    """The UTF-8 string at `position` with its 32-bit length, and the position after it."""
    if len(block) - position < 4:
        raise SpdyProtocolError("malformed header block: truncated")
    (size,) = _U32.unpack_from(block, position)
    position += 4
    if size > len(block) - position:
        raise SpdyProtocolError(f"malformed header block: a {size}-byte string overruns it")
    try:
        text = block[position : position + size].decode("utf-8")
    except UnicodeDecodeError:
        raise SpdyProtocolError("malformed header block: not UTF-8") from None
    return text, position + size


def data_frame_header(stream_id: int, length: int, *, fin: bool = False) -> bytes:
    return _HEADER.pack(stream_id & _ID_MASK, FLAG_FIN if fin else 0, length.to_bytes(3, "big"))


def _control(frame_type: int, flags: int, body: bytes) -> bytes:
    first = _CONTROL_BIT | (VERSION << 16) | frame_type
    return _HEADER.pack(first, flags, len(body).to_bytes(3, "big")) + body


def encode_rst_stream(stream_id: int, status: int = RST_CANCEL) -> bytes:
    return _control(TYPE_RST_STREAM, 0, struct.pack("!II", stream_id & _ID_MASK, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(TYPE_PING, 0, _U32.pack(ping_id))


def encode_goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return _control(TYPE_GOAWAY, 0, struct.pack("!II", last_good_stream_id & _ID_MASK, status))


class Compressor:
    """The sending side's header compression context (one per session)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(
            zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zdict=DICTIONARY
        )

    def syn_stream(
        self, stream_id: int, headers: dict[str, str], *, fin: bool = False, priority: int = 0
    ) -> bytes:
        block = self._zlib.compress(encode_header_block(headers))
        block += self._zlib.flush(zlib.Z_SYNC_FLUSH)
        fields = struct.pack("!IIBB", stream_id & _ID_MASK, 0, (priority & 0x7) << 5, 0)
        return _control(TYPE_SYN_STREAM, FLAG_FIN if fin else 0, fields + block)


class FrameParser:
    """Splits the session's byte stream from the server into frames (feed whatever arrives).

    Data payloads of the kubelet's frames are at most 32 KiB, so copying each one out is
    cheap next to the socket work around it.
    """

    __slots__ = ("_buffer", "_inflate")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (at most 8 + `MAX_FRAME_LENGTH`)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 8:
            first, flags, raw_length = _HEADER.unpack_from(buffer, offset)
            length = int.from_bytes(raw_length, "big")
            if length > MAX_FRAME_LENGTH:
                raise SpdyProtocolError(
                    f"frame of {length} bytes exceeds the limit of {MAX_FRAME_LENGTH}"
                )
            if end - offset - 8 < length:
                break
            body = bytes(buffer[offset + 8 : offset + 8 + length])
            offset += 8 + length
            if first & _CONTROL_BIT:
                frame = self._control(first, flags, body)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(DataFrame(first & _ID_MASK, bool(flags & FLAG_FIN), body))
        if offset:
            del buffer[:offset]
        return frames

    def _control(self, first: int, flags: int, body: bytes) -> ControlFrame | None:
        version = (first >> 16) & 0x7FFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        frame_type = first & 0xFFFF
        expected = _CONTROL_LENGTHS.get(frame_type)
        if expected is not None and len(body) != expected:
            raise SpdyProtocolError(
                f"control frame of type {frame_type} has {len(body)} bytes, not {expected}"
            )
        if frame_type == TYPE_SETTINGS and (
            len(body) < 4 or len(body) != 4 + 8 * _U32.unpack_from(body)[0]
        ):
            raise SpdyProtocolError("SETTINGS frame length does not match its entry count")
        try:
            if frame_type in (TYPE_SYN_REPLY, TYPE_HEADERS):
                (stream_id,) = _U32.unpack_from(body, 0)
                headers = self._headers(body[4:])
                return ControlFrame(frame_type, flags, stream_id & _ID_MASK, headers=headers)
            if frame_type == TYPE_SYN_STREAM:
                # Stream id, associated stream id, priority and slot come before the block.
                stream_id, _associated, _priority = struct.unpack_from("!IIH", body, 0)
                headers = self._headers(body[10:])
                return ControlFrame(frame_type, flags, stream_id & _ID_MASK, headers=headers)
            if frame_type in (TYPE_RST_STREAM, TYPE_GOAWAY, TYPE_WINDOW_UPDATE):
                stream_id, value = struct.unpack_from("!II", body, 0)
                return ControlFrame(frame_type, flags, stream_id & _ID_MASK, value)
            if frame_type == TYPE_PING:
                (ping_id,) = _U32.unpack_from(body, 0)
                return ControlFrame(frame_type, flags, ping_id)
        except struct.error:
            raise SpdyProtocolError(f"control frame of type {frame_type} is truncated") from None
        # SETTINGS, and types SPDY/3.1 told receivers to ignore.
        return ControlFrame(frame_type, flags, 0)

    def _headers(self, compressed: bytes) -> tuple[tuple[str, str], ...]:
        # Inflate at most one byte past the limit: a frame of a few KiB can hold a block
        # that inflates to hundreds of MiB, which must never be materialised.
        try:
            block = self._inflate.decompress(compressed, MAX_HEADER_BLOCK + 1)
        except zlib.error as error:
            raise SpdyProtocolError(f"cannot inflate a header block: {error}") from None
        if len(block) > MAX_HEADER_BLOCK:
            raise SpdyProtocolError(
                f"header block inflates past the limit of {MAX_HEADER_BLOCK} bytes"
            )
        if self._inflate.eof:
            # The session's compression stream never ends; a block that ends it is corrupt.
            raise SpdyProtocolError("a header block ended the session's compression stream")
        return decode_header_block(block)
