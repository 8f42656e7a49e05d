"""One `kubectl logs` answer, read from RunPod's live log stream.

Owns the timing of a log request: a pump task per request reads RunPod's SSE stream
(`RunPodClient.stream_logs`) into a bounded queue and reconnects with `Last-Event-ID` when the
upstream drops (backoff 0.5 s doubling to 15 s, `Retry-After` on 429); the consumer decides
when the backfill is over and, for a snapshot (no `follow`), when the answer ends:

- RunPod's stream never ends and sends nothing at all until a first line exists (notes §5),
  so the backfill is over after `idle_gap` of silence, when an event newer than the request
  arrives, or when no event came within `first_event_wait`;
- a snapshot ends with its backfill, and in any case after `snapshot_limit`;
- a follow ends when the container run ends (the completion wrapper's exit marker), when
  `limitBytes` is used up, when RunPod says the pod is gone, or when the client goes away
  (the response is cancelled: the pump and the upstream connection are closed with it).

Errors before the first byte become `UpstreamFailure` (an HTTP status and a message for the
user, never a secret); after it the answer just ends, as the kubelet's does. What is shown
and how it is formatted belongs to `shaping`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from binder.kubelet_api.options import LogOptions, UpstreamQuery
from binder.kubelet_api.shaping import (
    CONTAINER_SOURCE,
    Backfill,
    ByteBudget,
    LogLine,
    ends_run,
    render,
    shown,
)
from runpod_api.errors import (
    RunPodAuthError,
    RunPodError,
    RunPodForbidden,
    RunPodNotFound,
    RunPodRateLimited,
    RunPodTimeout,
)

__all__ = [
    "DEFAULT_TIMINGS",
    "LogEventLike",
    "LogSource",
    "LogStream",
    "StreamTimings",
    "UpstreamFailure",
    "describe_upstream_failure",
]

log = logging.getLogger(__name__)

# Events held between the pump and a slow reader; beyond this the pump stops reading RunPod.
QUEUE_SIZE: Final = 1024


class LogEventLike(LogLine, Protocol):
    @property
    def id(self) -> str | None: ...


class LogSource(Protocol):
    """The part of `runpod_api.client.RunPodClient` this module uses."""

    def stream_logs(
        self,
        pod_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        last_event_id: str | None = None,
        source: str | None = None,
    ) -> AsyncIterator[LogEventLike]: ...


@dataclass(frozen=True, slots=True)
class StreamTimings:
    """Seconds. Defaults follow notes §5 (a Go client: 1.5 s idle, 4 s without first data)."""

    first_event_wait: float = 4.0
    idle_gap: float = 0.75
    snapshot_limit: float = 30.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 15.0


DEFAULT_TIMINGS: Final = StreamTimings()


class UpstreamFailure(Exception):
    """RunPod could not give the logs; answer `status` with `message` (shown by kubectl)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def describe_upstream_failure(exc: RunPodError, *, pod_id: str) -> UpstreamFailure:
    """The HTTP answer for a RunPod error on the log stream. `exc.detail` is already scrubbed.

    Only 400 and 500 carry our text through the apiserver to `kubectl` (its response checker
    turns a 400 body into the BadRequest message and a 500 body into "Internal error occurred:
    ..."; any other status loses the body), so a gone pod is a 400 and every RunPod failure a 500.
    """
    if isinstance(exc, RunPodNotFound):
        return UpstreamFailure(
            400, f"RunPod pod {pod_id} not found: it was terminated, and RunPod keeps no logs after that"
        )
    if isinstance(exc, RunPodAuthError | RunPodForbidden):
        return UpstreamFailure(
            500, f"RunPod refused the binder's API key reading logs of pod {pod_id}: {exc.detail}"
        )
    if isinstance(exc, RunPodRateLimited):
        return UpstreamFailure(
            500, f"RunPod rate limit reached; try again in {max(1, round(exc.retry_after))} s"
        )
    return UpstreamFailure(500, f"RunPod log stream of pod {pod_id} unavailable: {exc.detail}")


@dataclass(frozen=True, slots=True)
class _Ended:
    """The pump stopped for good (a non-retryable RunPod answer)."""

    error: RunPodError


_Item = LogEventLike | _Ended


class LogStream:
    """The answer to one log request. `open()` first, then iterate `chunks()` once.

    Not reusable. `chunks()` closes the stream when it ends or is cancelled; `aclose()` is
    idempotent and may also be called directly (e.g. if the response is never started).
    """

    def __init__(
        self,
        *,
        source: LogSource,
        pod_id: str,
        pod_uid: str,
        options: LogOptions,
        upstream: UpstreamQuery,
        request_time: datetime,
        timings: StreamTimings = DEFAULT_TIMINGS,
    ) -> None:
        self._source = source
        self._pod_id = pod_id
        self._uid = pod_uid
        self._options = options
        self._upstream = upstream
        self._request_time = request_time
        self._timings = timings
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._pump_task: asyncio.Task[None] | None = None
        self._first: _Item | None = None
        self._opened_at = 0.0
        self._transient: RunPodError | None = None

    # --- the pump: RunPod -> queue ----------------------------------------------------------

    async def _pump(self) -> None:
        try:
            await self._read_upstream()
        except Exception:
            # A bug must end the answer, not leave a follower waiting forever.
            log.exception("reading the RunPod log stream of %s failed", self._pod_id)
            await self._queue.put(_Ended(RunPodError("internal error reading the log stream")))

    async def _read_upstream(self) -> None:
        last_id: str | None = None
        delay = self._timings.reconnect_initial
        while True:
            wait = delay
            stream = self._source.stream_logs(
                self._pod_id,
                # After a drop, RunPod resumes after `last_id` and ignores tail/since.
                tail=None if last_id else self._upstream.tail,
                since=None if last_id else self._upstream.since,
                last_event_id=last_id,
                source=CONTAINER_SOURCE,
            )
            try:
                async for event in stream:
                    if event.id:
                        last_id = event.id
                    delay = self._timings.reconnect_initial
                    self._transient = None
                    await self._queue.put(event)
                log.debug("RunPod log stream of %s ended; reconnecting", self._pod_id)
            except RunPodError as exc:
                if not exc.retryable:
                    await self._queue.put(_Ended(exc))
                    return
                # A quiet pod makes the upstream time out: that is silence, not a failure.
                if not isinstance(exc, RunPodTimeout):
                    self._transient = exc
                if isinstance(exc, RunPodRateLimited):
                    wait = max(wait, exc.retry_after)
                log.info("RunPod log stream of %s dropped (%s); resuming", self._pod_id, type(exc).__name__)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._timings.reconnect_max)

    # --- the consumer: queue -> bytes -------------------------------------------------------

    async def open(self) -> None:
        """Start reading RunPod; wait (at most `first_event_wait`) for the first event.

        Raises `UpstreamFailure` when RunPod refuses before any line arrived, so the caller can
        answer with a real HTTP status instead of an empty 200.
        """
        loop = asyncio.get_running_loop()
        self._opened_at = loop.time()
        if not self._options.follow and self._options.tail_lines == 0:
            return  # nothing to show and nothing to wait for
        self._pump_task = asyncio.create_task(self._pump(), name=f"kubelet-logs:{self._pod_id}")
        try:
            self._first = await asyncio.wait_for(self._queue.get(), self._timings.first_event_wait)
        except TimeoutError:
            if self._transient is not None:
                failure = describe_upstream_failure(self._transient, pod_id=self._pod_id)
                await self.aclose()
                raise failure from None
            return
        if isinstance(self._first, _Ended):
            failure = describe_upstream_failure(self._first.error, pod_id=self._pod_id)
            await self.aclose()
            raise failure

    async def aclose(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _next(self, wait: float | None) -> _Item | None:
        """The next item, or None after `wait` seconds (None = wait as long as it takes)."""
        if self._first is not None:
            item, self._first = self._first, None
            return item
        if self._pump_task is None:
            return None
        if wait is None:
            return await self._queue.get()
        if wait <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The response body. Ends as described in the module docstring; closes the pump."""
        try:
            async for chunk in self._produce():
                yield chunk
        finally:
            await self.aclose()

    async def _produce(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        options, timings = self._options, self._timings
        budget = ByteBudget(options.limit_bytes)
        backfill = Backfill(options.tail_lines)
        first_deadline = self._opened_at + timings.first_event_wait
        snapshot_deadline = None if options.follow else self._opened_at + timings.snapshot_limit
        seen_any = False
        exited = False
        live_event: LogEventLike | None = None

        # Backfill: until silence, an event newer than the request, or the snapshot limit.
        while True:
            now = loop.time()
            timeout = timings.idle_gap if seen_any else first_deadline - now
            if snapshot_deadline is not None:
                timeout = min(timeout, snapshot_deadline - now)
            item = await self._next(timeout)
            if item is None:
                break
            if isinstance(item, _Ended):
                log.info("RunPod log stream of %s ended: %s", self._pod_id, item.error)
                exited = True
                break
            seen_any = True
            if item.ts > self._request_time:
                live_event = item
                break
            if ends_run(item, uid=self._uid):
                exited = True  # the container run ended before the request
            visible = shown(item, since=options.since, uid=self._uid)
            if visible is not None:
                chunk = render(backfill.add(visible), options=options, budget=budget)
                if chunk:
                    yield chunk
        chunk = render(backfill.finish(), options=options, budget=budget)
        if chunk:
            yield chunk
        if not options.follow or exited or budget.exhausted:
            return

        # Live: every new line until the container run ends, the budget is spent or RunPod ends.
        item = live_event
        while True:
            if item is None:
                item = await self._next(None)
                if item is None:
                    return
            if isinstance(item, _Ended):
                log.info("RunPod log stream of %s ended: %s", self._pod_id, item.error)
                return
            visible = shown(item, since=options.since, uid=self._uid)
            if visible is not None:
                chunk = render([visible], options=options, budget=budget)
                if chunk:
                    yield chunk
                if budget.exhausted:
                    return
            if ends_run(item, uid=self._uid):
                return
            item = None
