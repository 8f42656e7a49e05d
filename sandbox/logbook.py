"""Per-pod log lines and the Server-Sent Events framing of `GET /v2/pods/{id}/logs`.

A `LogBook` keeps the last `capacity` lines of one pod (both sources), numbered by a per-pod
sequence, and wakes live readers when a line arrives (one shared `asyncio.Event` swapped on
every append: no polling, no queue per reader). Backfill selection (`tail`, `since`,
`Last-Event-ID`, `source`) is a pure function over the stored lines (notes §5):

- `Last-Event-ID` wins and resumes exclusively after that event;
- else `since` resumes at lines with `ts >= since`;
- else the last `tail` lines (default 100, 0 = live only, at most 5000).

Event ids are `<ts>/<12-digit seq>`; each event is `id:` + one JSON `data:` line, no `event:`.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sandbox.problems import ApiError
from sandbox.validation import parse_rfc3339, validate_query

__all__ = [
    "LogBook",
    "LogCursor",
    "LogLine",
    "format_event",
    "parse_log_query",
    "select_backfill",
]

Source = Literal["container", "system"]
DEFAULT_TAIL: Final = 100
MAX_TAIL: Final = 5000
DEFAULT_CAPACITY: Final = 10_000


@dataclass(frozen=True)
class LogLine:
    seq: int
    ts: float
    source: Source
    line: str

    @property
    def ts_text(self) -> str:
        # Millisecond precision: live `ts` may carry fractional seconds.
        return datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    @property
    def event_id(self) -> str:
        return f"{self.ts_text}/{self.seq:012d}"


@dataclass(frozen=True)
class LogCursor:
    """Where a stream starts: after `after_seq`, from `since_ts`, or the last `tail` lines."""

    source: Source | None = None
    tail: int = DEFAULT_TAIL
    since_ts: float | None = None
    after_seq: int | None = None
    after_ts: float | None = None


def _parse_ts(text: str) -> float:
    return parse_rfc3339(text)


def parse_log_query(
    *, source: str | None, tail: str | None, since: str | None, last_event_id: str | None
) -> LogCursor:
    """Query parameters and header -> cursor; 422 for malformed values (the OpenAPI document's
    schemas: `source` enum, `tail` 0..5000, `since` RFC 3339), 400 for a bad cursor."""
    present = (("source", source), ("tail", tail), ("since", since))
    values = validate_query("/v2/pods/{id}/logs", "get", {k: v for k, v in present if v is not None})
    tail_value: int = values.get("tail", DEFAULT_TAIL)
    since_ts = parse_rfc3339(since) if since is not None else None
    after_seq: int | None = None
    after_ts: float | None = None
    if last_event_id:
        ts_part, sep, seq_part = last_event_id.partition("/")
        try:
            if sep:
                after_seq = int(seq_part)
            else:
                after_ts = _parse_ts(ts_part)
        except ValueError:
            raise ApiError(400, "invalid Last-Event-ID cursor") from None
    src: Source | None = "container" if source == "container" else "system" if source == "system" else None
    return LogCursor(source=src, tail=tail_value, since_ts=since_ts, after_seq=after_seq, after_ts=after_ts)


def select_backfill(lines: Sequence[LogLine], cursor: LogCursor) -> list[LogLine]:
    """The stored lines a new stream starts with (pure)."""
    wanted = [line for line in lines if cursor.source is None or line.source == cursor.source]
    if cursor.after_seq is not None:
        return [line for line in wanted if line.seq > cursor.after_seq][-MAX_TAIL:]
    if cursor.after_ts is not None:
        return [line for line in wanted if line.ts > cursor.after_ts][-MAX_TAIL:]
    if cursor.since_ts is not None:
        return [line for line in wanted if line.ts >= cursor.since_ts][-MAX_TAIL:]
    return wanted[-cursor.tail :] if cursor.tail else []


def format_event(line: LogLine) -> str:
    data = json.dumps({"ts": line.ts_text, "source": line.source, "line": line.line}, separators=(",", ":"))
    return f"id: {line.event_id}\ndata: {data}\n\n"


class LogBook:
    """The stored lines of one pod. Appends never block; readers await `wait_after`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._next_seq = 1
        self._changed = asyncio.Event()
        self.closed = False

    def append(self, source: Source, line: str, now: float) -> LogLine:
        entry = LogLine(self._next_seq, now, source, line)
        self._next_seq += 1
        self._lines.append(entry)
        self._wake()
        return entry

    def close(self) -> None:
        """The pod is gone: live readers finish."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def lines(self) -> Sequence[LogLine]:
        return tuple(self._lines)

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def after(self, seq: int) -> list[LogLine]:
        """Lines with sequence > `seq` still held (older ones fell off the end)."""
        if not self._lines or seq >= self._lines[-1].seq:
            return []
        first = self._lines[0].seq
        start = max(seq + 1 - first, 0)
        return [self._lines[i] for i in range(start, len(self._lines))]

    async def wait_after(self, seq: int) -> None:
        """Return once a line after `seq` exists or the book closes (callers bound the wait)."""
        if self.last_seq > seq or self.closed:
            return
        await self._changed.wait()


def filter_source(lines: Iterable[LogLine], source: Source | None) -> list[LogLine]:
    return [line for line in lines if source is None or line.source == source]
