"""The `containerLogs` query as the apiserver forwards it, and what RunPod is asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binder.kubelet_api.options import (
    RUNPOD_MAX_TAIL,
    TAIL_SLACK,
    LogOptions,
    LogRequestError,
    UpstreamQuery,
    parse_log_options,
    plan_upstream,
)

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_an_empty_query_means_all_logs_without_follow() -> None:
    assert parse_log_options({}, now=NOW) == LogOptions()


def test_flags_accept_the_spellings_go_accepts() -> None:
    options = parse_log_options({"follow": "true", "timestamps": "1"}, now=NOW)
    assert options.follow and options.timestamps
    assert not parse_log_options({"follow": "False"}, now=NOW).follow


def test_a_flag_that_is_not_a_boolean_is_refused_with_its_name() -> None:
    with pytest.raises(LogRequestError, match="invalid follow 'yes'"):
        parse_log_options({"follow": "yes"}, now=NOW)


def test_tail_lines_and_limit_bytes_are_parsed_and_bounded() -> None:
    options = parse_log_options({"tailLines": "10", "limitBytes": "500"}, now=NOW)
    assert (options.tail_lines, options.limit_bytes) == (10, 500)
    assert parse_log_options({"tailLines": "0"}, now=NOW).tail_lines == 0
    with pytest.raises(LogRequestError, match="tailLines -1: must be at least 0"):
        parse_log_options({"tailLines": "-1"}, now=NOW)
    with pytest.raises(LogRequestError, match="limitBytes 0"):
        parse_log_options({"limitBytes": "0"}, now=NOW)
    with pytest.raises(LogRequestError, match="must be an integer"):
        parse_log_options({"tailLines": "ten"}, now=NOW)


def test_since_seconds_is_resolved_against_the_clock() -> None:
    options = parse_log_options({"sinceSeconds": "30"}, now=NOW)
    assert options.since == NOW - timedelta(seconds=30)


def test_since_time_is_an_rfc3339_time_with_a_zone() -> None:
    options = parse_log_options({"sinceTime": "2026-06-01T11:59:00Z"}, now=NOW)
    assert options.since == datetime(2026, 6, 1, 11, 59, tzinfo=UTC)
    with pytest.raises(LogRequestError, match="RFC 3339"):
        parse_log_options({"sinceTime": "yesterday"}, now=NOW)
    with pytest.raises(LogRequestError, match="time zone"):
        parse_log_options({"sinceTime": "2026-06-01T11:59:00"}, now=NOW)


def test_since_time_and_since_seconds_together_are_refused() -> None:
    with pytest.raises(LogRequestError, match="at most one of sinceTime or sinceSeconds"):
        parse_log_options({"sinceSeconds": "5", "sinceTime": "2026-06-01T11:59:00Z"}, now=NOW)


def test_previous_logs_are_refused_with_the_reason() -> None:
    with pytest.raises(LogRequestError, match="previous container logs are not available") as caught:
        parse_log_options({"previous": "true"}, now=NOW)
    assert caught.value.status == 400
    assert parse_log_options({"previous": "false"}, now=NOW) == LogOptions()


def test_only_the_combined_stream_exists() -> None:
    assert parse_log_options({"stream": "All"}, now=NOW) == LogOptions()
    with pytest.raises(LogRequestError, match="only All"):
        parse_log_options({"stream": "Stderr"}, now=NOW)


def test_all_logs_are_asked_from_the_pod_start_not_runpods_default_100_lines() -> None:
    started = NOW - timedelta(hours=2)
    assert plan_upstream(LogOptions(), started_at=started) == UpstreamQuery(tail=None, since=started)
    assert plan_upstream(LogOptions(), started_at=None) == UpstreamQuery(tail=RUNPOD_MAX_TAIL, since=None)


def test_a_tail_asks_a_little_more_so_hidden_markers_do_not_shorten_it() -> None:
    assert plan_upstream(LogOptions(tail_lines=10), started_at=NOW) == UpstreamQuery(
        tail=10 + TAIL_SLACK, since=None
    )
    assert plan_upstream(LogOptions(tail_lines=100_000), started_at=NOW).tail == RUNPOD_MAX_TAIL
    assert plan_upstream(LogOptions(tail_lines=0), started_at=NOW) == UpstreamQuery(tail=0, since=None)


def test_since_wins_upstream_because_runpod_ignores_tail_with_since() -> None:
    since = NOW - timedelta(seconds=30)
    query = plan_upstream(LogOptions(tail_lines=5, since=since), started_at=NOW - timedelta(hours=1))
    assert query == UpstreamQuery(tail=None, since=since)
