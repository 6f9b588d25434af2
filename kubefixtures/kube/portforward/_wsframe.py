"""RFC 6455 WebSocket framing for the client side of a port-forward tunnel.

Only what the apiserver's port-forward endpoints need: binary data frames, ping/pong and
close. Pure functions and an incremental parser, no I/O, so the framing can be unit-tested
and reused by both transports (the SPDY tunnel and the v4 channel protocol).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80
_MASKED = 0x80
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class WebSocketProtocolError(Exception):
    """The peer sent bytes that are not valid WebSocket framing."""


def new_key() -> str:
    """A fresh Sec-WebSocket-Key for the opening handshake."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to `key`."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR `data` with the repeating 4-byte `key` (masking and unmasking are the same)."""
    out = bytearray(data)
    _mask_in_place(out, 0, key)
    return bytes(out)


def _mask_in_place(buffer: bytearray, start: int, key: bytes) -> None:
    # Python has no vectorised XOR, so each of the four byte lanes (every 4th byte) goes
    # through bytes.translate with a precomputed XOR table: eight C-speed passes, about
    # 0.6 GB/s, where a byte loop would be a hundred times slower.
    for lane in range(4):
        lane_slice = slice(start + lane, None, 4)
        buffer[lane_slice] = buffer[lane_slice].translate(_xor_table(key[lane]))


_XOR_TABLES: dict[int, bytes] = {}


def _xor_table(value: int) -> bytes:
    table = _XOR_TABLES.get(value)
    if table is None:
        table = _XOR_TABLES[value] = bytes(byte ^ value for byte in range(256))
    return table


def encode_client_frame(opcode: int, *parts: bytes | bytearray | memoryview) -> bytearray:
    """One final, masked frame whose payload is `parts` joined (clients must mask every
    frame they send), built in one buffer so a payload is copied once."""
    size = sum(len(part) for part in parts)
    first = _FIN | opcode
    if size < 126:
        frame = bytearray((first, _MASKED | size))
    elif size < 1 << 16:
        frame = bytearray((first, _MASKED | 126))
        frame += _U16.pack(size)
    else:
        frame = bytearray((first, _MASKED | 127))
        frame += _U64.pack(size)
    key = os.urandom(4)
    frame += key
    start = len(frame)
    for part in parts:
        frame += part
    _mask_in_place(frame, start, key)
    return frame


def encode_close(code: int = 1000) -> bytearray:
    return encode_client_frame(OP_CLOSE, _U16.pack(code))


@dataclass(frozen=True, slots=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


class FrameParser:
    """Splits a byte stream from the server into frames; feed it whatever arrives."""

    __slots__ = ("_buffer", "_max_payload")

    def __init__(self, max_payload: int = 1 << 26) -> None:
        self._buffer = bytearray()
        self._max_payload = max_payload

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        # Parse at an offset and trim once, so a read holding many frames costs one memmove.
        while end - offset >= 2:
            first = buffer[offset]
            second = buffer[offset + 1]
            if first & 0x70:
                raise WebSocketProtocolError("reserved bits set (no extension was negotiated)")
            size = second & 0x7F
            position = offset + 2
            if size == 126:
                if end - position < 2:
                    break
                (size,) = _U16.unpack_from(buffer, position)
                position += 2
            elif size == 127:
                if end - position < 8:
                    break
                (size,) = _U64.unpack_from(buffer, position)
                position += 8
            if size > self._max_payload:
                raise WebSocketProtocolError(f"frame of {size} bytes exceeds the limit")
            key = b""
            if second & _MASKED:
                if end - position < 4:
                    break
                key = bytes(buffer[position : position + 4])
                position += 4
            if end - position < size:
                break
            payload = bytes(buffer[position : position + size])
            if key:
                payload = apply_mask(payload, key)
            frames.append(Frame(bool(first & _FIN), first & 0x0F, payload))
            offset = position + size
        if offset:
            del buffer[:offset]
        return frames


class MessageAssembler:
    """Joins fragmented data frames into whole messages (the v4 protocol is message based)."""

    __slots__ = ("_opcode", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._opcode = 0

    def add(self, frame: Frame) -> tuple[int, bytes] | None:
        """Returns (opcode, message) once a message is complete, else None."""
        if frame.opcode != OP_CONTINUATION:
            if self._parts:
                raise WebSocketProtocolError("new message before the previous one ended")
            if frame.fin:
                return frame.opcode, frame.payload
            self._opcode = frame.opcode
            self._parts.append(frame.payload)
            return None
        if not self._parts:
            raise WebSocketProtocolError("continuation frame without a message")
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        message = b"".join(self._parts)
        self._parts.clear()
        return self._opcode, message
