"""What `kubectl logs` shows of RunPod's events, byte for byte."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from binder.kubelet_api.options import LogOptions
from binder.kubelet_api.shaping import (
    Backfill,
    ByteBudget,
    Shown,
    ends_run,
    format_line,
    format_timestamp,
    render,
    shown,
    visible_text,
)
from binder.pods.completion import wrap_command

T0 = datetime(2026, 6, 1, 12, 2, 3, 120000, tzinfo=UTC)
UID = "0b5c8e9a-1111-2222-3333-444455556666"
MARKER = f"::rpvk-exit::{UID}::3"


@dataclass(frozen=True)
class Event:
    line: str
    ts: datetime = T0
    source: str = "container"
    id: str | None = None


def test_the_completion_wrappers_exit_marker_is_never_shown() -> None:
    # The marker exactly as the binder's wrapper prints it.
    assert f'echo "::rpvk-exit::{UID}::$rc"' in wrap_command("true", uid=UID)
    assert shown(Event(MARKER), since=None, uid=UID) is None
    assert ends_run(Event(MARKER), uid=UID)
    # Even a malformed or foreign one: users must not see the wrapper's protocol.
    assert visible_text("::rpvk-exit::garbage", uid=UID) is None
    assert visible_text("::rpvk-exit::another-uid::0", uid=UID) is None
    assert not ends_run(Event("::rpvk-exit::another-uid::0"), uid=UID)


def test_output_without_a_final_newline_keeps_its_text_before_the_marker() -> None:
    assert visible_text(f"done{MARKER}", uid=UID) == "done"
    assert ends_run(Event(f"done{MARKER}"), uid=UID)


def test_ordinary_lines_mentioning_the_marker_text_are_shown_whole() -> None:
    line = "echo '::rpvk-exit::' is our marker"
    assert shown(Event(line), since=None, uid=UID) == Shown(T0, line)
    assert not ends_run(Event(line), uid=UID)


def test_host_lifecycle_lines_are_not_container_output() -> None:
    assert shown(Event("pulling image", source="system"), since=None, uid=UID) is None
    assert not ends_run(Event(MARKER, source="system"), uid=UID)


def test_lines_before_since_are_hidden_and_lines_at_since_are_shown() -> None:
    assert shown(Event("old", ts=T0 - timedelta(microseconds=1)), since=T0, uid=UID) is None
    assert shown(Event("at", ts=T0), since=T0, uid=UID) == Shown(T0, "at")


def test_timestamps_use_the_kubelets_fixed_nine_digit_utc_format() -> None:
    assert format_timestamp(T0) == "2026-06-01T12:02:03.120000000Z"
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert format_timestamp(plus_two) == "2026-06-01T12:02:03.120000000Z"
    assert format_line(Shown(T0, "hello"), timestamps=True) == b"2026-06-01T12:02:03.120000000Z hello\n"
    assert format_line(Shown(T0, "hello"), timestamps=False) == b"hello\n"


def test_limit_bytes_cuts_mid_line_and_then_nothing_more_is_written() -> None:
    budget = ByteBudget(8)
    out = render([Shown(T0, "hello"), Shown(T0, "world")], options=LogOptions(), budget=budget)
    assert out == b"hello\nwo"
    assert budget.exhausted
    assert render([Shown(T0, "more")], options=LogOptions(), budget=budget) == b""


def test_without_limit_bytes_everything_is_written() -> None:
    out = render([Shown(T0, "a"), Shown(T0, "b")], options=LogOptions(), budget=ByteBudget(None))
    assert out == b"a\nb\n"


def test_a_tail_holds_the_backfill_and_keeps_only_the_last_lines() -> None:
    backfill = Backfill(tail=2)
    assert [backfill.add(Shown(T0, str(i))) for i in range(5)] == [[], [], [], [], []]
    assert [s.text for s in backfill.finish()] == ["3", "4"]


def test_without_a_tail_the_backfill_passes_lines_through_at_once() -> None:
    backfill = Backfill(tail=None)
    assert [s.text for s in backfill.add(Shown(T0, "x"))] == ["x"]
    assert backfill.finish() == []


def test_a_tail_of_zero_shows_no_backfill() -> None:
    backfill = Backfill(tail=0)
    backfill.add(Shown(T0, "x"))
    assert backfill.finish() == []
