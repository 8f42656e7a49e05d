"""Reading RunPod's log stream: SSE framing, the legacy one-object shape, and where to resume.

`GET /v2/pods/{id}/logs` answers `text/event-stream` (notes §5)::

    id: 2026-06-01T12:02:03Z/000000000001
    data: {"ts":"2026-06-01T12:02:03Z","source":"container","line":"Model loaded."}

`: comment` lines and id-only keepalive events may appear; both advance nothing but the resume
point. Once (2026-07-06) RunPod answered one JSON object under the same content type instead:
``{"container": ["<ts> <line>", ...], "system": [...]}``. `LogStreamDecoder` reads either,
line by line, without I/O. `ResumePoint` decides the query of the next connection after a drop:
`Last-Event-ID` when an id is known, else `since` the last timestamp seen, else the caller's
original `tail`/`since`.

The HTTP side (connections, reconnect backoff, errors) lives in `client.RunPodClient.stream_logs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from runpod_api.models import LogEvent

__all__ = ["LogStreamDecoder", "ResumePoint", "parse_timestamp"]

# RunPod refuses tail > 5000 (422); it is also the fallback when a cursor is refused.
MAX_TAIL: Final = 5000


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 with `Z` and 1 to 9 fractional digits; None when unreadable."""
    text = text.strip()
    if not text:
        return None
    text = text.replace("z", "Z").replace("Z", "+00:00")
    date_part, dot, rest = text.partition(".")
    if dot:
        # fromisoformat takes at most 6 fractional digits.
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        text = f"{date_part}.{(digits + '000000')[:6]}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _timestamp_of_id(event_id: str) -> datetime | None:
    """Ids look like `<ts>/<seq>` (or are the bare ts); they are opaque, so this may be None."""
    return parse_timestamp(event_id.partition("/")[0])


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@dataclass
class LogStreamDecoder:
    """Feeds on the lines of one connection; yields LogEvents. One decoder per connection."""

    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    last_event_id: str | None = None
    _data: list[str] = field(default_factory=list)
    _event_id: str | None = None
    _legacy: list[str] | None = None

    def feed(self, line: str) -> Iterator[LogEvent]:
        if (
            self._legacy is None
            and line.lstrip().startswith("{")
            and not self._data
            and self._event_id is None
        ):
            # Not an SSE field: the legacy one-object answer. Collect it until it parses.
            self._legacy = []
        if self._legacy is not None:
            self._legacy.append(line)
            if line.rstrip().endswith("}"):
                # The connection may stay open after the object: deliver it once complete.
                text = "\n".join(self._legacy)
                if _is_json(text):
                    self._legacy = None
                    yield from self._legacy_events(text)
            return
        if line == "":
            yield from self._dispatch()
            return
        if line.startswith(":"):
            return  # comment / keepalive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._event_id = value
        # `event`, `retry` and unknown fields carry nothing for us.

    def finish(self) -> Iterator[LogEvent]:
        """The connection ended: flush the legacy object, drop a half-received SSE event."""
        if self._legacy is not None:
            text, self._legacy = "\n".join(self._legacy), None
            yield from self._legacy_events(text)
        self._data, self._event_id = [], None

    def _dispatch(self) -> Iterator[LogEvent]:
        data, event_id = "\n".join(self._data), self._event_id
        self._data, self._event_id = [], None
        if event_id is not None:
            self.last_event_id = event_id or None
        if not data:
            return  # id-only keepalive: moved the resume point, nothing to show
        event = self._event(data, event_id)
        if event is not None:
            yield event

    def _event(self, data: str, event_id: str | None) -> LogEvent | None:
        try:
            payload: Any = json.loads(data)
        except ValueError:
            payload = {"line": data}
        if not isinstance(payload, dict):
            payload = {"line": data}
        ts = parse_timestamp(str(payload.get("ts") or "")) or (
            _timestamp_of_id(event_id) if event_id else None
        )
        source = payload.get("source")
        line = payload.get("line")
        return LogEvent(
            id=event_id or None,
            ts=ts or self.now(),
            source=source if source in ("container", "system") else "container",
            line=line if isinstance(line, str) else ("" if line is None else str(line)),
        )

    def _legacy_events(self, text: str) -> Iterator[LogEvent]:
        try:
            payload: Any = json.loads(text)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        events: list[LogEvent] = []
        for source in ("container", "system"):
            lines = payload.get(source)
            if not isinstance(lines, list):
                continue
            for raw in lines:
                if not isinstance(raw, str):
                    continue
                head, _, rest = raw.partition(" ")
                ts = parse_timestamp(head)
                events.append(LogEvent(id=None, ts=ts or self.now(), source=source, line=rest if ts else raw))
        # Both sources interleaved by time, as the SSE shape would have sent them.
        yield from sorted(events, key=lambda e: e.ts)


@dataclass
class ResumePoint:
    """Where the next connection starts. Updated with every event delivered to the caller."""

    tail: int | None = None
    since: datetime | None = None
    last_event_id: str | None = None
    last_ts: datetime | None = None
    _floor: datetime | None = None

    def start_connection(self) -> None:
        """A new connection begins: id-less events not newer than what we had are repeats."""
        self._floor = self.last_ts

    def seen(self, event: LogEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        if self.last_ts is None or event.ts > self.last_ts:
            self.last_ts = event.ts

    def keepalive(self, event_id: str | None) -> None:
        if event_id:
            self.last_event_id = event_id

    def query(self) -> tuple[dict[str, str], dict[str, str]]:
        """(query params, headers) for the next connection. Last-Event-ID wins over since/tail."""
        if self.last_event_id:
            return {}, {"Last-Event-ID": self.last_event_id}
        since = self.last_ts or self.since
        if since is not None:
            return {"since": _rfc3339(since)}, {}
        if self.tail is not None:
            return {"tail": str(min(self.tail, MAX_TAIL))}, {}
        return {}, {}

    def cursor_refused(self) -> None:
        """RunPod refused our Last-Event-ID (400/422): fall back to its timestamp, else tail."""
        refused, self.last_event_id = self.last_event_id, None
        ts = _timestamp_of_id(refused) if refused else None
        if ts is not None and (self.last_ts is None or ts > self.last_ts):
            self.last_ts = ts
        if self.last_ts is None and self.since is None:
            self.tail = MAX_TAIL

    def is_duplicate(self, event: LogEvent) -> bool:
        """Only id-less (legacy) events resumed by `since` can repeat; skip what is not newer."""
        return event.id is None and self._floor is not None and event.ts <= self._floor


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
