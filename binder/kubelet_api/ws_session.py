"""A server WebSocket over an upgraded connection, and what rides on it.

`WebSocketSession` answers PINGs (client-go's WebSocket clients ping and give up on a silent
peer), answers CLOSE, and queues data messages for `receive()`. Idle timeout as in
`spdy_session`: no data message either way for `idle_timeout` seconds closes it.

Two users: `ChannelMux` splits messages by channel byte for exec/attach (`v4`/`v5.channel.k8s.io`,
binary or base64; v5's `[255, channel]` half-closes a channel), and `TunnelWire` carries a SPDY
session in binary messages (`SPDY/3.1+portforward.k8s.io`, kube-apiserver's and the kubelet's
port-forward tunnelling), so `spdy_session` serves it unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from binder.kubelet_api.spdy_session import CHUNK, HIGH_WATER, IDLE_CHECK, LOW_WATER, Wire
from binder.kubelet_api.websocket import (
    CloseCode,
    Message,
    MessageDecoder,
    Opcode,
    WebSocketError,
    close_payload,
    encode,
)

__all__ = ["ChannelMux", "MuxChannel", "TunnelWire", "WebSocketSession"]

log = logging.getLogger(__name__)

STREAM_CLOSE: Final = 255
# Flow control and idle checks as the SPDY session's: one byte pipe (`Wire`) under both.
_IDLE_CHECK: Final = IDLE_CHECK


class WebSocketSession:
    def __init__(
        self,
        connection: Wire,
        *,
        idle_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = connection
        self._decoder = MessageDecoder()
        self._messages: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._buffered = 0
        self._paused = False
        self._clock = clock
        self.last_activity = clock()
        self.closed = False
        self.ended = asyncio.Event()
        self._close_sent = False
        self._watchdog: asyncio.Task[None] | None = None
        if idle_timeout is not None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_idle(idle_timeout))

    # --- fed by the connection ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            messages = self._decoder.feed(data)
        except WebSocketError as exc:
            log.warning("WebSocket protocol error from the client: %s", exc.reason)
            self._send_close(exc.code, exc.reason)
            self._end()
            return
        for message in messages:
            if message.opcode == Opcode.PING:
                self._write(encode(Opcode.PONG, message.payload))
            elif message.opcode == Opcode.PONG:
                pass
            elif message.opcode == Opcode.CLOSE:
                self._send_close(CloseCode.NORMAL)
                self._end()
                return
            else:
                self.last_activity = self._clock()
                self._messages.append(message)
                self._buffered += len(message.payload)
                self._arrived.set()
        if not self._paused and self._buffered > HIGH_WATER:
            self._paused = True
            self._conn.pause_reading()

    def connection_lost(self) -> None:
        self._end(close_connection=False)

    # --- for the user ---------------------------------------------------------------------

    async def receive(self) -> Message | None:
        """The next data message; None once the session ended."""
        while not self._messages:
            if self.closed:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        message = self._messages.popleft()
        self._buffered -= len(message.payload)
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._conn.resume_reading()
        return message

    async def send(self, opcode: Opcode, payload: bytes) -> None:
        if self.closed:
            raise ConnectionError("the WebSocket is closed")
        self.last_activity = self._clock()
        self._write(encode(opcode, payload))
        await self._conn.drain()

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """CLOSE, then the connection closes once it is flushed."""
        if self.closed:
            return
        self._send_close(code, reason)
        with contextlib.suppress(Exception):
            await self._conn.drain()
        self._end()

    # --- internals ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self._conn.write(data)

    def _send_close(self, code: int, reason: str = "") -> None:
        if not self._close_sent:
            self._close_sent = True
            self._write(encode(Opcode.CLOSE, close_payload(code, reason)))

    def _end(self, *, close_connection: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self._arrived.set()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if close_connection:
            self._conn.close()
        self.ended.set()

    async def _watch_idle(self, limit: float) -> None:
        while not self.closed:
            await asyncio.sleep(min(_IDLE_CHECK, limit))
            if self._clock() - self.last_activity >= limit:
                log.info("streaming connection idle for %.0f s: closing it", limit)
                await self.aclose(CloseCode.GOING_AWAY, "idle timeout")
                return


class MuxChannel:
    """One channel of a `ChannelMux`: a `remotecommand.Source` for the client's channels (stdin,
    resize), a `remotecommand.Sink` for ours (stdout, stderr, error)."""

    def __init__(self, mux: ChannelMux, number: int) -> None:
        self._mux = mux
        self.number = number
        self._chunks: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self.remote_closed = False

    def _data(self, data: bytes) -> None:
        if not self.remote_closed:
            self._chunks.append(data)
            self._arrived.set()

    def _close_remote(self) -> None:
        self.remote_closed = True
        self._arrived.set()

    async def read(self) -> bytes:
        while not self._chunks:
            if self.remote_closed:
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        return self._chunks.popleft()

    async def write(self, data: bytes) -> None:
        for at in range(0, len(data), CHUNK):
            await self._mux.send(self.number, data[at : at + CHUNK])

    async def close(self) -> None:
        # The kubelet's WebSocket server signals no half-close: the end is the closing frame.
        return None


class ChannelMux:
    """exec/attach channels over a WebSocket: reads messages into channels until it ends."""

    def __init__(self, session: WebSocketSession, *, base64_codec: bool, channels: int = 5) -> None:
        self._session = session
        self._base64 = base64_codec
        self.channels = [MuxChannel(self, n) for n in range(channels)]
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                message = await self._session.receive()
                if message is None:
                    return
                self._dispatch(message.payload)
        finally:
            for channel in self.channels:
                channel._close_remote()

    def _dispatch(self, payload: bytes) -> None:
        if not payload:
            return
        if payload[0] == STREAM_CLOSE and not self._base64:
            if len(payload) == 2 and payload[1] < len(self.channels):
                self.channels[payload[1]]._close_remote()
            return
        number = payload[0] - ord("0") if self._base64 else payload[0]
        if not 0 <= number < len(self.channels):
            return
        data = payload[1:]
        if self._base64:
            try:
                data = base64.b64decode(data)
            except ValueError:
                return
        self.channels[number]._data(data)

    async def send(self, number: int, data: bytes) -> None:
        if self._base64:
            await self._session.send(Opcode.TEXT, bytes([ord("0") + number]) + base64.b64encode(data))
        else:
            await self._session.send(Opcode.BINARY, bytes([number]) + data)

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class TunnelWire:
    """A `spdy_session.Wire` whose bytes travel as binary WebSocket messages; `pump()` feeds
    the messages that arrive to a receiver (the SPDY session) until the WebSocket ends."""

    def __init__(self, session: WebSocketSession) -> None:
        self._session = session
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._session.closed:
            self._session.last_activity = self._session._clock()
            self._session._write(encode(Opcode.BINARY, data))

    async def drain(self) -> None:
        await self._session._conn.drain()

    def close(self) -> None:
        self._loop.create_task(self._session.aclose())

    def pause_reading(self) -> None:
        self._session._conn.pause_reading()

    def resume_reading(self) -> None:
        self._session._conn.resume_reading()

    async def pump(self, receiver: Callable[[bytes], None]) -> None:
        while True:
            message = await self._session.receive()
            if message is None:
                return
            if message.opcode == Opcode.BINARY:
                receiver(message.payload)
