"""What a `kubectl logs` request asks for, and how that maps onto RunPod's log stream.

Owns the parsing and validation of the kubelet's `containerLogs` query (the apiserver forwards
`PodLogOptions` as `follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`,
`limitBytes`, `previous`, `stream`), and `plan_upstream`, the choice of RunPod's `tail`/`since`
for a request. Pure: no I/O, the clock is an argument. Errors are `LogRequestError` whose
message is shown to the user verbatim by kubectl ("Error from server (BadRequest): ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

__all__ = [
    "RUNPOD_MAX_TAIL",
    "LogOptions",
    "LogRequestError",
    "UpstreamQuery",
    "parse_log_options",
    "plan_upstream",
]

# RunPod refuses `tail` above 5000 (422, notes §5).
RUNPOD_MAX_TAIL: Final = 5000
# Extra backfill lines asked for on top of `tailLines`: the exit-marker lines the completion
# wrapper prints are dropped here, and a tail must still show the user's full N lines.
TAIL_SLACK: Final = 8
# Go's strconv.ParseBool, which is what the kubelet uses for these flags.
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
# `stream` (PodLogsQuerySplitStreams): RunPod has one interleaved stream per pod.
_STREAMS: Final = frozenset({"All", ""})


class LogRequestError(ValueError):
    """The request cannot be answered as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class LogOptions:
    """A validated `containerLogs` query. `since` is absolute (sinceSeconds resolved)."""

    follow: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamQuery:
    """The arguments of `RunPodClient.stream_logs` for one request."""

    tail: int | None
    since: datetime | None


def _parse_bool(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return False
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise LogRequestError(f"invalid {name} {raw!r}: must be true or false")


def _parse_int(query: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LogRequestError(f"invalid {name} {raw!r}: must be an integer") from None
    if value < minimum:
        raise LogRequestError(f"invalid {name} {value}: must be at least {minimum}")
    return value


def _parse_time(raw: str) -> datetime:
    try:
        # RFC 3339 as the apiserver writes it (`2026-06-01T12:02:03Z`, fractions allowed).
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise LogRequestError(f"invalid sinceTime {raw!r}: must be an RFC 3339 time") from None
    if value.tzinfo is None:
        raise LogRequestError(f"invalid sinceTime {raw!r}: must carry a time zone (e.g. Z)")
    return value


def parse_log_options(query: Mapping[str, str], *, now: datetime) -> LogOptions:
    """The validated options of a `containerLogs` query, or `LogRequestError`.

    `previous` is refused: RunPod keeps one log stream per pod and cannot tell one container
    run from the one before. `now` (aware) resolves `sinceSeconds` to an absolute time.
    """
    if _parse_bool(query, "previous"):
        raise LogRequestError(
            "previous container logs are not available on a RunPod node: RunPod keeps one log "
            "stream per pod and cannot tell one container run from the one before"
        )
    stream = query.get("stream", "")
    if stream not in _STREAMS:
        raise LogRequestError(
            f"invalid stream {stream!r}: a RunPod node has one combined log stream; only All is available"
        )
    since_seconds = _parse_int(query, "sinceSeconds", minimum=1)
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise LogRequestError("at most one of sinceTime or sinceSeconds may be specified")
    since: datetime | None = None
    if since_seconds is not None:
        since = now - timedelta(seconds=since_seconds)
    elif since_time is not None:
        since = _parse_time(since_time)
    return LogOptions(
        follow=_parse_bool(query, "follow"),
        tail_lines=_parse_int(query, "tailLines", minimum=0),
        since=since,
        timestamps=_parse_bool(query, "timestamps"),
        limit_bytes=_parse_int(query, "limitBytes", minimum=1),
    )


def plan_upstream(options: LogOptions, *, started_at: datetime | None) -> UpstreamQuery:
    """RunPod's `tail`/`since` for `options`.

    RunPod ignores `tail` when `since` is given, so a request with both asks for `since` and
    the tail is cut locally (`shaping`). "All logs" (neither given) asks for everything since
    the pod started (`started_at`, the Kubernetes pod's creation time), else RunPod's maximum
    tail: RunPod's default backfill is only 100 lines, while `kubectl logs` means all of them.
    """
    if options.since is not None:
        return UpstreamQuery(tail=None, since=options.since)
    if options.tail_lines is not None:
        if options.tail_lines == 0:
            return UpstreamQuery(tail=0, since=None)
        return UpstreamQuery(tail=min(RUNPOD_MAX_TAIL, options.tail_lines + TAIL_SLACK), since=None)
    if started_at is not None:
        return UpstreamQuery(tail=None, since=started_at)
    return UpstreamQuery(tail=RUNPOD_MAX_TAIL, since=None)
