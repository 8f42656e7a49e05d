"""Client sides of the kubelet's streaming protocols, for tests that talk to the server directly.

`SpdyClient` upgrades with `Upgrade: SPDY/3.1` and opens streams as client-go does (odd ids,
waiting for each SYN_REPLY), over `binder.kubelet_api.spdy`'s framing (the framing is
symmetric; the framing itself is checked against Go in test_kubelet_spdy.py). `WsClient` upgrades
to a WebSocket with the given subprotocols and sends masked frames. `upgrade` returns an
`HttpAnswer` instead when the server refuses to upgrade.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from binder.kubelet_api.spdy import (
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
)
from binder.kubelet_api.websocket import Opcode


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: str


async def _request(
    host: str,
    port: int,
    context: ssl.SSLContext,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname="localhost")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"] + [f"{k}: {v}" for k, v in headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    answer_headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            answer_headers.setdefault(name.strip().lower(), value.strip())
    return reader, writer, status, answer_headers


async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> str:
    length = int(headers.get("content-length", "0"))
    data = await reader.readexactly(length) if length else await reader.read()
    return data.decode()


class ClientStream:
    def __init__(self, client: SpdyClient, stream_id: int, headers: Mapping[str, str]) -> None:
        self.client = client
        self.id = stream_id
        self.headers = dict(headers)
        self.replied = asyncio.Event()
        self.chunks: deque[bytes] = deque()
        self.arrived = asyncio.Event()
        self.remote_closed = False
        self.reset_by_server: int | None = None

    async def write(self, data: bytes) -> None:
        self.client.send(Data(stream_id=self.id, data=data))
        await self.client.writer.drain()

    async def close(self) -> None:
        self.client.send(Data(stream_id=self.id, fin=True))
        await self.client.writer.drain()

    def reset(self) -> None:
        self.client.send(RstStream(stream_id=self.id, status=RstStatus.CANCEL))

    async def read(self) -> bytes:
        while not self.chunks:
            if self.remote_closed:
                return b""
            self.arrived.clear()
            await self.arrived.wait()
        return self.chunks.popleft()

    async def read_all(self) -> bytes:
        out = b""
        while data := await self.read():
            out += data
        return out


class SpdyClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = protocol
        self.encoder, self.decoder = FrameEncoder(), FrameDecoder()
        self.streams: dict[int, ClientStream] = {}
        self.next_id = 1
        self.goaway = asyncio.Event()
        self.closed = asyncio.Event()
        self.pongs: list[int] = []
        self.pump = asyncio.create_task(self._read())

    def send(self, frame: Any) -> None:
        self.writer.write(self.encoder.encode(frame))

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for frame in self.decoder.feed(data):
                    self._on(frame)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            for stream in self.streams.values():
                stream.remote_closed = True
                stream.replied.set()
                stream.arrived.set()

    def _on(self, frame: Any) -> None:
        match frame:
            case SynReply(stream_id=sid):
                self.streams[sid].replied.set()
            case Data(stream_id=sid, data=data, fin=fin):
                stream = self.streams[sid]
                if data:
                    stream.chunks.append(data)
                if fin:
                    stream.remote_closed = True
                stream.arrived.set()
            case RstStream(stream_id=sid, status=status):
                stream = self.streams[sid]
                stream.reset_by_server = status
                stream.remote_closed = True
                stream.replied.set()
                stream.arrived.set()
            case Ping(id=ident):
                self.pongs.append(ident)
            case GoAway():
                self.goaway.set()

    async def open(self, **headers: str) -> ClientStream:
        stream = ClientStream(self, self.next_id, headers)
        self.streams[stream.id] = stream
        self.next_id += 2
        self.send(SynStream(stream_id=stream.id, headers={k: (v,) for k, v in headers.items()}))
        await self.writer.drain()
        async with asyncio.timeout(10):
            await stream.replied.wait()
        return stream

    def ping(self, ident: int = 1) -> None:
        self.send(Ping(id=ident))

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.pump


async def spdy_upgrade(
    host: str,
    port: int,
    context: ssl.SSLContext,
    target: str,
    *,
    protocols: Sequence[str] = ("v4.channel.k8s.io",),
    method: str = "POST",
    extra: Sequence[tuple[str, str]] = (),
) -> SpdyClient | HttpAnswer:
    headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("Content-Length", "0"), *extra]
    headers += [("X-Stream-Protocol-Version", p) for p in protocols]
    reader, writer, status, answer = await _request(host, port, context, method, target, headers)
    if status != 101:
        body = await _body(reader, answer)
        writer.close()
        return HttpAnswer(status, answer, body)
    return SpdyClient(reader, writer, answer.get("x-stream-protocol-version", ""))


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    status: dict[str, Any] | None
    raw_status: bytes


async def spdy_exec(
    client: SpdyClient, *, stdin: bytes | None = None, stderr: bool = True, tty: bool = False,
    resize: Sequence[tuple[int, int]] = (), stdin_chunks: Sequence[bytes] = (),
) -> ExecResult:  # fmt: skip
    """client-go's v4 exec: error, stdin, stdout, stderr/resize streams; stdin then FIN."""
    error = await client.open(streamType="error")
    sin = await client.open(streamType="stdin") if stdin is not None or stdin_chunks else None
    sout = await client.open(streamType="stdout")
    serr = await client.open(streamType="stderr") if stderr and not tty else None
    rsz = await client.open(streamType="resize") if tty else None
    if rsz is not None:
        for width, height in resize[:1]:
            await rsz.write(json.dumps({"Width": width, "Height": height}).encode() + b"\n")
    if sin is not None:
        for chunk in stdin_chunks:
            await sin.write(chunk)
            await asyncio.sleep(0.2)
        if stdin:
            await sin.write(stdin)
        if rsz is not None:
            for width, height in resize[1:]:
                await asyncio.sleep(0.2)
                await rsz.write(json.dumps({"Width": width, "Height": height}).encode() + b"\n")
                await sin.write(b"\n")
        if not tty:
            await sin.close()
    out, err = await asyncio.gather(sout.read_all(), serr.read_all() if serr else _nothing())
    raw = await error.read_all()
    status = json.loads(raw) if raw and client.protocol.startswith("v4") else None
    return ExecResult(stdout=out, stderr=err, status=status, raw_status=raw)


async def _nothing() -> bytes:
    return b""


# --- WebSocket ---------------------------------------------------------------------------------


def _mask(payload: bytes) -> tuple[bytes, bytes]:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return key, masked


@dataclass
class WsClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: str
    messages: asyncio.Queue[tuple[int, bytes]] = field(default_factory=asyncio.Queue)
    pump: asyncio.Task[None] | None = None
    close_code: int | None = None

    def start(self) -> None:
        self.pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(2)
                opcode, length = head[0] & 0x0F, head[1] & 0x7F
                assert not head[1] & 0x80, "server frames are never masked"
                if length == 126:
                    (length,) = struct.unpack(">H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack(">Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
                if opcode == Opcode.CLOSE:
                    self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
                await self.messages.put((opcode, payload))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            await self.messages.put((-1, b""))

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        key, masked = _mask(payload)
        length = len(payload)
        first = (0x80 if fin else 0) | opcode
        if length < 126:
            head = struct.pack(">BB", first, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack(">BBH", first, 0x80 | 126, length)
        else:
            head = struct.pack(">BBQ", first, 0x80 | 127, length)
        self.writer.write(head + key + masked)

    def send_channel(self, channel: int, data: bytes) -> None:
        if "base64" in self.protocol:
            self.send(Opcode.TEXT, bytes([ord("0") + channel]) + base64.b64encode(data))
        else:
            self.send(Opcode.BINARY, bytes([channel]) + data)

    async def channels_until_close(self) -> dict[int, bytes]:
        """Everything per channel until the server ends the WebSocket."""
        out: dict[int, bytes] = {}
        while True:
            opcode, payload = await self.messages.get()
            if opcode == -1:
                return out
            if opcode in (Opcode.BINARY, Opcode.TEXT) and payload:
                if "base64" in self.protocol:
                    channel, data = payload[0] - ord("0"), base64.b64decode(payload[1:])
                else:
                    channel, data = payload[0], payload[1:]
                out[channel] = out.get(channel, b"") + data

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump


async def ws_upgrade(
    host: str, port: int, context: ssl.SSLContext, target: str, *, protocols: Sequence[str],
    extra: Sequence[tuple[str, str]] = (),
) -> WsClient | HttpAnswer:  # fmt: skip
    key = base64.b64encode(os.urandom(16)).decode()
    headers = [
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Protocol", ", ".join(protocols)), *extra,
    ]  # fmt: skip
    reader, writer, status, answer = await _request(host, port, context, "GET", target, headers)
    if status != 101:
        body = await _body(reader, answer)
        writer.close()
        return HttpAnswer(status, answer, body)
    from binder.kubelet_api.websocket import accept_key

    assert answer["sec-websocket-accept"] == accept_key(key)
    client = WsClient(reader, writer, answer.get("sec-websocket-protocol", ""))
    client.start()
    return client


class WsTunnel:
    """What kubectl's tunnelling dialer does: a SPDY session inside binary WebSocket messages."""

    def __init__(self, ws: WsClient) -> None:
        self.ws = ws
        reader = asyncio.StreamReader()
        self.reader = reader

        async def feed() -> None:
            while True:
                opcode, payload = await ws.messages.get()
                if opcode == -1:
                    reader.feed_eof()
                    return
                if opcode == Opcode.BINARY:
                    reader.feed_data(payload)

        self.feeder = asyncio.create_task(feed())

    def spdy(self) -> SpdyClient:
        tunnel = self

        class Writer:
            def write(self, data: bytes) -> None:
                tunnel.ws.send(Opcode.BINARY, data)

            async def drain(self) -> None:
                await tunnel.ws.writer.drain()

            def close(self) -> None:
                tunnel.ws.writer.close()

            async def wait_closed(self) -> None:
                with contextlib.suppress(Exception):
                    await tunnel.ws.writer.wait_closed()

        return SpdyClient(self.reader, Writer(), "portforward.k8s.io")  # type: ignore[arg-type]
