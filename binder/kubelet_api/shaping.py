"""Turning RunPod log events into the bytes `kubectl logs` shows, as the kubelet would.

Owns which events a user sees (container output since the requested time, never the
completion wrapper's exit marker: its format and `visible_text` belong to
`binder.pods.completion`), the kubelet's line format (`timestamps` prefixes an RFC 3339 time
with nine fraction digits, as CRI logs do), `tailLines` over the backfill, and the
`limitBytes` budget (output is cut mid-line at the limit, then the stream ends), for live
lines and for retained ones (`render_retained`, a finished pod). Pure and synchronous;
`streaming` feeds it and owns timing and I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from binder.kubelet_api.options import LogOptions
from binder.pods.completion import parse_exit_marker, visible_text

__all__ = [
    "Backfill",
    "ByteBudget",
    "LogLine",
    "Shown",
    "ends_run",
    "format_line",
    "format_timestamp",
    "render",
    "render_retained",
    "shown",
    "visible_text",
]

CONTAINER_SOURCE: Final = "container"


class LogLine(Protocol):
    """What shaping needs of a RunPod log event (`runpod_api.models.LogEvent` fits)."""

    @property
    def ts(self) -> datetime: ...
    @property
    def source(self) -> str: ...
    @property
    def line(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Shown:
    """A line as the user sees it."""

    ts: datetime
    text: str


def ends_run(event: LogLine, *, uid: str) -> bool:
    """True when `event` carries this pod's exit marker: the container run is over."""
    return event.source == CONTAINER_SOURCE and parse_exit_marker(event.line, uid=uid) is not None


def shown(event: LogLine, *, since: datetime | None, uid: str) -> Shown | None:
    """What `kubectl logs` shows of `event`: container output at or after `since`, no marker."""
    if event.source != CONTAINER_SOURCE:
        return None
    if since is not None and event.ts < since:
        return None
    text = visible_text(event.line, uid=uid)
    return None if text is None else Shown(ts=event.ts, text=text)


def format_timestamp(ts: datetime) -> str:
    """`2026-06-01T12:02:03.120000000Z`: the kubelet's fixed-width RFC 3339 (Go RFC3339NanoFixed)."""
    utc = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


def format_line(item: Shown, *, timestamps: bool) -> bytes:
    # RunPod strips the newline; a line may still end with "\r" (progress bars): keep it.
    text = item.text.rstrip("\n")
    if timestamps:
        text = f"{format_timestamp(item.ts)} {text}"
    return (text + "\n").encode("utf-8", errors="replace")


@dataclass(slots=True)
class ByteBudget:
    """`limitBytes`: how many bytes may still be written; None = unlimited."""

    remaining: int | None

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def take(self, chunk: bytes) -> bytes:
        """The part of `chunk` that fits; the budget shrinks by its length."""
        if self.remaining is None:
            return chunk
        kept = chunk[: max(self.remaining, 0)]
        self.remaining -= len(kept)
        return kept


@dataclass(slots=True)
class Backfill:
    """The lines RunPod replays before the live part; keeps only the last `tail` when asked.

    Without a tail, lines pass straight through (`add` returns them), so the user sees output
    at once. With one, they are held until the backfill ends (`finish`), because only then is
    it known which lines are the last N.
    """

    tail: int | None
    _held: deque[Shown] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.tail is not None:
            self._held = deque(maxlen=self.tail)

    def add(self, item: Shown) -> list[Shown]:
        if self.tail is None:
            return [item]
        if self.tail > 0:
            self._held.append(item)
        return []

    def finish(self) -> list[Shown]:
        held = list(self._held)
        self._held.clear()
        return held


def render(items: Iterable[Shown], *, options: LogOptions, budget: ByteBudget) -> bytes:
    """The bytes for `items`, within `budget`."""
    out = bytearray()
    for item in items:
        if budget.exhausted:
            break
        out += budget.take(format_line(item, timestamps=options.timestamps))
    return bytes(out)


def render_retained(items: Sequence[Shown], *, options: LogOptions) -> bytes:
    """The whole answer from retained lines (a finished pod): `since`, then `tailLines`, then
    `limitBytes`, in the order the live path applies them. `follow` has nothing to wait for."""
    kept = [item for item in items if options.since is None or item.ts >= options.since]
    if options.tail_lines is not None:
        kept = kept[len(kept) - options.tail_lines :] if options.tail_lines < len(kept) else kept
    return render(kept, options=options, budget=ByteBudget(options.limit_bytes))
