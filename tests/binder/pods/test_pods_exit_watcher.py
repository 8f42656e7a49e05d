"""ExitWatcher: one bounded log reader per wrapped pod, reconnecting until the marker shows up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from binder.pods.completion import ExitWatcher
from runpod_api.errors import RunPodNotFound, RunPodServerError
from runpod_api.models import LogEvent

UID = "0d4c1e52-aaaa-bbbb-cccc-000011112222"


def _event(line: str) -> LogEvent:
    return LogEvent(ts=datetime(2026, 11, 27, tzinfo=UTC), line=line)


class ScriptedLogs:
    """Each connection plays the next script: lines, then an error (or an endless wait)."""

    def __init__(self, scripts: list[tuple[list[str], Exception | None]]) -> None:
        self.scripts = scripts
        self.connections = 0

    async def stream_logs(
        self, pod_id: str, *, tail: int | None = None, source: str | None = None
    ) -> AsyncIterator[LogEvent]:
        assert source == "container" and tail is not None
        lines, error = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        for line in lines:
            yield _event(line)
        if error is not None:
            raise error
        await asyncio.Event().wait()


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_the_marker_is_reported_once_even_after_a_dropped_stream() -> None:
    logs = ScriptedLogs(
        [(["hi"], RunPodServerError("dropped", status=502)), ([f"::rpvk-exit::{UID}::3"], None)]
    )
    seen: list[tuple[str, str, int]] = []
    done = asyncio.Event()

    def on_exit(key: str, uid: str, code: int) -> None:
        seen.append((key, uid, code))
        done.set()

    watcher = ExitWatcher(runpod=logs, on_exit=on_exit, sleep=_no_sleep)
    watcher.watch("ns/job", pod_id="rp1", uid=UID)
    watcher.watch("ns/job", pod_id="rp1", uid=UID)  # repeated calls do not start a second reader
    await asyncio.wait_for(done.wait(), timeout=5)
    assert seen == [("ns/job", UID, 3)]
    assert logs.connections == 2
    assert not watcher.watching("ns/job")
    await watcher.aclose()


async def test_another_pods_marker_is_ignored_and_a_vanished_pod_stops_the_reader() -> None:
    logs = ScriptedLogs([(["::rpvk-exit::someone-else::0"], RunPodNotFound("gone", status=404))])
    seen: list[int] = []
    watcher = ExitWatcher(runpod=logs, on_exit=lambda k, u, c: seen.append(c), sleep=_no_sleep)
    watcher.watch("ns/job", pod_id="rp1", uid=UID)
    for _ in range(50):
        if not watcher.watching("ns/job"):
            break
        await asyncio.sleep(0.01)
    assert seen == []
    assert not watcher.watching("ns/job")
    await watcher.aclose()


async def test_readers_are_bounded_and_forget_cancels() -> None:
    logs = ScriptedLogs([([], None)])
    watcher = ExitWatcher(runpod=logs, on_exit=lambda k, u, c: None, max_readers=2, sleep=_no_sleep)
    for index in range(4):
        watcher.watch(f"ns/p{index}", pod_id=f"rp{index}", uid=UID)
    await asyncio.sleep(0.05)
    assert logs.connections == 2  # the other two wait for a slot
    watcher.forget("ns/p0")
    await asyncio.sleep(0.05)
    assert logs.connections == 3
    await watcher.aclose()
