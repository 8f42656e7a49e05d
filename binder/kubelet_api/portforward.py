"""`portForward` as the kubelet serves it, each forwarded connection an SSH `direct-tcpip` channel.

The kubelet's protocol (`k8s.io/cri-streaming/pkg/streaming/portforward`, `portforward.k8s.io`
over SPDY): for every connection kubectl accepts locally it opens two streams with the same
`requestID` and `port` headers, `streamType: error` (which it half-closes at once) and
`streamType: data`. A stream without a valid port (1-65535) or type is reset. Once both of a
pair are there, the data stream is joined to a `direct-tcpip` channel to 127.0.0.1:<port> in
the pod, through the one SSH connection of this port-forward session: bytes both ways, the
client's FIN becomes the channel's EOF and the channel's EOF our FIN. A failure (nothing
listens there, sshd refuses forwarding) is written on the error stream and both streams are
reset; kubectl prints it and ends the session. The error stream is closed when the pair is done
(client-go waits for that). A pair whose second stream does not come within the creation
timeout is told so on the error stream, as the kubelet does.

The session ends when the client goes away, says GOAWAY with nothing open, or on the SPDY
session's idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Final

import asyncssh

from binder.kubelet_api.spdy import RstStatus
from binder.kubelet_api.spdy_session import SpdySession, SpdyStream, StreamClosed

__all__ = ["PROTOCOLS", "forward_error", "pair_key", "serve", "stream_problem"]

log = logging.getLogger(__name__)

PROTOCOLS: Final = ("portforward.k8s.io",)
TARGET_HOST: Final = "127.0.0.1"
CHUNK: Final = 32 * 1024


def stream_problem(stream: SpdyStream) -> str | None:
    """Why the kubelet would reject this stream (`httpStreamReceived`), None when it is fine."""
    port = stream.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'unable to parse "{port}" as a port'
    kind = stream.header("streamType")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("error", "data"):
        return f'invalid stream type "{kind}"'
    return None


def pair_key(stream: SpdyStream) -> str:
    """The pair a stream belongs to: its `requestID`, or (old clients) derived from the stream
    id as the kubelet derives it (the error stream is opened first, the data stream next)."""
    request_id = stream.header("requestID")
    if request_id:
        return request_id
    return str(stream.id if stream.header("streamType") == "error" else stream.id - 2)


def forward_error(port: int, pod: str, reason: str) -> str:
    return f"error forwarding port {port} to pod {pod}: {reason}"


@dataclass
class _Pair:
    key: str
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


async def serve(
    session: SpdySession,
    connection: asyncssh.SSHClientConnection,
    *,
    pod: str,
    creation_timeout: float = 30.0,
) -> None:
    """Forwards every stream pair the client opens until the session ends."""
    pairs: dict[str, _Pair] = {}
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def timed_out(pair: _Pair) -> None:
        if pairs.get(pair.key) is not pair:
            return
        del pairs[pair.key]
        log.info("port-forward to %s: timed out waiting for the streams of request %s", pod, pair.key)
        if pair.data is not None:
            pair.data.reset()
        if pair.error is not None:
            running.add(
                loop.create_task(_tell(pair.error, f"timed out waiting for streams of request {pair.key}"))
            )

    try:
        while True:
            stream = await session.accept()
            if stream is None:
                break
            problem = stream_problem(stream)
            if problem is not None:
                log.info("port-forward to %s: stream rejected: %s", pod, problem)
                stream.reset(RstStatus.PROTOCOL_ERROR)
                continue
            key = pair_key(stream)
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = _Pair(key=key)
                pair.timer = loop.call_later(creation_timeout, timed_out, pair)
            kind = stream.header("streamType")
            if (kind == "data" and pair.data is not None) or (kind == "error" and pair.error is not None):
                stream.reply()
                await _tell(
                    stream, f"error processing stream for request {key}: {kind} stream already assigned"
                )
                continue
            stream.reply()
            if kind == "data":
                pair.data = stream
            else:
                pair.error = stream
            if pair.data is not None and pair.error is not None:
                if pair.timer is not None:
                    pair.timer.cancel()
                del pairs[key]
                task = loop.create_task(_forward(pair.data, pair.error, connection, pod=pod))
                pair.task = task
                running.add(task)
                task.add_done_callback(running.discard)
        # GOAWAY or the end: let the forwards in flight finish (they end with their streams).
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    finally:
        for pair in pairs.values():
            if pair.timer is not None:
                pair.timer.cancel()
        for task in list(running):
            task.cancel()
        for task in list(running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _tell(stream: SpdyStream, message: str) -> None:
    with contextlib.suppress(StreamClosed, ConnectionError):
        await stream.write(message.encode())
        await stream.close()


async def _forward(
    data: SpdyStream, error: SpdyStream, connection: asyncssh.SSHClientConnection, *, pod: str
) -> None:
    port = int(data.header("port"))
    try:
        reader, writer = await connection.open_connection(TARGET_HOST, port)
    except asyncssh.ChannelOpenError as exc:
        reason = exc.reason or "refused"
        if exc.code == asyncssh.OPEN_CONNECT_FAILED:
            reason = f"nothing accepts connections on {TARGET_HOST}:{port} inside the pod ({reason})"
        await _fail(data, error, forward_error(port, pod, reason))
        return
    except (asyncssh.Error, OSError) as exc:
        await _fail(data, error, forward_error(port, pod, f"the SSH connection failed: {exc}"))
        return

    async def upstream() -> bool:  # client -> pod; True when the client reset the stream
        try:
            while True:
                chunk = await data.read()
                if not chunk:
                    return data.reset_seen
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()

    async def downstream() -> None:  # pod -> client
        while True:
            chunk = await reader.read(CHUNK)
            if not chunk:
                break
            await data.write(chunk)
        await data.close()

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    try:
        # Done when the pod's side ended (client-go then resets the data stream) or the client
        # reset the stream (its local connection closed); after a client FIN alone the pod's
        # answer is still to come.
        done, _ = await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        if down not in done and (up.cancelled() or up.exception() is not None or not up.result()):
            await asyncio.wait([down])
        failure = down.exception() if down.done() and not down.cancelled() else None
        if failure is not None and not isinstance(failure, StreamClosed):
            log.info("port-forward to %s port %s ended: %s", pod, port, failure)
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        writer.close()
        with contextlib.suppress(Exception):
            await error.close()


async def _fail(data: SpdyStream, error: SpdyStream, message: str) -> None:
    log.info("port-forward: %s", message)
    with contextlib.suppress(StreamClosed, ConnectionError):
        await error.write(message.encode())
    data.reset()
    error.reset()
