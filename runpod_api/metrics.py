"""Prometheus metrics the RunPod client records.

- `runpod_api_requests_total{method, endpoint, status}`: every HTTP call, by templated path
  (`/v2/pods/{id}`, never an id) and status code, or `timeout` / `error` without an answer;
- `runpod_api_request_duration_seconds{method, endpoint}`: latency until the answer's headers;
- `runpod_api_ratelimit_remaining{window}`: requests left in each quota window (minute, hour,
  day), as the client believes after the latest answer;
- `runpod_api_pacing_wait_seconds_total`: time requests spent waiting for the client's pacing.

No label carries an id, a name or a secret. `RunPodMetrics` takes its registry so tests use a
private one; `default_metrics()` builds the process-wide instance on first use (never at import)
on prometheus_client's default registry, which `/metrics` of each process serves.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RunPodMetrics", "default_metrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RunPodMetrics:
    """The client's instruments, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "runpod_api_requests",
            "RunPod API calls by method, templated endpoint and status (code, timeout or error).",
            ["method", "endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "runpod_api_request_duration_seconds",
            "RunPod API latency until the answer's headers, by method and templated endpoint.",
            ["method", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.ratelimit_remaining = Gauge(
            "runpod_api_ratelimit_remaining",
            "Requests left in a RunPod quota window, from the RateLimit headers.",
            ["window"],
            registry=registry,
        )
        self.pacing_wait = Counter(
            "runpod_api_pacing_wait_seconds",
            "Seconds RunPod requests waited for the client's rate-limit pacing.",
            registry=registry,
        )

    def record(self, *, method: str, endpoint: str, status: str, seconds: float | None) -> None:
        self.requests.labels(method=method, endpoint=endpoint, status=status).inc()
        if seconds is not None:
            self.latency.labels(method=method, endpoint=endpoint).observe(max(0.0, seconds))

    def record_remaining(self, remaining: dict[str, int]) -> None:
        for window, value in remaining.items():
            self.ratelimit_remaining.labels(window=window).set(value)


@cache
def default_metrics() -> RunPodMetrics:
    """The process-wide instruments on the default registry (created once, on first use)."""
    return RunPodMetrics(REGISTRY)
