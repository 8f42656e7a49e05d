"""SPDY/3.1 framing, as kube-apiserver and the kubelet speak it for exec, attach and port-forward.

Kubernetes' streaming connections are SPDY/3.1 sessions (`k8s.io/streaming/pkg/httpstream/spdy`
over `github.com/moby/spdystream`): after an HTTP `Upgrade: SPDY/3.1`, each side writes frames
(draft-mbelshe-httpbis-spdy-00 §2.2): control frames (SYN_STREAM, SYN_REPLY, RST_STREAM,
SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and DATA frames, 8-byte headers, big-endian.
Header blocks are zlib-compressed with the SPDY/3 dictionary, one compression context per
direction for the whole session, each block ended by a sync flush. moby/spdystream implements no
flow control (it ignores WINDOW_UPDATE and SETTINGS and sends neither), so none is done here:
those frames are parsed and left to the caller.

Pure, no I/O: `FrameEncoder.encode(frame) -> bytes` and `FrameDecoder.feed(data) -> frames`,
each holding its direction's zlib context. Malformed input raises `SpdyProtocolError`. Checked
against frames written by moby/spdystream's framer (tests/kubelet_api/spdy_vectors).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

__all__ = [
    "DICTIONARY",
    "MAX_DATA_LENGTH",
    "Data",
    "FrameDecoder",
    "FrameEncoder",
    "GoAway",
    "GoAwayStatus",
    "Headers",
    "HeadersFrame",
    "Ping",
    "RstStatus",
    "RstStream",
    "Settings",
    "SpdyProtocolError",
    "SynReply",
    "SynStream",
    "WindowUpdate",
    "header_block",
    "parse_header_block",
]

VERSION: Final = 3
MAX_DATA_LENGTH: Final = (1 << 24) - 1
# Limits on what a peer may make us hold (moby/spdystream allows 1 MiB per field, 1000 fields).
MAX_HEADER_BLOCK: Final = 1 << 20
MAX_HEADER_COUNT: Final = 1000
FLAG_FIN: Final = 0x01
FLAG_UNIDIRECTIONAL: Final = 0x02


def _dictionary() -> bytes:
    # SPDY/3 §2.6.10.1: 65 length-prefixed words, then status lines, dates and common values.
    words = (
        *("options", "head", "post", "put", "delete", "trace", "accept", "accept-charset"),
        *("accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization"),
        *("cache-control", "connection", "content-base", "content-encoding", "content-language"),
        *("content-length", "content-location", "content-md5", "content-range", "content-type"),
        *("date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since"),
        *("if-none-match", "if-range", "if-unmodified-since", "last-modified", "location"),
        *("max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range"),
        *("referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade"),
        *("user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status"),
        *("200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"),
    )
    prefixed = b"".join(struct.pack(">I", len(word)) + word.encode() for word in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY: Final = _dictionary()


class ControlType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SpdyProtocolError(Exception):
    """The peer broke the framing; the session cannot continue (answer with GOAWAY)."""


# Header names are lower case; a name may carry several values (NUL-separated on the wire).
# Frames accept a plain str or any iterable of str per name and keep tuples.
Headers = Mapping[str, tuple[str, ...]]
HeaderInput = Mapping[str, str | Iterable[str]]


def _headers(pairs: HeaderInput | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, value in (pairs or {}).items():
        values = (value,) if isinstance(value, str) else tuple(value)
        out[name.lower()] = out.get(name.lower(), ()) + values
    return out


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_to: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _headers(self.headers))

    def header(self, name: str) -> str:
        """The first value of `name` (any case), "" when absent: Go's `http.Header.Get`."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _headers(self.headers))


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _headers(self.headers))


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    # (flags, id, value) triples.
    entries: tuple[tuple[int, int, int], ...] = ()
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway | WindowUpdate | Data


def header_block(headers: HeaderInput) -> bytes:
    """The uncompressed name/value block (§2.6.10): count, then length-prefixed names and
    NUL-joined values, names lower case and in sorted order."""
    merged = _headers(headers)
    parts = [struct.pack(">I", len(merged))]
    for name in sorted(merged):
        raw_name = name.encode()
        raw_value = "\x00".join(merged[name]).encode()
        parts += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(parts)


def parse_header_block(block: bytes) -> dict[str, tuple[str, ...]]:
    """The inverse of `header_block`; names are lower-cased, repeated names merged."""
    view = memoryview(block)
    if len(view) < 4:
        raise SpdyProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", view, 0)
    if count > MAX_HEADER_COUNT:
        raise SpdyProtocolError(f"too many headers ({count})")
    offset = 4
    out: dict[str, tuple[str, ...]] = {}

    def take() -> bytes:
        nonlocal offset
        if offset + 4 > len(view):
            raise SpdyProtocolError("truncated header block")
        (length,) = struct.unpack_from(">I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise SpdyProtocolError("truncated header block")
        value = bytes(view[offset : offset + length])
        offset += length
        return value

    for _ in range(count):
        name = take().decode("latin-1").lower()
        if not name:
            raise SpdyProtocolError("empty header name")
        values = tuple(take().decode("latin-1").split("\x00"))
        out[name] = out.get(name, ()) + values
    if offset != len(view):
        raise SpdyProtocolError("trailing bytes after the header block")
    return out


def _control(kind: ControlType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATA_LENGTH:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


class FrameEncoder:
    """Frames to bytes, for one direction of one session (it holds the header compressor)."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    def _compress(self, headers: Headers) -> bytes:
        block = header_block(headers)
        return self._compressor.compress(block) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id=sid, data=data, fin=fin):
                if not 0 < sid < 1 << 31:
                    raise ValueError(f"invalid stream id {sid}")
                if len(data) > MAX_DATA_LENGTH:
                    raise ValueError("data frame too large; split it")
                return struct.pack(">II", sid, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data
            case SynStream():
                flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
                head = struct.pack(
                    ">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, frame.slot
                )
                return _control(ControlType.SYN_STREAM, flags, head + self._compress(frame.headers))
            case SynReply(stream_id=sid, headers=headers, fin=fin):
                payload = struct.pack(">I", sid) + self._compress(headers)
                return _control(ControlType.SYN_REPLY, FLAG_FIN if fin else 0, payload)
            case HeadersFrame(stream_id=sid, headers=headers, fin=fin):
                payload = struct.pack(">I", sid) + self._compress(headers)
                return _control(ControlType.HEADERS, FLAG_FIN if fin else 0, payload)
            case RstStream(stream_id=sid, status=status):
                return _control(ControlType.RST_STREAM, 0, struct.pack(">II", sid, status))
            case Settings(entries=entries, clear=clear):
                payload = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (flags << 24) | ident, value) for flags, ident, value in entries
                )
                return _control(ControlType.SETTINGS, 1 if clear else 0, payload)
            case Ping(id=ident):
                return _control(ControlType.PING, 0, struct.pack(">I", ident))
            case GoAway(last_good_stream_id=sid, status=status):
                return _control(ControlType.GOAWAY, 0, struct.pack(">II", sid, status))
            case WindowUpdate(stream_id=sid, delta=delta):
                return _control(ControlType.WINDOW_UPDATE, 0, struct.pack(">II", sid, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Bytes to frames, for one direction of one session (it holds the header decompressor).

    `feed` takes whatever arrived and returns the frames it completed; a partial frame waits for
    the next call. Unknown control frame types are skipped, as SPDY/3 requires.
    """

    def __init__(self, *, max_data_length: int = MAX_DATA_LENGTH) -> None:
        self._buffer = bytearray()
        self._decompressor = zlib.decompressobj(zdict=DICTIONARY)
        self._max_data = max_data_length

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer, 0)
            flags, length = second >> 24, second & 0xFFFFFF
            control = bool(first & 0x80000000)
            if control and length > MAX_HEADER_BLOCK + 64:
                raise SpdyProtocolError(f"control frame of {length} bytes")
            if not control and length > self._max_data:
                raise SpdyProtocolError(f"data frame of {length} bytes")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if not control:
                sid = first & 0x7FFFFFFF
                if sid == 0:
                    raise SpdyProtocolError("data frame on stream 0")
                frames.append(Data(stream_id=sid, data=payload, fin=bool(flags & FLAG_FIN)))
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise SpdyProtocolError(f"SPDY version {version} (only 3 is spoken)")
            frame = self._control(kind, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _headers(self, compressed: bytes) -> dict[str, tuple[str, ...]]:
        try:
            block = self._decompressor.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header block does not decompress: {exc}") from None
        if self._decompressor.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return parse_header_block(block)

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame | None:
        def ints(count: int) -> tuple[int, ...]:
            if len(payload) != 4 * count:
                raise SpdyProtocolError(f"control frame {kind}: {len(payload)} bytes")
            return struct.unpack(f">{count}I", payload)

        def stream_id(raw: int) -> int:
            sid = raw & 0x7FFFFFFF
            if sid == 0:
                raise SpdyProtocolError(f"control frame {kind} on stream 0")
            return sid

        fin = bool(flags & FLAG_FIN)
        if kind == ControlType.SYN_STREAM:
            if len(payload) < 10:
                raise SpdyProtocolError("truncated SYN_STREAM")
            sid, assoc, prio, slot = struct.unpack_from(">IIBB", payload, 0)
            return SynStream(
                stream_id=stream_id(sid),
                headers=self._headers(payload[10:]),
                associated_to=assoc & 0x7FFFFFFF,
                priority=prio >> 5,
                slot=slot,
                fin=fin,
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (ControlType.SYN_REPLY, ControlType.HEADERS):
            if len(payload) < 4:
                raise SpdyProtocolError("truncated SYN_REPLY/HEADERS")
            (sid,) = struct.unpack_from(">I", payload, 0)
            headers = self._headers(payload[4:])
            if kind == ControlType.SYN_REPLY:
                return SynReply(stream_id=stream_id(sid), headers=headers, fin=fin)
            return HeadersFrame(stream_id=stream_id(sid), headers=headers, fin=fin)
        if kind == ControlType.RST_STREAM:
            sid, status = ints(2)
            return RstStream(stream_id=stream_id(sid), status=status)
        if kind == ControlType.SETTINGS:
            if len(payload) < 4:
                raise SpdyProtocolError("truncated SETTINGS")
            (count,) = struct.unpack_from(">I", payload, 0)
            if len(payload) != 4 + 8 * count:
                raise SpdyProtocolError("SETTINGS length does not match its count")
            entries = tuple(
                (word >> 24, word & 0xFFFFFF, value) for word, value in struct.iter_unpack(">II", payload[4:])
            )
            return Settings(entries=entries, clear=bool(flags & 1))
        if kind == ControlType.PING:
            (ident,) = ints(1)
            return Ping(id=ident)
        if kind == ControlType.GOAWAY:
            sid, status = ints(2)
            return GoAway(last_good_stream_id=sid & 0x7FFFFFFF, status=status)
        if kind == ControlType.WINDOW_UPDATE:
            sid, delta = ints(2)
            return WindowUpdate(stream_id=sid & 0x7FFFFFFF, delta=delta & 0x7FFFFFFF)
        return None  # unknown control frame: ignored (§2.2.1)
