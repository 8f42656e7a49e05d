"""The retained-logs store: per-pod and global bounds, LRU eviction, replay on reconnect, and
the completion reader that fills it (no marker stored, lines outlive the reader)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from binder.pods.completion import ExitWatcher
from binder.retained_logs import LINE_OVERHEAD, RetainedLogs
from runpod_api.errors import RunPodServerError
from runpod_api.models import LogEvent

UID = "0d4c1e52-aaaa-bbbb-cccc-000011112222"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def texts(store: RetainedLogs, uid: str) -> list[str] | None:
    lines = store.lines(uid)
    return None if lines is None else [line.text for line in lines]


def test_a_pod_keeps_only_its_last_lines_up_to_the_line_bound() -> None:
    store = RetainedLogs(max_lines_per_pod=3)
    for n in range(5):
        store.append("a", ts=at(n), text=f"line {n}")
    assert texts(store, "a") == ["line 2", "line 3", "line 4"]
    assert store.total_bytes == 3 * (len("line 0") + LINE_OVERHEAD)


def test_a_pod_keeps_only_its_last_bytes_up_to_the_byte_bound() -> None:
    store = RetainedLogs(max_bytes_per_pod=10)
    store.append("a", ts=at(0), text="aaaa")
    store.append("a", ts=at(1), text="bbbb")
    store.append("a", ts=at(2), text="cccc")
    assert texts(store, "a") == ["bbbb", "cccc"]
    # One line longer than the bound keeps its end (where a progress bar's last state is).
    store.append("a", ts=at(3), text="0123456789XYZ")
    assert texts(store, "a") == ["3456789XYZ"]


def test_the_least_recently_used_pod_is_evicted_beyond_the_pod_bound() -> None:
    store = RetainedLogs(max_pods=2)
    store.append("old", ts=at(0), text="x")
    store.append("read", ts=at(0), text="y")
    assert store.lines("old") is not None  # reading makes "old" recent; "read" is now the LRU
    store.append("new", ts=at(0), text="z")
    assert "read" not in store
    assert texts(store, "old") == ["x"] and texts(store, "new") == ["z"]
    assert len(store) == 2


def test_the_global_byte_budget_evicts_other_pods_but_never_the_one_being_written() -> None:
    line = "x" * 100
    per_line = len(line) + LINE_OVERHEAD
    store = RetainedLogs(max_total_bytes=3 * per_line)
    store.append("a", ts=at(0), text=line)
    store.append("b", ts=at(0), text=line)
    store.append("b", ts=at(1), text=line)
    store.append("b", ts=at(2), text=line)
    assert "a" not in store
    assert texts(store, "b") == [line, line, line]
    assert store.total_bytes == 3 * per_line
    store.append("b", ts=at(3), text=line)  # alone and over budget: its own bounds still hold it
    assert len(store.lines("b") or []) == 4


def test_nothing_retained_is_none_while_a_silent_pod_is_an_empty_list() -> None:
    store = RetainedLogs()
    assert store.lines("unknown") is None
    store.append("a", ts=at(0), text="")
    assert texts(store, "a") == [""]


def test_keep_only_drops_the_entries_of_deleted_pods_and_their_bytes() -> None:
    store = RetainedLogs()
    store.append("live", ts=at(0), text="kept")
    store.append("deleted", ts=at(0), text="dropped")
    store.keep_only({"live"})
    assert "deleted" not in store and texts(store, "live") == ["kept"]
    assert store.total_bytes == len("kept") + LINE_OVERHEAD
    store.discard("live")
    assert len(store) == 0 and store.total_bytes == 0


def test_a_reconnect_backfill_is_not_stored_twice_but_repeated_lines_are_kept() -> None:
    store = RetainedLogs()
    for ts, text in [(0, "a"), (1, "tick"), (1, "tick")]:
        store.append("p", ts=at(ts), text=text)
    store.resume("p")
    # RunPod replays its backlog: everything stored already, then one more "tick" in the same
    # second (new: only two were stored at that time), then a later line.
    for ts, text in [(0, "a"), (1, "tick"), (1, "tick"), (1, "tick"), (2, "b")]:
        store.append("p", ts=at(ts), text=text)
    assert texts(store, "p") == ["a", "tick", "tick", "tick", "b"]
    # Outside a replay the same line at the same time is a real repeat.
    store.append("p", ts=at(2), text="b")
    assert texts(store, "p") == ["a", "tick", "tick", "tick", "b", "b"]


class ScriptedLogs:
    """Each connection plays the next script's (second, line) events, then an error or waits."""

    def __init__(self, scripts: list[tuple[list[tuple[int, str]], Exception | None]]) -> None:
        self.scripts = scripts
        self.tails: list[int | None] = []

    async def stream_logs(
        self, pod_id: str, *, tail: int | None = None, source: str | None = None
    ) -> AsyncIterator[LogEvent]:
        events, error = self.scripts[min(len(self.tails), len(self.scripts) - 1)]
        self.tails.append(tail)
        for second, line in events:
            yield LogEvent(ts=at(second), line=line)
        if error is not None:
            raise error
        await asyncio.Event().wait()


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_the_completion_reader_retains_visible_lines_without_the_marker_across_a_reconnect() -> None:
    marker = f"::rpvk-exit::{UID}::3"
    logs = ScriptedLogs(
        [
            ([(0, "epoch 1"), (1, "epoch 2")], RunPodServerError("dropped", status=502)),
            ([(0, "epoch 1"), (1, "epoch 2"), (2, "Traceback"), (3, f"boom{marker}")], None),
        ]
    )
    store = RetainedLogs(max_lines_per_pod=500)
    exited = asyncio.Event()
    watcher = ExitWatcher(runpod=logs, on_exit=lambda k, u, c: exited.set(), sleep=_no_sleep, retained=store)
    watcher.watch("ns/job", pod_id="rp1", uid=UID)
    await asyncio.wait_for(exited.wait(), timeout=5)
    await watcher.aclose()
    assert texts(store, UID) == ["epoch 1", "epoch 2", "Traceback", "boom"]
    # Each connection asks for the retained bound as backlog, so earlier lines are kept too.
    assert logs.tails == [500, 500]
    watcher.retain_only({"another-pod"})
    assert store.lines(UID) is None


async def test_a_marker_only_line_and_a_foreign_marker_are_never_retained() -> None:
    logs = ScriptedLogs([([(0, "::rpvk-exit::someone-else::0"), (1, f"::rpvk-exit::{UID}::0")], None)])
    store = RetainedLogs()
    exited = asyncio.Event()
    watcher = ExitWatcher(runpod=logs, on_exit=lambda k, u, c: exited.set(), sleep=_no_sleep, retained=store)
    watcher.watch("ns/job", pod_id="rp1", uid=UID)
    await asyncio.wait_for(exited.wait(), timeout=5)
    watcher.forget("ns/job")  # a finished pod's reader is forgotten; its lines stay
    await watcher.aclose()
    assert texts(store, UID) == []


def test_touch_makes_an_empty_entry_and_counts_as_a_use() -> None:
    store = RetainedLogs(max_pods=2)
    store.touch("silent")
    store.append("other", ts=at(0), text="x")
    store.touch("silent")
    store.touch("third")
    assert texts(store, "silent") == [] and "other" not in store
    assert store.total_bytes == 0
