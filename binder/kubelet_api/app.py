"""The kubelet API's HTTP surface: routes, authentication gate, error answers.

Routes (as the kubelet's, `node/api/server.go` in Virtual Kubelet):
- `GET /containerLogs/{namespace}/{pod}/{container}`: the container's logs from RunPod, as
  `text/plain`, streamed (`streaming`), for the pod bound to this node (`targets`). When the
  RunPod pod is gone (terminated after the pod finished), the lines the completion reader
  retained (`binder.retained_logs`) answer instead, shaped alike; a follow then ends with them.
- `GET /pods`, `/runningpods/`, `/stats/summary`, `/metrics/resource`: the node's pods and
  their resource usage (`node_stats`, pure), from the pod controller's watch cache and usage
  ledger (`NodeView`): no RunPod call of their own.
- `exec`, `attach`, `portForward`: with an `SshDialer`, upgrade requests (SPDY/3.1 or WebSocket)
  are taken over from uvicorn (`upgrade`) and served over SSH to the pod's sshd (`streams`), after
  the same `guard` as every route; a request without an upgrade gets the kubelet's 400
  "Upgrade request required". Without a dialer they answer 501 like the rest below.
- Everything else the kubelet also serves (`run`, other `stats` and `metrics` paths, `logs`,
  `checkpoint`, `configz`, `debug`): 501 with a message saying what a RunPod node does not do.
- Anything else: 404.

Every request is authenticated and authorised first (`auth`), as the kubelet does: no client
certificate and no bearer token → 401; not allowed → 403. Error bodies are plain text, which
the apiserver shows to kubectl users (a 400's body is the message of `kubectl logs`' error).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from binder.kubelet_api import node_stats
from binder.kubelet_api.auth import AuthError, Identity, KubeAuth, access_checks, forbidden_message
from binder.kubelet_api.auth import identity_from_certificate as _identity_from_certificate
from binder.kubelet_api.options import LogOptions, LogRequestError, parse_log_options, plan_upstream
from binder.kubelet_api.peers import PeerRegistry
from binder.kubelet_api.shaping import Shown, render_retained
from binder.kubelet_api.streaming import (
    DEFAULT_TIMINGS,
    LogSource,
    LogStream,
    StreamTimings,
    UpstreamFailure,
    describe_upstream_failure,
)
from binder.kubelet_api.streams import DEFAULT_STREAM_TIMINGS, StreamingApi
from binder.kubelet_api.streams import StreamTimings as SessionTimings
from binder.kubelet_api.targets import LogTarget, check_ownership, gone_error, resolve_target
from binder.kubelet_api.upgrade import UpgradedConnection, UpgradeHandler
from binder.pods.usage import UsageLedger
from binder.retained_logs import RetainedLogs
from binder.ssh.dialing import SshDialer
from runpod_api.errors import RunPodError, RunPodNotFound

__all__ = ["KubeletApi", "NodeView", "PodReader", "RunPodLogs", "build_app"]

log = logging.getLogger(__name__)

# Kubelet routes a RunPod node does not serve, and why (shown to the user).
UNSUPPORTED: Final[Mapping[str, str]] = {
    "exec": "kubectl exec is not supported on a RunPod node (RunPod offers SSH instead)",
    "attach": "kubectl attach is not supported on a RunPod node",
    "portForward": "kubectl port-forward is not supported on a RunPod node (use the pod's public ports)",
    "run": "running commands is not supported on a RunPod node",
    "stats": "of the stats endpoints a RunPod node serves only /stats/summary",
    "metrics": "of the metrics endpoints a RunPod node serves only /metrics/resource",
    "logs": "node logs are not available on a RunPod node",
    "checkpoint": "checkpoints are not supported on a RunPod node",
    "configz": "configz is not served by a RunPod node",
    "debug": "debug endpoints are not served by a RunPod node",
}
# Served over SSH when there is a dialer.
STREAMING: Final = frozenset({"exec", "attach", "portForward"})
_TEXT: Final = "text/plain; charset=utf-8"


class RunPodLogs(LogSource, Protocol):
    """What the kubelet API needs of `runpod_api.client.RunPodClient`."""

    async def get_pod(self, pod_id: str) -> Any: ...


@dataclass(frozen=True)
class NodeView:
    """The node as the pod controller last saw it: latest-value cells it owns, read here."""

    pods: Callable[[], Iterable[Mapping[str, Any]]]
    usage: Callable[[], UsageLedger]
    started_at: datetime


EMPTY_VIEW: Final = NodeView(pods=lambda: (), usage=UsageLedger.empty, started_at=datetime.now(UTC))


# Reads one pod as a raw dict (None when it does not exist).
PodReader = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


def _text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=status, media_type=_TEXT)


class KubeletApi:
    """The handlers; one instance per server. Holds no per-request state."""

    def __init__(
        self,
        *,
        node_name: str,
        auth: KubeAuth,
        peers: PeerRegistry,
        read_pod: PodReader,
        runpod: RunPodLogs,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timings: StreamTimings = DEFAULT_TIMINGS,
        retained: RetainedLogs | None = None,
        view: NodeView = EMPTY_VIEW,
        ssh_dialer: SshDialer | None = None,
        stream_timings: SessionTimings = DEFAULT_STREAM_TIMINGS,
    ) -> None:
        """`retained`: the lines kept of finished pods (None: a finished pod's logs are gone);
        `view`: the node's pods and their usage (empty: the read endpoints list nothing);
        `ssh_dialer`: how exec, attach and port-forward reach a pod's sshd (None: they answer
        501); `stream_timings`: their connect, stream-creation and idle timeouts."""
        self._node = node_name
        self._streams = (
            StreamingApi(
                node_name=node_name,
                read_pod=read_pod,
                runpod=runpod,
                dialer=ssh_dialer,
                timings=stream_timings,
            )
            if ssh_dialer is not None
            else None
        )
        self._view = view
        self._retained = retained
        self._auth = auth
        self._peers = peers
        self._read_pod = read_pod
        self._runpod = runpod
        self._clock = clock
        self._timings = timings

    async def _identity(self, request: Request) -> Identity | Response:
        certificate = self._peers.certificate(request.scope.get("client"))
        if certificate is not None:
            identity = _identity_from_certificate(certificate)
            if identity is not None:
                return identity
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _text(401, "Unauthorized")
        try:
            identity = await self._auth.authenticate_token(token)
        except AuthError as exc:
            log.warning("kubelet API: cannot authenticate a token: %s", exc)
            return _text(401, "Unauthorized")
        return identity if identity is not None else _text(401, "Unauthorized")

    async def guard(self, request: Request) -> Response | None:
        """None when the caller may make this request, else the 401/403/500 answer."""
        identity = await self._identity(request)
        if isinstance(identity, Response):
            return identity
        checks = access_checks(method=request.method, path=request.url.path, node=self._node)
        try:
            allowed = await self._auth.authorize_any(identity, checks)
        except AuthError as exc:
            log.warning("kubelet API: cannot authorise %s: %s", identity.user, exc)
            return _text(500, f"Authorization error (user={identity.user}, resource=nodes)")
        if not allowed:
            log.info("kubelet API: %s denied %s %s", identity.user, request.method, request.url.path)
            return _text(403, forbidden_message(identity, checks))
        return None

    async def container_logs(self, request: Request, namespace: str, pod: str, container: str) -> Response:
        denied = await self.guard(request)
        if denied is not None:
            return denied
        now = self._clock()
        try:
            options = parse_log_options(dict(request.query_params), now=now)
            raw = await self._read_pod(namespace, pod)
            target = resolve_target(
                raw,
                namespace=namespace,
                name=pod,
                container=container,
                node_name=self._node,
                accept_terminated=True,
            )
            if target.terminated:
                answer = self._from_retained(target, options)
                if answer is None:
                    raise gone_error(namespace=namespace, name=pod, pod_id=target.runpod_pod_id)
                return answer
            try:
                runpod_pod = await self._runpod.get_pod(target.runpod_pod_id)
            except RunPodError as exc:
                # Terminated, its `runpod.io/terminated` annotation not written yet.
                answer = self._from_retained(target, options) if isinstance(exc, RunPodNotFound) else None
                if answer is not None:
                    return answer
                failure = describe_upstream_failure(exc, pod_id=target.runpod_pod_id)
                return _text(failure.status, failure.message)
            check_ownership(getattr(runpod_pod, "env", None), target=target, namespace=namespace, name=pod)
        except LogRequestError as exc:
            return _text(exc.status, exc.message)
        stream = LogStream(
            source=self._runpod,
            pod_id=target.runpod_pod_id,
            pod_uid=target.pod_uid,
            options=options,
            upstream=plan_upstream(options, started_at=target.created_at),
            request_time=now,
            timings=self._timings,
        )
        try:
            await stream.open()
        except UpstreamFailure as failure:
            return _text(failure.status, failure.message)
        except BaseException:
            await stream.aclose()
            raise
        return StreamingResponse(
            stream.chunks(),
            media_type=_TEXT,
            # Proxies must pass lines on as they come.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _from_retained(self, target: LogTarget, options: LogOptions) -> Response | None:
        """The answer from retained lines, or None when none were kept for this pod."""
        lines = self._retained.lines(target.pod_uid) if self._retained is not None else None
        if lines is None:
            return None
        body = render_retained([Shown(ts=line.ts, text=line.text) for line in lines], options=options)
        return Response(content=body, media_type=_TEXT, headers={"Cache-Control": "no-cache"})

    async def pods(self, request: Request) -> Response:
        return await self._json(request, lambda: node_stats.pod_list(self._view.pods()))

    async def running_pods(self, request: Request) -> Response:
        return await self._json(
            request, lambda: node_stats.running_pods(self._view.pods(), self._view.usage())
        )

    async def stats_summary(self, request: Request) -> Response:
        return await self._json(
            request,
            lambda: node_stats.summary(
                node_name=self._node,
                node_started=self._view.started_at,
                usage=self._view.usage(),
                now=self._clock(),
            ),
        )

    async def resource_metrics(self, request: Request) -> Response:
        denied = await self.guard(request)
        if denied is not None:
            return denied
        body = node_stats.resource_metrics(self._view.usage(), now=self._clock())
        return Response(content=body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _json(self, request: Request, answer: Callable[[], Mapping[str, Any]]) -> Response:
        denied = await self.guard(request)
        if denied is not None:
            return denied
        return JSONResponse(answer())

    @property
    def upgrade_handler(self) -> UpgradeHandler | None:
        """What serves streaming upgrades (`upgrade.streaming_protocol`); None without a dialer."""
        return self.serve_upgrade if self._streams is not None else None

    async def serve_upgrade(self, request: Request, conn: UpgradedConnection) -> None:
        """An upgrade request on a streaming path, taken over from uvicorn: guarded as any other
        route (401/403 before any upgrade), then served by `streams`."""
        denied = await self.guard(request)
        if denied is not None:
            conn.respond_with(denied)
            return
        if self._streams is None:
            first = request.url.path.strip("/").split("/", 1)[0]
            conn.respond(501, UNSUPPORTED.get(first, "not supported on a RunPod node"))
            return
        await self._streams.serve(request, conn)

    async def other(self, request: Request, path: str) -> Response:
        denied = await self.guard(request)
        if denied is not None:
            return denied
        first = path.split("/", 1)[0]
        if self._streams is not None and first in STREAMING:
            return _text(400, "Upgrade request required")
        reason = UNSUPPORTED.get(first)
        if reason is not None:
            return _text(501, reason)
        return _text(404, "404 page not found")


def build_app(api: KubeletApi) -> FastAPI:
    app = FastAPI(
        title="runpod-kubelet kubelet API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_api_route(
        "/containerLogs/{namespace}/{pod}/{container}",
        api.container_logs,
        methods=["GET"],
        response_class=StreamingResponse,
    )
    for path, handler in (
        ("/pods", api.pods),
        ("/pods/", api.pods),
        # client-go's path joining drops the slash (VK's suite asks for `runningpods`); the
        # kubelet's router answers both.
        ("/runningpods", api.running_pods),
        ("/runningpods/", api.running_pods),
        ("/stats/summary", api.stats_summary),
        ("/metrics/resource", api.resource_metrics),
    ):
        app.add_api_route(path, handler, methods=["GET"])
    app.add_api_route(
        "/{path:path}",
        api.other,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    )
    return app
