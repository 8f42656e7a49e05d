"""The typed async client for the part of RunPod REST v2 this project uses.

Owns HTTP: auth and User-Agent headers, pacing under the rate-limit headers, retries, metrics,
and translating every failure into the `errors` tree (no httpx or pydantic exception leaves this
class). Decisions it applies live in pure modules: `ratelimit.pacing_delay` (when to send),
`backoff` (when to try again), `errors.error_from_response` (what a refusal means),
`logstream` (how to read and resume logs), `find_created_pods` below (which pod an ambiguous
create made).

Contract for callers:
- Every method may wait: for pacing (at most `RetryPolicy.max_pace_wait`, then
  `RunPodRateLimited`) and for retries of idempotent calls (GET, DELETE, terminate).
- `create_pod` sends exactly one POST; after a 5xx or timeout the pod may exist. Use
  `create_pod_safely` unless you reconcile yourself.
- 429 is raised as `RunPodRateLimited(.retry_after)` unless `RetryPolicy.rate_limit_retries`
  asks the client to wait it out.
- Returned models are frozen. `Pod.env` holds secrets: never log a Pod.
- The API key never appears in a log record, an exception message or a metric label.

One `RunPodClient` per process; it is safe to share between tasks.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from runpod_api.backoff import RetryPolicy, backoff_delay
from runpod_api.errors import (
    RunPodBadRequest,
    RunPodError,
    RunPodNotFound,
    RunPodProtocolError,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
    RunPodUnprocessable,
    error_from_response,
)
from runpod_api.logstream import LogStreamDecoder, ResumePoint
from runpod_api.metrics import RunPodMetrics, default_metrics
from runpod_api.models import (
    CreateNetworkVolumeRequest,
    CreatePodRequest,
    CreateRegistryRequest,
    LogEvent,
    NetworkVolume,
    Pod,
    Registry,
)
from runpod_api.ratelimit import RateLimitState, pacing_delay

_M = TypeVar("_M", bound=pydantic.BaseModel)

__all__ = ["DEFAULT_BASE_URL", "RunPodClient", "find_created_pods", "user_agent"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.runpod.io"
# RunPod answers a create once the pod is placed; it can take most of a minute (notes §2.2).
CREATE_TIMEOUT: Final = 60.0
_MAX_PAGES: Final = 100
# httpcore trace events (HTTP/1.1 and HTTP/2) at which a fenced write is checked once more.
_FENCED_STEPS: Final = ("send_request_headers.started", "send_request_body.started")

_PODS: Final = "/v2/pods"
_POD: Final = "/v2/pods/{id}"
_POD_ACTION: Final = "/v2/pods/{id}/action"
_POD_LOGS: Final = "/v2/pods/{id}/logs"
_GPUS: Final = "/v2/catalog/gpus"
_CPUS: Final = "/v2/catalog/cpus"
_DATACENTERS: Final = "/v2/catalog/datacenters"
_REGISTRIES: Final = "/v2/registries"
_REGISTRY: Final = "/v2/registries/{id}"
_VOLUMES: Final = "/v2/network-volumes"
_VOLUME: Final = "/v2/network-volumes/{id}"


def user_agent() -> str:
    """`runpod-kubelet/<version> httpx/<version>`: Cloudflare blocks generic agents (1010)."""
    try:
        version = metadata.version("runpod-kubelet")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"runpod-kubelet/{version} httpx/{httpx.__version__}"


def find_created_pods(pods: Sequence[Pod], *, name: str, marker_env: str, marker_value: str) -> list[Pod]:
    """Pods an earlier create of ours made: exact name and owner marker, oldest first."""
    found = [p for p in pods if p.name == name and p.env.get(marker_env) == marker_value]
    return sorted(found, key=lambda p: (p.created_at is None, p.created_at or datetime.min, p.id))


class RunPodClient:
    """Async client for RunPod REST v2. Use as `async with RunPodClient(api_key=...) as rp:`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        metrics: RunPodMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        """`before_write` is called right before every non-GET request goes on the wire: after
        pacing, and again once its connection is up, just before the first byte is written (a
        new connection's handshake is a wait too); on every retry. Whatever it raises propagates
        unchanged. The binder fences its spending with it: a replica that lost leadership while
        a create waited in here sends nothing."""
        self._api_key = api_key
        self._before_write = before_write
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._metrics = metrics or default_metrics()
        self._clock, self._sleep, self._random = clock, sleep, random
        base = base_url.rstrip("/").removesuffix("/v2")
        self._http = httpx.AsyncClient(
            base_url=base,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": user_agent(),
                "Accept": "application/json",
            },
        )
        self.rate_limit = RateLimitState()
        self._pace_lock = asyncio.Lock()
        self._in_flight = 0
        # Until one answer told us the quotas, send one request at a time (a cold burst of
        # 1,000 creates must not go out before the first RateLimit header is read).
        self._calibrated = asyncio.Event()

    def __repr__(self) -> str:
        return f"RunPodClient(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- catalog ----------------------------------------------------------------------------

    async def gpu_catalog(
        self, *, cloud: str, count: int = 1, cuda_versions: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Raw `GET /v2/catalog/gpus` with availability for pods of `count` GPUs in `cloud`;
        with `cuda_versions`, scoped to machines running one of those CUDA versions."""
        params = {"include": "AVAILABILITY", "product": "POD", "cloud": cloud, "count": str(count)}
        if cuda_versions:
            params["cudaVersions"] = ",".join(cuda_versions)
        return self._json_object(await self._call("GET", _GPUS, params=params, idempotent=True))

    async def cpu_catalog(self) -> dict[str, Any]:
        """Raw `GET /v2/catalog/cpus` with pod availability per data center (CPU pods: SECURE)."""
        params = {"include": "AVAILABILITY", "product": "POD"}
        return self._json_object(await self._call("GET", _CPUS, params=params, idempotent=True))

    async def datacenters(self, *, network_volume_type: str | None = None) -> dict[str, Any]:
        """Raw `GET /v2/catalog/datacenters` (only those offering `network_volume_type` if given)."""
        params = {"networkVolumeTypes": network_volume_type} if network_volume_type else None
        return self._json_object(await self._call("GET", _DATACENTERS, params=params, idempotent=True))

    # ---- registry credentials (write-only on RunPod) ----------------------------------------

    async def list_registries(self) -> list[Registry]:
        answer = self._json_object(await self._call("GET", _REGISTRIES, idempotent=True))
        return self._parse_list(answer, "registries", Registry)

    async def create_registry(self, request: CreateRegistryRequest) -> Registry:
        """One `POST /v2/registries`, never repeated (after a 5xx or timeout it may exist: list
        and match the name before sending another). The password is scrubbed from any error."""
        response = await self._call(
            "POST",
            _REGISTRIES,
            body=request.body(),
            idempotent=False,
            secrets=(request.password, request.username),
        )
        return self._parse_one(response, Registry)

    async def delete_registry(self, registry_id: str) -> bool:
        """True if deleted now, False if RunPod no longer knew it (404). A credential a pod
        still uses is refused: `RunPodBadRequest` (400), to be retried later."""
        try:
            await self._call("DELETE", _REGISTRY, pod_id=registry_id, idempotent=True)
        except RunPodNotFound:
            return False
        return True

    # ---- network volumes --------------------------------------------------------------------

    async def list_network_volumes(self) -> list[NetworkVolume]:
        answer = self._json_object(await self._call("GET", _VOLUMES, idempotent=True))
        return self._parse_list(answer, "networkVolumes", NetworkVolume)

    async def get_network_volume(self, volume_id: str) -> NetworkVolume:
        return self._parse_one(
            await self._call("GET", _VOLUME, pod_id=volume_id, idempotent=True), NetworkVolume
        )

    async def create_network_volume(self, request: CreateNetworkVolumeRequest) -> NetworkVolume:
        """One `POST /v2/network-volumes`, never repeated (list and match the name after an
        ambiguous answer)."""
        response = await self._call("POST", _VOLUMES, body=request.body(), idempotent=False)
        return self._parse_one(response, NetworkVolume)

    async def resize_network_volume(self, volume_id: str, size_gb: int) -> NetworkVolume:
        """`PATCH` the size; RunPod only grows a volume (a smaller size is a 400)."""
        response = await self._call(
            "PATCH", _VOLUME, pod_id=volume_id, body={"size": size_gb}, idempotent=False
        )
        return self._parse_one(response, NetworkVolume)

    async def delete_network_volume(self, volume_id: str) -> bool:
        """True if deleted now, False if RunPod no longer knew it (404)."""
        try:
            await self._call("DELETE", _VOLUME, pod_id=volume_id, idempotent=True)
        except RunPodNotFound:
            return False
        return True

    # ---- pods -------------------------------------------------------------------------------

    async def list_pods(self) -> list[Pod]:
        """Every pod of the account (one call; follows `pagination.nextCursor` if RunPod sends it).

        Pods RunPod returns without an id are skipped (logged), never fatal for the others.
        """
        pods: list[Pod] = []
        params: dict[str, str] = {}
        cursors: set[str] = set()
        for _ in range(_MAX_PAGES):
            answer = self._json_object(await self._call("GET", _PODS, params=params, idempotent=True))
            raw_pods = answer.get("pods")
            if not isinstance(raw_pods, list):
                raise RunPodProtocolError("GET /v2/pods answered without a 'pods' list", status=200)
            for raw in raw_pods:
                pod = self._parse_pod(raw, strict=False)
                if pod is not None:
                    pods.append(pod)
            pagination = answer.get("pagination")
            cursor = pagination.get("nextCursor") if isinstance(pagination, dict) else None
            if not (
                isinstance(pagination, dict) and pagination.get("hasNextPage") and isinstance(cursor, str)
            ):
                break
            if cursor in cursors:
                log.warning("RunPod pod list repeated a pagination cursor; stopping there")
                break
            cursors.add(cursor)
            params = {"cursor": cursor}
        return pods

    async def get_pod(self, pod_id: str) -> Pod:
        response = await self._call("GET", _POD, pod_id=pod_id, idempotent=True)
        return self._require_pod(response)

    async def create_pod(self, request: CreatePodRequest) -> Pod:
        """One `POST /v2/pods`, never repeated. After RunPodServerError/RunPodTimeout the pod may exist."""
        response = await self._call(
            "POST",
            _PODS,
            body=request.body(),
            idempotent=False,
            read_timeout=max(self._timeout, CREATE_TIMEOUT),
        )
        return self._require_pod(response)

    async def create_pod_safely(
        self, request: CreatePodRequest, *, marker_env: str, marker_value: str
    ) -> Pod:
        """Create, and after an ambiguous answer find the pod by name + marker before any re-POST.

        On 5xx or timeout the pod list is read after each of `RetryPolicy.reconcile_delays`; a
        pod with exactly this name and `env[marker_env] == marker_value` is adopted (should there
        be several, the oldest is kept and the others deleted). Only when the last look-up
        succeeded and still found nothing is the POST sent again (at most `max_create_posts` POSTs in
        all). If a look-up cannot be made, the ambiguity is raised rather than risk a second pod:
        the caller's own reconcile (list by marker) must settle it. Every other error is raised
        as is.
        """
        if (request.env or {}).get(marker_env) != marker_value:
            raise ValueError(f"the request's env must carry the owner marker {marker_env}")
        ambiguous: RunPodError | None = None
        for _ in range(max(1, self._retry.max_create_posts)):
            try:
                return await self.create_pod(request)
            except (RunPodServerError, RunPodTimeout) as exc:
                ambiguous = exc
                log.warning("RunPod create of %s was ambiguous (%s); looking for the pod", request.name, exc)
            settled, pod = await self._find_ambiguous_create(request.name, marker_env, marker_value)
            if pod is not None:
                return pod
            if not settled:
                break
        if ambiguous is None:  # max_create_posts < 1 is clamped, so a POST was always sent
            raise RunPodError("create was not attempted")
        raise ambiguous

    async def _find_ambiguous_create(
        self, name: str, marker_env: str, marker_value: str
    ) -> tuple[bool, Pod | None]:
        """(the last look-up succeeded, the adopted pod or None)."""
        settled = False
        for delay in self._retry.reconcile_delays or (0.0,):
            await self._sleep(delay)
            try:
                pods = await self.list_pods()
            except RunPodError as exc:
                settled = False
                log.warning("looking for an ambiguous create failed: %s", exc)
                continue
            found = find_created_pods(pods, name=name, marker_env=marker_env, marker_value=marker_value)
            if found:
                keep, extra = found[0], found[1:]
                for duplicate in extra:
                    log.warning("deleting duplicate RunPod pod %s created for %s", duplicate.id, name)
                    await self.delete_pod(duplicate.id)
                log.info("adopted RunPod pod %s after an ambiguous create of %s", keep.id, name)
                return True, keep
            settled = True
        return settled, None

    async def patch_pod(self, pod_id: str, changes: dict[str, Any]) -> Pod:
        """`PATCH /v2/pods/{id}`; `env` and `ports` replace the whole value. Not retried."""
        response = await self._call("PATCH", _POD, pod_id=pod_id, body=changes, idempotent=False)
        return self._require_pod(response)

    async def delete_pod(self, pod_id: str) -> bool:
        """Terminate and delete. True if deleted now, False if RunPod no longer knew it (404)."""
        try:
            await self._call("DELETE", _POD, pod_id=pod_id, idempotent=True)
        except RunPodNotFound:
            return False
        return True

    async def pod_action(self, pod_id: str, action: str) -> Pod | None:
        """`start`, `stop`, `restart` (-> the accepted Pod) or `terminate` (-> None, 204).

        Only `terminate` is retried on 5xx/timeout; the others must be confirmed by a re-read.
        The answer shows the accepted transition, not its completion.
        """
        response = await self._call(
            "POST", _POD_ACTION, pod_id=pod_id, body={"action": action}, idempotent=action == "terminate"
        )
        if response.status_code == 204 or not response.content.strip():
            return None
        return self._parse_pod(self._json(response), strict=False)

    # ---- logs -------------------------------------------------------------------------------

    async def stream_logs(
        self,
        pod_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        last_event_id: str | None = None,
        source: str | None = None,
    ) -> AsyncGenerator[LogEvent, None]:
        """Live log events; never ends by itself. Close it with `contextlib.aclosing` or break.

        Dropped connections, idle timeouts and 5xx are reopened with backoff, resuming after
        the last event (`Last-Event-ID`, else `since` its timestamp); a refused cursor falls
        back to its timestamp, else `tail=5000`. 401/403/404 and other refusals are raised.
        """
        resume = ResumePoint(tail=tail, since=since, last_event_id=last_event_id)
        failures = 0
        while True:
            params, headers = resume.query()
            if source is not None:
                params["source"] = source
            resume.start_connection()
            delivered = False
            try:
                async for event in self._log_connection(pod_id, params, headers, resume):
                    delivered = True
                    yield event
            except (RunPodBadRequest, RunPodUnprocessable):
                if not headers.get("Last-Event-ID"):
                    raise
                log.info("RunPod refused a log cursor; resuming by time instead")
                resume.cursor_refused()
                continue
            except RunPodRateLimited as exc:
                if exc.retry_after > self._retry.max_pace_wait:
                    raise
                continue  # pacing holds the next connection until the window allows it
            except (RunPodServerError, RunPodTimeout) as exc:
                log.debug("log stream of %s dropped: %s", pod_id, exc)
            if delivered:
                failures = 0
            await self._sleep(
                backoff_delay(
                    failures,
                    base=self._retry.stream_backoff_base,
                    cap=self._retry.stream_backoff_cap,
                    jitter=self._random(),
                )
            )
            failures += 1

    async def _log_connection(
        self, pod_id: str, params: dict[str, str], headers: dict[str, str], resume: ResumePoint
    ) -> AsyncIterator[LogEvent]:
        limits = httpx.Timeout(self._timeout, read=self._retry.stream_idle_timeout)
        request_headers = {"Accept": "text/event-stream", **headers}
        response = await self._send(
            "GET",
            _POD_LOGS,
            pod_id=pod_id,
            params=params,
            headers=request_headers,
            limits=limits,
            stream=True,
        )
        decoder = LogStreamDecoder()
        failure: RunPodTimeout | None = None
        cause: Exception | None = None
        try:
            try:
                async for line in response.aiter_lines():
                    for event in decoder.feed(line):
                        if not resume.is_duplicate(event):
                            resume.seen(event)
                            yield event
                    resume.keepalive(decoder.last_event_id)
            except httpx.TimeoutException as exc:
                cause = exc
                failure = RunPodTimeout(f"log stream idle for {self._retry.stream_idle_timeout:g} s")
            except (httpx.HTTPError, httpx.StreamError) as exc:
                cause = exc
                failure = RunPodTimeout(f"log stream connection lost ({type(exc).__name__})")
            # Whatever arrived completely is delivered before the drop is reported.
            for event in decoder.finish():
                if not resume.is_duplicate(event):
                    resume.seen(event)
                    yield event
        finally:
            await response.aclose()
        if failure is not None:
            raise failure from cause

    # ---- transport --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        pod_id: str | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool,
        read_timeout: float | None = None,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        """One logical call: paced, retried per `RetryPolicy`, answered 2xx or raised typed.
        `pod_id` fills the path's `{id}` (of a pod, a registry or a volume); `secrets` are
        masked in any error detail, like the API key."""
        attempt = limited = 0
        while True:
            try:
                return await self._send(
                    method,
                    endpoint,
                    pod_id=pod_id,
                    params=params,
                    body=body,
                    limits=httpx.Timeout(read_timeout) if read_timeout is not None else None,
                    secrets=secrets,
                )
            except RunPodRateLimited as exc:
                if limited >= self._retry.rate_limit_retries or exc.retry_after > self._retry.max_pace_wait:
                    raise
                limited += 1  # pacing now holds this request until the window allows it
            except (RunPodServerError, RunPodTimeout) as exc:
                if not idempotent or attempt >= self._retry.max_retries:
                    raise
                delay = backoff_delay(
                    attempt, base=self._retry.backoff_base, cap=self._retry.backoff_cap, jitter=self._random()
                )
                log.info(
                    "RunPod %s %s failed (%s); retry %d in %.2f s", method, endpoint, exc, attempt + 1, delay
                )
                attempt += 1
                await self._sleep(delay)

    async def _send(
        self,
        method: str,
        endpoint: str,
        *,
        pod_id: str | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        limits: httpx.Timeout | None = None,
        stream: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        """One HTTP request. Returns a 2xx response (unread if `stream`), raises RunPodError."""
        path = endpoint.format(id=quote(pod_id, safe="")) if pod_id is not None else endpoint
        await self._pace()
        fenced = self._before_write is not None and method != "GET"
        if fenced and self._before_write is not None:
            self._before_write()
        started = self._clock()
        # A log stream may send no headers until its pod prints (notes §5): it must not hold
        # back the calibration of the others, so only ordinary calls count as in flight.
        counted = 0 if stream else 1
        self._in_flight += counted
        cause: Exception | None = None
        error: RunPodError | None = None
        try:
            request = self._http.build_request(
                method,
                path,
                params=params,
                json=body,
                headers=headers,
                timeout=limits if limits is not None else httpx.USE_CLIENT_DEFAULT,
                extensions={"trace": self._trace_write} if fenced else None,
            )
            response = await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            cause, error = exc, RunPodTimeout(f"{method} {endpoint} timed out; it may have been applied")
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            cause = exc
            error = RunPodTimeout(
                f"{method} {endpoint} failed: connection error ({type(exc).__name__}); it may have been applied"
            )
        finally:
            self._in_flight -= counted
            if counted:
                self._calibrated.set()
        if error is not None:
            self._record(
                method, endpoint, "timeout" if isinstance(cause, httpx.TimeoutException) else "error", None
            )
            raise error from cause
        seconds = self._clock() - started
        self.rate_limit.observe(response.headers, now=self._clock(), in_flight=self._in_flight)
        self._calibrated.set()
        self._metrics.record_remaining(self.rate_limit.remaining())
        self._record(method, endpoint, str(response.status_code), seconds)
        if response.is_success:
            return response
        try:
            text = (await response.aread()).decode("utf-8", errors="replace")
        except (httpx.HTTPError, httpx.StreamError) as exc:
            text = f"(body unreadable: {type(exc).__name__})"
        finally:
            await response.aclose()
        error = error_from_response(
            status=response.status_code,
            headers=response.headers,
            body=text,
            secrets=(self._api_key, *secrets),
        )
        if isinstance(error, RunPodRateLimited):
            self.rate_limit.block_for(error.retry_after, now=self._clock())
        log.info("RunPod %s %s answered %d: %s", method, endpoint, response.status_code, error.detail)
        raise error

    async def _trace_write(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: the last moments before a write's headers, then its body,
        leave. Between the two the event loop runs other tasks; a server acts only on a whole
        request, so refusing before the body still sends nothing that could be applied."""
        if event.endswith(_FENCED_STEPS) and self._before_write is not None:
            self._before_write()

    async def _pace(self) -> None:
        """Wait until the rate-limit state allows one more request, then count it as sent."""
        async with self._pace_lock:
            while not self._calibrated.is_set() and self._in_flight > 0:
                await self._calibrated.wait()
            while (delay := pacing_delay(self.rate_limit, now=self._clock())) > 0:
                if delay > self._retry.max_pace_wait:
                    raise RunPodRateLimited(
                        f"a RunPod quota window is exhausted for {delay:.0f} s more (client-side pacing)",
                        status=None,
                        retry_after=delay,
                    )
                self._metrics.pacing_wait.inc(delay)
                await self._sleep(delay)
            self.rate_limit.reserve(now=self._clock())

    def _record(self, method: str, endpoint: str, status: str, seconds: float | None) -> None:
        self._metrics.record(method=method, endpoint=endpoint, status=status, seconds=seconds)
        log.debug("RunPod %s %s -> %s", method, endpoint, status)

    # ---- parsing ----------------------------------------------------------------------------

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise RunPodProtocolError(
                f"{response.request.method} answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from exc

    def _json_object(self, response: httpx.Response) -> dict[str, Any]:
        data = self._json(response)
        if not isinstance(data, dict):
            raise RunPodProtocolError(
                "RunPod answered JSON that is not an object", status=response.status_code
            )
        return data

    def _parse_one(self, response: httpx.Response, model: type[_M]) -> _M:
        try:
            return model.model_validate(self._json(response))
        except pydantic.ValidationError:
            raise RunPodProtocolError(
                f"RunPod answered an unreadable {model.__name__}", status=response.status_code
            ) from None

    def _parse_list(self, answer: dict[str, Any], key: str, model: type[_M]) -> list[_M]:
        raw = answer.get(key)
        if not isinstance(raw, list):
            raise RunPodProtocolError(f"RunPod answered without a {key!r} list", status=200)
        items: list[_M] = []
        for entry in raw:
            try:
                items.append(model.model_validate(entry))
            except pydantic.ValidationError:
                log.warning("skipping an unreadable %s in RunPod's answer", model.__name__)
        return items

    def _require_pod(self, response: httpx.Response) -> Pod:
        pod = self._parse_pod(self._json(response), strict=True)
        if pod is None:  # strict parsing raises instead; this keeps mypy and readers honest
            raise RunPodProtocolError("RunPod answered without a pod", status=response.status_code)
        return pod

    @staticmethod
    def _parse_pod(raw: Any, *, strict: bool) -> Pod | None:
        try:
            return Pod.model_validate(raw)
        except pydantic.ValidationError as exc:
            # Only the failing locations: the body carries env values (secrets).
            where = ", ".join(".".join(str(p) for p in e["loc"]) or "$" for e in exc.errors())
            if strict:
                raise RunPodProtocolError(
                    f"RunPod answered an unreadable pod (at {where})", status=200
                ) from None
            log.warning("skipping an unreadable pod in RunPod's answer (at %s)", where)
            return None
