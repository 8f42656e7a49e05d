"""WebSocket (RFC 6455) server framing, for the kubelet's WebSocket streaming protocols.

Two uses, both as the kubelet has them (`k8s.io/streaming/pkg/httpstream/wsstream`,
`k8s.io/apiserver/pkg/util/proxy` tunnelling):
- `v5.channel.k8s.io` / `v4.channel.k8s.io` (and their base64 forms) for exec and attach: each
  message is one channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize) then data; v5
  adds the client's half-close, `[255, channel]`;
- `SPDY/3.1+portforward.k8s.io` for port-forward: binary messages carrying a SPDY session.

Pure, no I/O: the handshake answer (`accept_key`, `choose_protocol`), `MessageDecoder.feed`
(client frames are masked; fragments are joined; control frames come out as they arrive) and
`encode` (server frames are not masked). Violations raise `WebSocketError` with the close code.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "CloseCode",
    "Message",
    "MessageDecoder",
    "Opcode",
    "WebSocketError",
    "accept_key",
    "choose_protocol",
    "close_payload",
    "encode",
    "requested_protocols",
]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE: Final = 16 << 20


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class WebSocketError(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    opcode: Opcode
    payload: bytes


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.strip().encode() + _GUID).digest()).decode()


def requested_protocols(header_values: Iterable[str]) -> list[str]:
    """The client's `Sec-WebSocket-Protocol` values, in its order (comma-separated, repeatable)."""
    return [p.strip() for value in header_values for p in value.split(",") if p.strip()]


def choose_protocol(requested: Sequence[str], supported: Iterable[str]) -> str | None:
    """The first protocol the client asked for that we speak (the kubelet picks the same way)."""
    allowed = set(supported)
    return next((p for p in requested if p in allowed), None)


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack(">H", code) + reason.encode()[:123]


def encode(opcode: Opcode, payload: bytes = b"") -> bytes:
    """One unfragmented, unmasked (server) frame."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        head = struct.pack(">BB", first, length)
    elif length < 1 << 16:
        head = struct.pack(">BBH", first, 126, length)
    else:
        head = struct.pack(">BBQ", first, 127, length)
    return head + payload


class MessageDecoder:
    """Client frames to messages. Data messages come out whole; PING, PONG and CLOSE as soon
    as they arrive (they may sit between the fragments of a data message)."""

    def __init__(self, *, max_message: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._fragment_size = 0
        self._max = max_message

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while True:
            frame = self._frame()
            if frame is None:
                return out
            fin, opcode, payload = frame
            message = self._message(fin, opcode, payload)
            if message is not None:
                out.append(message)

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        if not second & 0x80:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from(">H", buf, 2)
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from(">Q", buf, 2)
            offset = 10
        if length > self._max:
            raise WebSocketError(CloseCode.TOO_BIG, f"frame of {length} bytes")
        if len(buf) < offset + 4 + length:
            return None
        mask = bytes(buf[offset : offset + 4])
        start = offset + 4
        masked = bytes(buf[start : start + length])
        del buf[: start + length]
        payload = _unmask(masked, mask)
        return bool(first & 0x80), first & 0x0F, payload

    def _message(self, fin: bool, opcode: int, payload: bytes) -> Message | None:
        if opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
            if not fin or len(payload) > 125:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "fragmented or long control frame")
            return Message(Opcode(opcode), payload)
        if opcode == Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "continuation without a message")
        elif opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._fragment_opcode is not None:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            self._fragment_opcode = Opcode(opcode)
        else:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        self._fragment_size += len(payload)
        if self._fragment_size > self._max:
            raise WebSocketError(CloseCode.TOO_BIG, "message too large")
        self._fragments.append(payload)
        if not fin:
            return None
        kind = self._fragment_opcode
        assert kind is not None
        whole = b"".join(self._fragments)
        self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
        if kind == Opcode.TEXT:
            try:
                whole.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError(CloseCode.INVALID_DATA, "text message is not UTF-8") from None
        return Message(kind, whole)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    # XOR with the repeated mask as one big integer: fast enough for stdin-sized messages.
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")
