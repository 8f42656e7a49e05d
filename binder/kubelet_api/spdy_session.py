"""The server side of one SPDY/3.1 session: the streams a kube-apiserver opens, as asyncio objects.

What moby/spdystream's server connection does for the kubelet, over `spdy`'s framing:
- the client opens streams (odd ids, increasing) with SYN_STREAM and headers (`streamType`,
  `port`, `requestID`); `accept()` hands each to the caller, who answers `reply()` (SYN_REPLY:
  client-go waits for it before writing) or `reset()`;
- DATA flows both ways; FIN half-closes one direction (`close()` sends ours, `read()` returns
  b"" after theirs), RST_STREAM ends both;
- PINGs from the client are echoed (kube-apiserver pings every 5 s and gives up on a silent
  peer); GOAWAY from the client stops `accept()`, streams already open carry on;
- there is no flow control (spdystream has none): instead a reader that falls behind pauses
  reading the connection once `HIGH_WATER` bytes wait, as spdystream blocks its frame loop.

Idle timeout: no DATA and no new stream for `idle_timeout` seconds (PINGs do not count: the
apiserver sends them as long as the client is connected) ends the session: every stream is
reset and the connection closed. The kubelet's equivalent is `streamingConnectionIdleTimeout`.

The session writes to a `Wire` (the upgraded TLS connection, or a WebSocket tunnel carrying
SPDY); the owner feeds it what arrives with `data_received` and `connection_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from binder.kubelet_api.spdy import (
    MAX_DATA_LENGTH,
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    GoAwayStatus,
    Headers,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
)

__all__ = ["HIGH_WATER", "SpdySession", "SpdyStream", "StreamClosed", "Wire"]

log = logging.getLogger(__name__)

# Bytes received but not yet read, summed over streams, above which the connection stops being
# read (and below LOW_WATER resumes).
HIGH_WATER: Final = 1 << 20
LOW_WATER: Final = 1 << 18
# DATA frames we write carry at most this much.
CHUNK: Final = 32 * 1024
IDLE_CHECK: Final = 1.0


class Wire(Protocol):
    """Where a session's bytes go."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class StreamClosed(Exception):
    """Writing to a stream that was reset, or whose session ended."""


class SpdyStream:
    """One stream the client opened. Its headers are lower case (`header("streamType")`)."""

    def __init__(self, session: SpdySession, frame: SynStream) -> None:
        self._session = session
        self.id = frame.stream_id
        self.headers: Headers = frame.headers
        self._chunks: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self.remote_closed = frame.fin or frame.unidirectional
        self.local_closed = False
        self.reset_seen = False
        self.replied = False

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.header('streamType') or '?'}>"

    # --- from the session -----------------------------------------------------------------

    def _data(self, data: bytes, fin: bool) -> None:
        if self.remote_closed:
            return  # data after FIN: ignored, as spdystream does
        if data:
            self._chunks.append(data)
            self._session._buffered += len(data)
        if fin:
            self.remote_closed = True
        self._arrived.set()

    def _reset(self) -> None:
        self.reset_seen = True
        self.remote_closed = True
        self.local_closed = True
        self._arrived.set()

    # --- for the handler ------------------------------------------------------------------

    def reply(self) -> None:
        """SYN_REPLY: the stream is accepted (client-go's `CreateStream` waits for it)."""
        if not self.replied and not self.reset_seen:
            self.replied = True
            self._session._send(SynReply(stream_id=self.id))

    def reset(self, status: int = RstStatus.CANCEL) -> None:
        """RST_STREAM: both directions end at once; unread data is dropped."""
        if self.reset_seen:
            return
        self._session._discard(self)
        self._reset()
        self._session._send(RstStream(stream_id=self.id, status=status))
        self._session._forget(self)

    async def read(self) -> bytes:
        """The next bytes the client sent; b"" once it half-closed (FIN), reset, or went away."""
        while not self._chunks:
            if self.remote_closed:
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        data = self._chunks.popleft()
        self._session._consumed(len(data))
        return data

    async def write(self, data: bytes) -> None:
        """DATA to the client, in frames of at most `CHUNK` bytes; waits while the connection
        is backed up. Raises `StreamClosed` if the stream or the session ended."""
        view = memoryview(data)
        for at in range(0, len(view), CHUNK):
            if self.local_closed or self._session.closed:
                raise StreamClosed(f"stream {self.id} is closed")
            self._session._send(Data(stream_id=self.id, data=bytes(view[at : at + CHUNK])), activity=True)
            await self._session._drain()

    async def close(self) -> None:
        """FIN: nothing more from us on this stream (the client's side may still send)."""
        if self.local_closed or self._session.closed:
            self.local_closed = True
            return
        self.local_closed = True
        self._session._send(Data(stream_id=self.id, fin=True))
        if self.remote_closed:
            self._session._forget(self)
        await self._session._drain()


class SpdySession:
    """One upgraded connection's SPDY session, server side. See the module docstring."""

    def __init__(
        self,
        wire: Wire,
        *,
        idle_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_data_length: int = MAX_DATA_LENGTH,
    ) -> None:
        self._wire = wire
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder(max_data_length=max_data_length)
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._last_client_stream = 0
        self._buffered = 0
        self._paused = False
        self._clock = clock
        self.last_activity = clock()
        self.closed = False
        self.gone_away = False
        self.ended = asyncio.Event()
        self._idle_timeout = idle_timeout
        self._watchdog: asyncio.Task[None] | None = None
        if idle_timeout is not None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_idle(idle_timeout))

    # --- fed by the connection ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self._decoder.feed(data)
        except SpdyProtocolError as exc:
            log.warning("SPDY protocol error from the client: %s", exc)
            self._send(
                GoAway(last_good_stream_id=self._last_client_stream, status=GoAwayStatus.PROTOCOL_ERROR)
            )
            self._end()
            return
        for frame in frames:
            self._dispatch(frame)

    def connection_lost(self) -> None:
        self._end(close_wire=False)

    # --- frames ---------------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        match frame:
            case SynStream():
                self._syn_stream(frame)
            case Data(stream_id=sid, data=data, fin=fin):
                self.last_activity = self._clock()
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._data(data, fin)
                    self._check_water()
                    if stream.remote_closed and stream.local_closed:
                        self._forget(stream)
            case RstStream(stream_id=sid):
                stream = self._streams.get(sid)
                if stream is not None:
                    self._discard(stream)
                    stream._reset()
                    self._forget(stream)
            case Ping(id=ident):
                if ident % 2 == 1:  # the client's; even ids would be answers to ours
                    self._send(frame)
            case GoAway():
                self.gone_away = True
                self._incoming.put_nowait(None)
            case HeadersFrame(stream_id=sid, fin=fin):
                stream = self._streams.get(sid)
                if stream is not None and fin:
                    stream._data(b"", True)
            case Settings() | WindowUpdate() | SynReply():
                pass  # no flow control (spdystream has none); we open no streams

    def _syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_client_stream:
            # spdystream answers an out-of-order or server-parity id with RST PROTOCOL_ERROR.
            self._send(RstStream(stream_id=sid, status=RstStatus.PROTOCOL_ERROR))
            return
        self._last_client_stream = sid
        if self.gone_away:
            self._send(RstStream(stream_id=sid, status=RstStatus.REFUSED_STREAM))
            return
        self.last_activity = self._clock()
        stream = SpdyStream(self, frame)
        self._streams[sid] = stream
        self._incoming.put_nowait(stream)

    def _send(self, frame: Frame, *, activity: bool = False) -> None:
        if self.closed:
            return
        if activity:
            self.last_activity = self._clock()
        # Encoding and writing in one step keeps the header compressor in wire order.
        self._wire.write(self._encoder.encode(frame))

    async def _drain(self) -> None:
        if not self.closed:
            await self._wire.drain()

    # --- stream bookkeeping ---------------------------------------------------------------

    def _consumed(self, size: int) -> None:
        self._buffered -= size
        self._check_water()

    def _discard(self, stream: SpdyStream) -> None:
        dropped = sum(len(chunk) for chunk in stream._chunks)
        stream._chunks.clear()
        self._buffered -= dropped
        self._check_water()

    def _check_water(self) -> None:
        if not self._paused and self._buffered > HIGH_WATER:
            self._paused = True
            self._wire.pause_reading()
        elif self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._wire.resume_reading()

    def _forget(self, stream: SpdyStream) -> None:
        if self._streams.get(stream.id) is stream and stream.remote_closed and stream.local_closed:
            del self._streams[stream.id]

    # --- for the handler ------------------------------------------------------------------

    async def accept(self, within: float | None = None) -> SpdyStream | None:
        """The next stream the client opens; None once it said GOAWAY or the session ended.
        Raises TimeoutError after `within` seconds without one."""
        if self.closed or self.gone_away:
            return None
        async with asyncio.timeout(within):
            stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)  # later callers see the end too
        return stream

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def aclose(self, *, status: int = GoAwayStatus.OK) -> None:
        """GOAWAY, then the connection closes once what was written is flushed."""
        if self.closed:
            return
        self._send(GoAway(last_good_stream_id=self._last_client_stream, status=status))
        with contextlib.suppress(Exception):
            await self._wire.drain()
        self._end()

    def _end(self, *, close_wire: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self._streams.values()):
            stream._reset()
        self._streams.clear()
        self._incoming.put_nowait(None)
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._paused:
            self._paused = False
            self._wire.resume_reading()
        if close_wire:
            self._wire.close()
        self.ended.set()

    async def _watch_idle(self, limit: float) -> None:
        while not self.closed:
            await asyncio.sleep(min(IDLE_CHECK, limit))
            if self._clock() - self.last_activity >= limit:
                log.info("streaming connection idle for %.0f s: closing it", limit)
                for stream in list(self._streams.values()):
                    stream.reset()
                await self.aclose()
                return
