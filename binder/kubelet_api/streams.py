"""The kubelet API's streaming routes, `exec`, `attach` and `portForward`, end to end.

For one upgraded connection (`upgrade`), already authenticated and authorised by the app's guard:
1. the route and its options (`stream_targets.parse_stream_path`, `remotecommand`), and the
   protocol: SPDY/3.1 with `X-Stream-Protocol-Version` (what kube-apiserver sends a kubelet,
   also when it translates kubectl's WebSocket), or WebSocket (`v5`/`v4.channel.k8s.io` for exec
   and attach, `SPDY/3.1+portforward.k8s.io` tunnelling for port-forward), which kube-apiserver
   proxies straight through to nodes that declare `ExtendWebSocketsToKubelet`;
2. the target: the Kubernetes pod (pod reader) and its RunPod pod (`GET /v2/pods/{id}`), judged
   by `stream_targets`;
3. an SSH connection to the pod's sshd through the `SshDialer`, within `connect_timeout`;
4. only then the 101, and the session: `remotecommand.run` or `portforward.serve`.
Any refusal in 1-3 is an HTTP answer with a message naming the cause and the remedy (kubectl
shows it as "unable to upgrade connection: ..."); nothing waits unbounded: the dial has its
timeout, stream creation `creation_timeout`, and an open session `idle_timeout`.

Nothing here logs commands (argv may carry secrets) or key material; the dialer owns the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncssh
from starlette.requests import Request

from binder.kubelet_api import portforward, remotecommand
from binder.kubelet_api.remotecommand import ExecChannels, ExecOptions
from binder.kubelet_api.spdy_session import SpdySession, SpdyStream
from binder.kubelet_api.stream_targets import (
    StreamPath,
    StreamRefusal,
    check_pod,
    parse_stream_path,
    stream_target,
)
from binder.kubelet_api.upgrade import UpgradedConnection
from binder.kubelet_api.websocket import accept_key, choose_protocol, requested_protocols
from binder.kubelet_api.ws_session import ChannelMux, TunnelWire, WebSocketSession
from binder.ssh.dialing import SshDialer, SshEndpoint, SshUnavailable
from runpod_api.errors import RunPodError, RunPodNotFound, RunPodRateLimited

__all__ = ["DEFAULT_STREAM_TIMINGS", "StreamTimings", "StreamingApi"]

log = logging.getLogger(__name__)
# asyncssh logs every session's command line at INFO; argv may carry secrets (tokens, passwords
# typed as arguments), so its INFO and DEBUG stay out of the binder's logs unless someone asks.
if logging.getLogger("asyncssh").level == logging.NOTSET:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

TUNNEL_PROTOCOL: Final = "SPDY/3.1+portforward.k8s.io"
_CLOSE_WAIT: Final = 5.0


@dataclass(frozen=True, slots=True)
class StreamTimings:
    """Seconds. `idle_timeout` None: never (the kubelet's default is 4 h)."""

    connect_timeout: float = 20.0
    idle_timeout: float | None = 4 * 3600.0
    creation_timeout: float = 30.0
    first_resize_wait: float = 1.0


DEFAULT_STREAM_TIMINGS: Final = StreamTimings()


class RunPodPods(Protocol):
    async def get_pod(self, pod_id: str) -> Any: ...


PodReader = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class _Protocol:
    websocket: bool
    name: str


class StreamingApi:
    def __init__(
        self,
        *,
        node_name: str,
        read_pod: PodReader,
        runpod: RunPodPods,
        dialer: SshDialer,
        timings: StreamTimings = DEFAULT_STREAM_TIMINGS,
    ) -> None:
        self._node = node_name
        self._read_pod = read_pod
        self._runpod = runpod
        self._dialer = dialer
        self._timings = timings

    async def serve(self, request: Request, conn: UpgradedConnection) -> None:
        """Answers one upgrade request on a streaming path (the caller has authorised it)."""
        route = parse_stream_path(request.url.path)
        if route is None:
            conn.respond(404, "404 page not found")
            return
        try:
            protocol = _choose(route, conn)
            options: ExecOptions | None = None
            command: str | None = None
            if route.kind != "portForward":
                options = remotecommand.parse_exec_options(dict(request.query_params))
                if route.kind == "exec":
                    command = remotecommand.ssh_command(request.query_params.getlist("command"))
                else:
                    refusal = remotecommand.attach_refusal(options, pod=route.pod)
                    if refusal is not None:
                        raise refusal
            endpoint = await self._endpoint(route)
            ssh = await self._dial(endpoint, route)
        except StreamRefusal as refusal:
            log.info(
                "kubelet API: %s %s/%s refused: %s", route.kind, route.namespace, route.pod, refusal.message
            )
            conn.respond(refusal.status, refusal.message, refusal.headers)
            return
        try:
            if route.kind == "portForward":
                await self._port_forward(conn, protocol, ssh, route)
            else:
                assert options is not None
                await self._exec(conn, protocol, ssh, route, options, command)
        finally:
            ssh.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await ssh.wait_closed()

    # --- target and SSH ---------------------------------------------------------------------

    async def _endpoint(self, route: StreamPath) -> SshEndpoint:
        target = check_pod(await self._read_pod(route.namespace, route.pod), route, node_name=self._node)
        try:
            runpod_pod = await self._runpod.get_pod(target.runpod_pod_id)
        except RunPodNotFound:
            raise StreamRefusal(
                f"cannot reach pod {route.namespace}/{route.pod}: its RunPod pod {target.runpod_pod_id} "
                "no longer exists (it was terminated)"
            ) from None
        except RunPodRateLimited as exc:
            raise StreamRefusal(
                f"RunPod rate limit reached; try again in {max(1, round(exc.retry_after))} s", status=500
            ) from None
        except RunPodError as exc:
            raise StreamRefusal(
                f"cannot look up RunPod pod {target.runpod_pod_id}: {exc.detail}", status=500
            ) from None
        return stream_target(runpod_pod, target, route)

    async def _dial(self, endpoint: SshEndpoint, route: StreamPath) -> asyncssh.SSHClientConnection:
        where = f"the sshd of pod {route.namespace}/{route.pod} (RunPod pod {endpoint.runpod_pod_id})"
        limit = self._timings.connect_timeout
        try:
            async with asyncio.timeout(limit):
                return await self._dialer.connect(endpoint)
        except SshUnavailable as exc:
            raise StreamRefusal(str(exc)) from None
        except TimeoutError:
            raise StreamRefusal(
                f"cannot reach {where} at {endpoint.host}:{endpoint.port}: no answer within {limit:g} s "
                "(does the image run sshd? RunPod's official images do)"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
            else:
                reason = getattr(exc, "reason", "") or str(exc)
            raise StreamRefusal(
                f"cannot reach {where} at {endpoint.host}:{endpoint.port}: {reason or type(exc).__name__} "
                "(does the image run sshd? RunPod's official images do)"
            ) from None

    # --- exec and attach --------------------------------------------------------------------

    async def _exec(
        self,
        conn: UpgradedConnection,
        protocol: _Protocol,
        ssh: asyncssh.SSHClientConnection,
        route: StreamPath,
        options: ExecOptions,
        command: str | None,
    ) -> None:
        timings = self._timings
        log.info(
            "kubelet API: %s %s/%s (tty=%s, stdin=%s) over %s",
            route.kind, route.namespace, route.pod, options.tty, options.stdin, protocol.name,
        )  # fmt: skip
        if protocol.websocket:
            conn.switch(_websocket_headers(conn, protocol.name))
            session = WebSocketSession(conn, idle_timeout=timings.idle_timeout)
            conn.attach(session.data_received, session.connection_lost)
            mux = ChannelMux(session, base64_codec="base64" in protocol.name)
            try:
                channels = await _websocket_channels(mux, session, options, protocol.name)
                code = await remotecommand.run(
                    channels,
                    ssh,
                    command=command,
                    options=options,
                    first_resize_wait=timings.first_resize_wait,
                )
            finally:
                await mux.aclose()
                await session.aclose()
        else:
            conn.switch(_spdy_headers(protocol.name))
            spdy = SpdySession(conn, idle_timeout=timings.idle_timeout)
            conn.attach(spdy.data_received, spdy.connection_lost)
            try:
                gathered = await _spdy_channels(spdy, options, protocol.name, timings.creation_timeout)
                if gathered is None:
                    return
                channels, streams = gathered
                code = await remotecommand.run(
                    channels,
                    ssh,
                    command=command,
                    options=options,
                    first_resize_wait=timings.first_resize_wait,
                )
                for stream in streams:
                    with contextlib.suppress(Exception):
                        await stream.close()
            finally:
                await spdy.aclose()
        log.info("kubelet API: %s %s/%s ended (exit code %s)", route.kind, route.namespace, route.pod, code)

    # --- port-forward -----------------------------------------------------------------------

    async def _port_forward(
        self,
        conn: UpgradedConnection,
        protocol: _Protocol,
        ssh: asyncssh.SSHClientConnection,
        route: StreamPath,
    ) -> None:
        timings = self._timings
        pod = f"{route.namespace}/{route.pod}"
        log.info("kubelet API: port-forward to %s over %s", pod, protocol.name)
        pump: asyncio.Task[None] | None = None
        if protocol.websocket:
            conn.switch(_websocket_headers(conn, protocol.name))
            ws = WebSocketSession(conn)
            conn.attach(ws.data_received, ws.connection_lost)
            tunnel = TunnelWire(ws)
            spdy = SpdySession(tunnel, idle_timeout=timings.idle_timeout)

            async def feed() -> None:
                await tunnel.pump(spdy.data_received)
                spdy.connection_lost()

            pump = asyncio.create_task(feed())
        else:
            conn.switch(_spdy_headers(protocol.name))
            spdy = SpdySession(conn, idle_timeout=timings.idle_timeout)
            conn.attach(spdy.data_received, spdy.connection_lost)
        try:
            await portforward.serve(spdy, ssh, pod=pod, creation_timeout=timings.creation_timeout)
        finally:
            await spdy.aclose()
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        log.info("kubelet API: port-forward to %s ended", pod)


# --- protocol choice and channel setup -------------------------------------------------------


def _choose(route: StreamPath, conn: UpgradedConnection) -> _Protocol:
    if conn.header("upgrade").lower() == "websocket":
        if conn.header("sec-websocket-version") != "13" or not conn.header("sec-websocket-key"):
            raise StreamRefusal(
                "unable to upgrade: a WebSocket upgrade needs Sec-WebSocket-Version 13 and a key"
            )
        supported = (TUNNEL_PROTOCOL,) if route.kind == "portForward" else remotecommand.WEBSOCKET_PROTOCOLS
        asked = requested_protocols(conn.header_values("sec-websocket-protocol"))
        chosen = choose_protocol(asked, supported)
        if chosen is None:
            raise StreamRefusal(
                f"unable to upgrade: requested protocol(s) are not supported: {asked}; supports {list(supported)}"
            )
        return _Protocol(websocket=True, name=chosen)
    supported = portforward.PROTOCOLS if route.kind == "portForward" else remotecommand.SPDY_PROTOCOLS
    return _Protocol(
        websocket=False,
        name=remotecommand.negotiate(conn.header_values("x-stream-protocol-version"), supported),
    )


def _spdy_headers(protocol: str) -> list[tuple[str, str]]:
    return [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", protocol)]


def _websocket_headers(conn: UpgradedConnection, protocol: str) -> list[tuple[str, str]]:
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(conn.header("sec-websocket-key"))),
        ("Sec-WebSocket-Protocol", protocol),
    ]


async def _spdy_channels(
    spdy: SpdySession, options: ExecOptions, protocol: str, limit: float
) -> tuple[ExecChannels, list[SpdyStream]] | None:
    """Waits for the streams the client is to open (the kubelet's `waitForStreams`), replying to
    each; None when they do not all come within `limit` seconds or the client went away."""
    expected = {"error"}
    expected |= {"stdin"} if options.stdin else set()
    expected |= {"stdout"} if options.stdout else set()
    expected |= {"stderr"} if options.stderr else set()
    expected |= {"resize"} if options.tty and protocol != remotecommand.V2 else set()
    streams: dict[str, SpdyStream] = {}
    everything: list[SpdyStream] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not expected <= streams.keys():
        try:
            stream = await spdy.accept(within=max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.info(
                "client opened %s of streams %s in %g s: giving up", sorted(streams), sorted(expected), limit
            )
            return None
        if stream is None:
            return None
        stream.reply()
        everything.append(stream)
        kind = stream.header("streamType")
        if kind in ("error", "stdin", "stdout", "stderr", "resize") and kind not in streams:
            streams[kind] = stream
        else:
            log.info("unexpected stream type %r: ignored", kind)
    error = streams["error"]

    async def write_status(status: Mapping[str, Any]) -> None:
        message = remotecommand.status_message(protocol, status)
        if message:
            await error.write(message)
        await error.close()

    channels = ExecChannels(
        stdin=streams.get("stdin"),
        stdout=streams.get("stdout"),
        stderr=streams.get("stderr"),
        resize=streams.get("resize"),
        write_status=write_status,
        ended=spdy.ended,
    )
    return channels, everything


async def _websocket_channels(
    mux: ChannelMux, session: WebSocketSession, options: ExecOptions, protocol: str
) -> ExecChannels:
    stdin, stdout, stderr, error, resize = mux.channels
    # As the kubelet: an empty message on the lowest writable channel says "connected".
    await mux.send(1 if options.stdout else 2 if options.stderr else 3, b"")

    async def write_status(status: Mapping[str, Any]) -> None:
        message = remotecommand.status_message(protocol, status)
        if message:
            await error.write(message)

    return ExecChannels(
        stdin=stdin if options.stdin else None,
        stdout=stdout if options.stdout else None,
        stderr=stderr if options.stderr else None,
        resize=resize if options.tty else None,
        write_status=write_status,
        ended=session.ended,
    )
