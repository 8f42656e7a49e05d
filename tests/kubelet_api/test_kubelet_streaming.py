"""When a log answer ends, what it contains, and how it survives upstream drops.

The upstream here is a scripted stand-in for `RunPodClient.stream_logs` (the narrow interface
`streaming.LogSource`), so the timing rules run in milliseconds; the real client against the
sandbox is exercised in test_kubelet_logs_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binder.kubelet_api.options import LogOptions, UpstreamQuery
from binder.kubelet_api.streaming import LogStream, StreamTimings, UpstreamFailure
from runpod_api.errors import (
    RunPodAuthError,
    RunPodError,
    RunPodNotFound,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
)

UID = "0b5c8e9a-1111-2222-3333-444455556666"
EXIT_0 = f"::rpvk-exit::{UID}::0"
REQUEST_TIME = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
FAST = StreamTimings(
    first_event_wait=0.3, idle_gap=0.05, snapshot_limit=2.0, reconnect_initial=0.01, reconnect_max=0.05
)


@dataclass(frozen=True)
class Event:
    line: str
    ts: datetime
    id: str | None = None
    source: str = "container"


def old(i: int, line: str | None = None) -> Event:
    """A line printed before the request: part of the backfill."""
    return Event(line or f"line {i}", REQUEST_TIME - timedelta(seconds=100 - i), id=f"id-{i}")


def new(i: int, line: str | None = None) -> Event:
    """A line printed after the request: live."""
    return Event(line or f"live {i}", REQUEST_TIME + timedelta(seconds=i), id=f"live-{i}")


Step = Event | float | RunPodError | None  # event, pause, failure, hang forever


@dataclass
class ScriptedSource:
    """Each call of stream_logs plays the next script; the last one repeats."""

    scripts: list[list[Step]]
    calls: list[dict[str, Any]] = field(default_factory=list)
    closed: int = 0
    open_now: int = 0

    def stream_logs(
        self,
        pod_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        last_event_id: str | None = None,
        source: str | None = None,
    ) -> AsyncIterator[Event]:
        self.calls.append({"tail": tail, "since": since, "last_event_id": last_event_id, "source": source})
        script = self.scripts[min(len(self.calls) - 1, len(self.scripts) - 1)]
        return self._play(script)

    async def _play(self, script: list[Step]) -> AsyncIterator[Event]:
        self.open_now += 1
        try:
            for step in script:
                if isinstance(step, Event):
                    yield step
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, RunPodError):
                    raise step
                else:
                    await asyncio.Event().wait()
            await asyncio.Event().wait()  # RunPod's stream never ends by itself
        finally:
            self.open_now -= 1
            self.closed += 1


def make_stream(
    source: ScriptedSource, options: LogOptions, upstream: UpstreamQuery | None = None
) -> LogStream:
    return LogStream(
        source=source,
        pod_id="pod123",
        pod_uid=UID,
        options=options,
        upstream=upstream or UpstreamQuery(tail=None, since=None),
        request_time=REQUEST_TIME,
        timings=FAST,
    )


async def collect(stream: LogStream) -> bytes:
    await stream.open()
    return b"".join([chunk async for chunk in stream.chunks()])


async def test_a_snapshot_ends_after_the_backfill_goes_quiet_and_closes_the_upstream() -> None:
    source = ScriptedSource([[old(1), old(2), old(3)]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions())), 1.5)
    assert body == b"line 1\nline 2\nline 3\n"
    assert source.open_now == 0 and source.closed == 1
    assert source.calls[0]["source"] == "container"


async def test_a_snapshot_of_a_quiet_pod_ends_empty_after_the_first_event_wait() -> None:
    source = ScriptedSource([[None]])
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions())), 2)
    assert body == b""
    assert FAST.first_event_wait - 0.05 <= loop.time() - started < FAST.first_event_wait + 0.5
    assert source.open_now == 0


async def test_a_snapshot_of_a_chatty_pod_ends_at_the_first_line_newer_than_the_request() -> None:
    # No idle gap ever comes: live lines follow the backfill every 10 ms.
    script: list[Step] = [old(1), old(2)]
    for i in range(1, 200):
        script += [0.01, new(i)]
    source = ScriptedSource([script])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions())), 1.5)
    assert body == b"line 1\nline 2\n"


async def test_a_tail_shows_the_last_lines_of_the_backfill_without_markers() -> None:
    marker = old(9, EXIT_0)
    source = ScriptedSource([[old(1), old(2), old(3), old(4), marker]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(tail_lines=2))), 1.5)
    assert body == b"line 3\nline 4\n"


async def test_since_filters_lines_the_upstream_sent_anyway() -> None:
    source = ScriptedSource([[old(1), old(2), old(3)]])
    options = LogOptions(since=old(2).ts)
    body = await asyncio.wait_for(collect(make_stream(source, options)), 1.5)
    assert body == b"line 2\nline 3\n"


async def test_timestamps_and_limit_bytes_shape_the_snapshot() -> None:
    source = ScriptedSource([[old(1), old(2)]])
    body = await asyncio.wait_for(
        collect(make_stream(source, LogOptions(timestamps=True, limit_bytes=35))), 1.5
    )
    assert body == b"2026-06-01T11:58:21.000000000Z line"


async def test_a_tail_of_zero_without_follow_answers_at_once_without_calling_runpod() -> None:
    source = ScriptedSource([[old(1)]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(tail_lines=0))), 0.2)
    assert body == b"" and source.calls == []


async def test_follow_streams_live_lines_and_ends_with_the_container_run() -> None:
    marker = new(3, EXIT_0)
    source = ScriptedSource([[old(1), 0.1, new(1), 0.05, new(2), 0.05, marker, new(4)]])
    stream = make_stream(source, LogOptions(follow=True))
    await stream.open()
    seen: list[bytes] = []
    async for chunk in stream.chunks():
        seen.append(chunk)
    assert b"".join(seen) == b"line 1\nlive 1\nlive 2\n"
    assert source.open_now == 0


async def test_follow_of_a_finished_run_ends_after_its_backfill() -> None:
    source = ScriptedSource([[old(1), old(2, f"::rpvk-exit::{UID}::1")]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(follow=True))), 1.5)
    assert body == b"line 1\n"


async def test_follow_ends_when_limit_bytes_is_used_up() -> None:
    source = ScriptedSource([[old(1), 0.1, new(1), new(2)]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(follow=True, limit_bytes=10))), 1.5)
    assert body == b"line 1\nliv"


async def test_follow_resumes_after_an_upstream_drop_from_the_last_event_id() -> None:
    first: list[Step] = [old(1), 0.1, new(1), RunPodServerError("gateway", status=502)]
    second: list[Step] = [new(2), new(3, EXIT_0)]
    source = ScriptedSource([first, second])
    body = await asyncio.wait_for(
        collect(make_stream(source, LogOptions(follow=True), UpstreamQuery(tail=None, since=old(0).ts))), 2
    )
    assert body == b"line 1\nlive 1\nlive 2\n"
    assert source.calls[0]["since"] == old(0).ts
    assert source.calls[1] == {"tail": None, "since": None, "last_event_id": "live-1", "source": "container"}


async def test_a_pod_gone_on_runpod_is_a_clear_error_before_any_byte() -> None:
    source = ScriptedSource([[RunPodNotFound("pod not found", status=404)]])
    with pytest.raises(UpstreamFailure) as caught:
        await asyncio.wait_for(make_stream(source, LogOptions()).open(), 1)
    assert caught.value.status == 400
    assert "RunPod pod pod123 not found" in caught.value.message
    assert source.open_now == 0


async def test_a_refused_api_key_is_an_error_that_names_no_secret() -> None:
    source = ScriptedSource([[RunPodAuthError("invalid token", status=401)]])
    with pytest.raises(UpstreamFailure) as caught:
        await asyncio.wait_for(make_stream(source, LogOptions()).open(), 1)
    assert caught.value.status == 500
    assert "refused the binder's API key" in caught.value.message


async def test_an_upstream_that_keeps_failing_is_reported_not_shown_as_empty() -> None:
    source = ScriptedSource([[RunPodRateLimited("slow down", retry_after=0.01)]])
    with pytest.raises(UpstreamFailure, match="rate limit"):
        await asyncio.wait_for(make_stream(source, LogOptions()).open(), 2)
    assert source.open_now == 0


async def test_upstream_idle_timeouts_are_silence_not_failure() -> None:
    source = ScriptedSource([[RunPodTimeout("idle")]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions())), 2)
    assert body == b""


async def test_a_client_going_away_closes_the_upstream_connection() -> None:
    source = ScriptedSource([[old(1), 0.05, new(1), None]])
    stream = make_stream(source, LogOptions(follow=True))
    await stream.open()

    async def read_forever() -> None:
        async for _ in stream.chunks():
            pass

    reader = asyncio.create_task(read_forever())
    await asyncio.sleep(0.3)
    assert source.open_now == 1
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert source.open_now == 0 and source.closed == 1


async def test_follow_shows_the_last_unterminated_line_and_ends_at_its_marker() -> None:
    source = ScriptedSource([[old(1), 0.1, new(1, f"done{EXIT_0}"), new(2)]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(follow=True))), 1.5)
    assert body == b"line 1\ndone\n"


async def test_another_pods_marker_does_not_end_the_follow() -> None:
    foreign = new(1, "::rpvk-exit::someone-else::0")
    source = ScriptedSource([[old(1), 0.1, foreign, new(2), new(3, EXIT_0)]])
    body = await asyncio.wait_for(collect(make_stream(source, LogOptions(follow=True))), 1.5)
    assert body == b"line 1\nlive 2\n"
