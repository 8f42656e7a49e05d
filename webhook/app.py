"""HTTP for the webhook: FastAPI routes over the pure decisions, plus health and metrics.

Routes: `POST /mutate`, `POST /validate` (AdmissionReview v1 in, AdmissionReview v1 out, always
HTTP 200 for a review we could read), `GET /healthz`, `GET /readyz` (200 once the catalog is
loaded), `GET /metrics` (Prometheus). A body that is not an AdmissionReview gets HTTP 400 with a
plain message; an unexpected failure inside a decision is logged and answered as a denial with
code 500 (failing closed, never an HTTP 500 the apiserver would report as a transport error).

Keeps "the request was malformed" (HTTP 400) apart from "the object was rejected" (`allowed:
false`). Holds no decision logic of its own; the only state is metrics and a bounded memo of
plans keyed by the catalog revision (many pods of one Job ask the same question).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson
from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.catalog import Catalog
from contract.policy import NodePolicy
from webhook.admission import JobLookup, PlanRequest, mutate, validate, write_plan
from webhook.caches import CatalogSource, catalog_age_seconds
from webhook.problems import Denial
from webhook.reviews import MalformedReview, Verdict, parse_review, render_review
from webhook.tolerations import DEFAULT_OUTAGE_TOLERATIONS, OutageTolerations
from webhook.volumes import VolumeLookups

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_PLAN_CACHE_SIZE: Final = 512
_JSON_BYTES: Final = b"application/json"
_TEXT: Final = b"text/plain; charset=utf-8"
_LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Admissions by endpoint and result, their latency, and the catalog's age."""

    def __init__(
        self,
        catalog: CatalogSource,
        *,
        tls_handshakes: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry()
        self.admissions = Counter(
            "runpod_webhook_admissions",
            "Admission reviews answered, by endpoint and result (allowed, patched, denied, malformed, error).",
            ["endpoint", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "runpod_webhook_admission_seconds",
            "Time to answer one admission review, body read to response built.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        age = Gauge(
            "runpod_webhook_catalog_age_seconds",
            "Seconds since the GPU catalog in use was fetched from RunPod; -1 before one is loaded.",
            registry=self.registry,
        )
        age.set_function(lambda: catalog_age_seconds(catalog, now=clock()))
        if tls_handshakes is not None:
            handshakes = Gauge(
                "runpod_webhook_tls_handshakes",
                "TLS handshakes since start; climbing with every review means clients do not reuse connections.",
                registry=self.registry,
            )
            handshakes.set_function(tls_handshakes)


class CachedPlanner:
    """`write_plan` memoised per (request, catalog revision), denials included; bounded LRU."""

    def __init__(self, size: int = _PLAN_CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[PlanRequest, str], Mapping[str, str] | Denial] = OrderedDict()

    def __call__(self, request: PlanRequest, catalog: Catalog) -> Mapping[str, str]:
        key = (request, catalog.revision)
        found = self._entries.get(key)
        if found is None:
            try:
                found = MappingProxyType(write_plan(request, catalog))
            except Denial as denial:
                found = denial
            self._entries[key] = found
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(found, Denial):
            raise Denial(found.message, code=found.code)
        return found


@dataclass(frozen=True)
class Dependencies:
    """Everything the routes read; built once by the composition root (`cli`)."""

    policy: NodePolicy
    catalog: CatalogSource
    # None = no Job fallback (running from --catalog-file without a cluster).
    jobs: JobLookup | None
    # Ready only once the Job cache is listed too: before that, Job pods would be denied (503).
    jobs_synced: Callable[[], bool] = lambda: True
    # Handshake count of the serving TLS (a metric), when served over `webhook.tls`.
    tls_handshakes: Callable[[], float] | None = None
    # The outage tolerations given to new pods (`tolerations`).
    outage: OutageTolerations = DEFAULT_OUTAGE_TOLERATIONS
    # Claims and PVs (network volumes); None = no cluster, claims are only warned about.
    volumes: VolumeLookups | None = None
    volumes_synced: Callable[[], bool] = lambda: True


def create_app(deps: Dependencies) -> FastAPI:
    app = FastAPI(
        title="runpod-kubelet webhook", docs_url=None, redoc_url=None, openapi_url=None, **without_otel()
    )
    metrics = Metrics(deps.catalog, tls_handshakes=deps.tls_handshakes)
    planner = CachedPlanner()
    app.state.metrics = metrics

    def decide_mutate(body: bytes) -> tuple[str, Verdict]:
        request = parse_review(body)
        return request.uid, mutate(
            request,
            catalog=deps.catalog.current(),
            policy=deps.policy,
            jobs=deps.jobs,
            planner=planner,
            outage=deps.outage,
            volumes=deps.volumes,
        )

    def decide_validate(body: bytes) -> tuple[str, Verdict]:
        request = parse_review(body)
        return request.uid, validate(request, policy=deps.policy)

    app.add_middleware(
        _AdmissionRoutes,
        routes={"/mutate": ("mutate", decide_mutate), "/validate": ("validate", decide_validate)},
        metrics=metrics,
    )

    @app.get("/healthz")
    async def healthz() -> Response:
        return _plain(200, "ok")

    @app.get("/readyz")
    async def readyz() -> Response:
        catalog = deps.catalog.current()
        if catalog is None:
            return _plain(503, "catalog not loaded yet")
        if not deps.jobs_synced():
            return _plain(503, "Job cache not listed yet")
        if not deps.volumes_synced():
            return _plain(503, "PersistentVolumeClaim and PersistentVolume caches not listed yet")
        return _plain(200, f"ok, catalog {catalog.revision}")

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


_Decide = Callable[[bytes], tuple[str, Verdict]]


class _AdmissionRoutes:
    """`POST /mutate` and `POST /validate` as plain ASGI, in front of FastAPI's router.

    Every pod create waits on these two routes, so they skip the framework's per-request work
    (routing, dependency solving, Request/Response objects). Measured in process on the
    benchmark review, together with `without_otel`: 190 -> 90 us of CPU per review, of which
    ~60 us is what a minimal FastAPI endpoint costs anyway. Everything else goes to FastAPI.
    """

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, tuple[str, _Decide]], metrics: Metrics) -> None:
        self._app = app
        self._routes = dict(routes)
        self._metrics = metrics
        # Label lookups take a lock and hash the label values: resolve them once.
        self._latency = {endpoint: metrics.latency.labels(endpoint) for endpoint, _ in routes.values()}
        self._counted: dict[tuple[str, str], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self._app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send(
                {
                    "type": "http.response.start",
                    "status": 405,
                    "headers": [(b"allow", b"POST"), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        endpoint, decide = route
        started = time.perf_counter()
        result = "error"
        try:
            status, content_type, payload, result = await self._answer(scope, receive, endpoint, decide)
            if status == 0:
                return  # the client went away before sending the whole body
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
        finally:
            counter = self._counted.get((endpoint, result))
            if counter is None:
                counter = self._counted[endpoint, result] = self._metrics.admissions.labels(endpoint, result)
            counter.inc()
            self._latency[endpoint].observe(time.perf_counter() - started)

    async def _answer(
        self, scope: Scope, receive: Receive, endpoint: str, decide: _Decide
    ) -> tuple[int, bytes, bytes, str]:
        """(HTTP status, content type, body, result label); status 0 when there is no one to answer."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                return _too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 0, b"", b"", "malformed"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            uid, verdict = decide(body)
        except MalformedReview as exc:
            return 400, _TEXT, f"malformed AdmissionReview: {exc}\n".encode(), "malformed"
        except Exception:
            # A bug must not become a transport error or a hang: deny, with a pointer to the log.
            uid = _uid_or_empty(body)
            log.exception("admission decision failed", extra={"uid": uid, "endpoint": endpoint})
            verdict = Verdict(
                allowed=False,
                code=500,
                reason="InternalError",
                message=f"runpod-kubelet webhook internal error (review uid {uid}); see the webhook's log",
            )
        result = "denied" if not verdict.allowed else ("patched" if verdict.patch else "allowed")
        if not verdict.allowed:
            log.info(
                "denied",
                extra={"uid": uid, "endpoint": endpoint, "code": verdict.code, "why": verdict.message},
            )
        return 200, _JSON_BYTES, orjson.dumps(render_review(uid, verdict)), result


def _too_large() -> tuple[int, bytes, bytes, str]:
    return 413, _TEXT, f"body larger than {MAX_BODY_BYTES} bytes\n".encode(), "malformed"


def without_otel() -> dict[str, Any]:
    """FastAPI keyword arguments turning its native OpenTelemetry off, where it has one.

    Newer FastAPI asks on every request whether OpenTelemetry providers are configured (three
    environment lookups, ~5 % of a review's time); the webhook exports Prometheus metrics only.
    """
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain")


def _uid_or_empty(body: bytes) -> str:
    try:
        uid = orjson.loads(body)["request"]["uid"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return uid if isinstance(uid, str) else ""
