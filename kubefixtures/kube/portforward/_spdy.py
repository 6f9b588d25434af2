"""SPDY/3.1 framing, the subset the Kubernetes port-forward protocol uses.

The apiserver's `SPDY/3.1+portforward.k8s.io` WebSocket subprotocol carries a plain SPDY/3.1
session (the one kubectl speaks) inside WebSocket binary messages; the far end is the
kubelet's stream server. Every forwarded TCP connection is a pair of SPDY streams (an error
stream and a data stream, paired by a `requestID` header), so connections after the first
cost one round trip to the kubelet instead of a TLS handshake and an HTTP upgrade.

Pure framing, no I/O. Header blocks are zlib-compressed with one context per direction
for the whole session (SPDY/3 section 2.6.10), so every received header block must be
inflated in order, even the empty ones, or later ones become garbage.
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

MAX_DATA_LENGTH = (1 << 24) - 1

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
    try:
        (count,) = _U32.unpack_from(block, 0)
        position = 4
        pairs: list[tuple[str, str]] = []
        for _ in range(count):
            (size,) = _U32.unpack_from(block, position)
            name = block[position + 4 : position + 4 + size].decode("utf-8")
            position += 4 + size
            (size,) = _U32.unpack_from(block, position)
            value = block[position + 4 : position + 4 + size].decode("utf-8")
            position += 4 + size
            pairs.append((name, value))
    except (struct.error, UnicodeDecodeError) as error:
        raise SpdyProtocolError(f"malformed header block: {error}") from None
    return tuple(pairs)


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

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 8:
            first, flags, raw_length = _HEADER.unpack_from(buffer, offset)
            length = int.from_bytes(raw_length, "big")
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
        try:
            if frame_type in (TYPE_SYN_REPLY, TYPE_HEADERS):
                (stream_id,) = _U32.unpack_from(body, 0)
                headers = self._headers(body[4:])
                return ControlFrame(frame_type, flags, stream_id & _ID_MASK, headers=headers)
            if frame_type == TYPE_SYN_STREAM:
                (stream_id,) = _U32.unpack_from(body, 0)
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
        try:
            block = self._inflate.decompress(compressed)
        except zlib.error as error:
            raise SpdyProtocolError(f"cannot inflate a header block: {error}") from None
        return decode_header_block(block)
