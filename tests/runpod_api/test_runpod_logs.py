"""Log streaming: SSE and legacy shapes are read, and a dropped stream resumes where it stopped."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from runpod_fakes import ClientFactory, FakeClock, problem

from runpod_api import LogEvent, RunPodNotFound
from runpod_api.logstream import LogStreamDecoder

SSE = {"content-type": "text/event-stream"}


def sse(event_id: str | None, ts: str, line: str, source: str = "container") -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + "data: " + json.dumps({"ts": ts, "source": source, "line": line}) + "\n\n"


def decode(text: str) -> tuple[list[LogEvent], LogStreamDecoder]:
    decoder = LogStreamDecoder()
    events: list[LogEvent] = []
    for line in text.split("\n"):
        events.extend(decoder.feed(line))
    events.extend(decoder.finish())
    return events, decoder


def test_sse_events_are_decoded_with_fractional_timestamps_and_sources() -> None:
    events, decoder = decode(
        sse("2026-07-06T15:24:58.7Z/000000000001", "2026-07-06T15:24:58.7Z", "Model loaded.")
        + sse("2026-07-06T15:24:59Z/000000000002", "2026-07-06T15:24:59.123456789Z", "pull done", "system")
    )
    assert [(e.id, e.source, e.line) for e in events] == [
        ("2026-07-06T15:24:58.7Z/000000000001", "container", "Model loaded."),
        ("2026-07-06T15:24:59Z/000000000002", "system", "pull done"),
    ]
    assert events[0].ts == datetime(2026, 7, 6, 15, 24, 58, 700000, tzinfo=UTC)
    assert events[1].ts == datetime(2026, 7, 6, 15, 24, 59, 123456, tzinfo=UTC)
    assert decoder.last_event_id == "2026-07-06T15:24:59Z/000000000002"


def test_comments_and_id_only_keepalives_yield_nothing_but_move_the_resume_point() -> None:
    events, decoder = decode(": keepalive\n\nid: 2026-06-01T12:00:09Z/000000000009\n\n: ping\n")
    assert events == []
    assert decoder.last_event_id == "2026-06-01T12:00:09Z/000000000009"


def test_an_event_without_ts_takes_its_time_from_the_id_and_plain_data_is_a_line() -> None:
    events, _ = decode("id: 2026-06-01T12:00:00Z/1\ndata: not json\ndata: second part\n\n")
    assert len(events) == 1
    assert events[0].line == "not json\nsecond part"
    assert events[0].ts == datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_the_legacy_one_object_shape_is_read_in_time_order() -> None:
    body = json.dumps(
        {
            "container": ["2026-07-06T10:00:02Z second", "2026-07-06T10:00:03Z third"],
            "system": ["2026-07-06T10:00:01Z pulling image"],
        }
    )
    events, _ = decode(body)
    assert [(e.source, e.line) for e in events] == [
        ("system", "pulling image"),
        ("container", "second"),
        ("container", "third"),
    ]
    assert all(e.id is None for e in events)


async def stream(lines: list[str], *, drop: bool = False) -> AsyncIterator[bytes]:
    for text in lines:
        yield text.encode()
    if drop:
        raise httpx.ReadError("connection reset by peer")


async def take(events: AsyncGenerator[LogEvent, None], count: int) -> list[LogEvent]:
    taken: list[LogEvent] = []
    async with contextlib.aclosing(events) as iterator:
        async for event in iterator:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


async def test_a_dropped_stream_resumes_after_the_last_event_with_last_event_id(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            body = stream(
                [sse("t/1", "2026-06-01T12:00:01Z", "one"), sse("t/2", "2026-06-01T12:00:02Z", "two")],
                drop=True,
            )
        elif len(seen) == 2:
            body = stream([": keepalive\n\n", "id: t/3\n\n", sse("t/4", "2026-06-01T12:00:04Z", "four")])
        else:
            body = stream([sse("t/5", "2026-06-01T12:00:05Z", "five")])
        return httpx.Response(200, headers=SSE, content=body)

    client = make_client(handler)
    events = await take(client.stream_logs("pod1", tail=10, source="container"), 4)

    assert [e.line for e in events] == ["one", "two", "four", "five"]
    first, second, third = seen
    assert first.url.path == "/v2/pods/pod1/logs"
    assert dict(first.url.params) == {"tail": "10", "source": "container"}
    assert first.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "t/2"
    assert dict(second.url.params) == {"source": "container"}, "tail is not repeated on resume"
    assert third.headers["last-event-id"] == "t/4"
    assert clock.sleeps, "reconnects back off"


async def test_a_refused_cursor_falls_back_to_its_timestamp(make_client: ClientFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return problem(400, "unknown cursor")
        return httpx.Response(200, headers=SSE, content=stream([sse("t/9", "2026-06-01T12:02:04Z", "after")]))

    client = make_client(handler)
    events = await take(client.stream_logs("pod1", last_event_id="2026-06-01T12:02:03Z/000000000001"), 1)
    assert [e.line for e in events] == ["after"]
    assert seen[0].headers["last-event-id"] == "2026-06-01T12:02:03Z/000000000001"
    assert "last-event-id" not in seen[1].headers
    assert dict(seen[1].url.params) == {"since": "2026-06-01T12:02:03Z"}


async def test_legacy_snapshots_resume_by_time_without_repeating_lines(make_client: ClientFactory) -> None:
    snapshot = {"container": ["2026-07-06T10:00:01Z a", "2026-07-06T10:00:02Z b"], "system": []}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) > 1:
            snapshot["container"].append("2026-07-06T10:00:03Z c")
        return httpx.Response(200, headers=SSE, content=json.dumps(snapshot).encode())

    client = make_client(handler)
    events = await take(client.stream_logs("pod1", since=datetime(2026, 7, 6, 10, tzinfo=UTC)), 3)
    assert [e.line for e in events] == ["a", "b", "c"]
    assert dict(seen[0].url.params) == {"since": "2026-07-06T10:00:00Z"}
    assert dict(seen[1].url.params) == {"since": "2026-07-06T10:00:02Z"}


async def test_a_stream_for_a_missing_pod_ends_with_not_found(make_client: ClientFactory) -> None:
    client = make_client(lambda request: problem(404, "pod not found"))
    with pytest.raises(RunPodNotFound):
        await take(client.stream_logs("gone"), 1)


async def test_server_errors_on_the_stream_are_reconnected_with_growing_backoff(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 3:
            return problem(503, "unavailable")
        return httpx.Response(200, headers=SSE, content=stream([sse("t/1", "2026-06-01T12:00:01Z", "up")]))

    events = await take(make_client(handler).stream_logs("pod1"), 1)
    assert [e.line for e in events] == ["up"]
    assert clock.sleeps == [0.375, 0.75, 1.5]


def test_a_legacy_object_is_delivered_as_soon_as_it_is_complete_even_if_the_stream_stays_open() -> None:
    decoder = LogStreamDecoder()
    lines = ['{"container": ["2026-07-06T10:00:01Z a",', '"2026-07-06T10:00:02Z b"], "system": []}']
    assert list(decoder.feed(lines[0])) == []
    assert [e.line for e in decoder.feed(lines[1])] == ["a", "b"]
    assert list(decoder.finish()) == []
