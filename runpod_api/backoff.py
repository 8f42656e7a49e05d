"""When the client tries again: the retry policy and the jittered backoff, as pure decisions.

Which calls retry what (notes §9.1):

| call                                   | 5xx / timeout / connection loss | 429                      |
|----------------------------------------|---------------------------------|--------------------------|
| GET (pods, catalog), DELETE, terminate | backoff and retry, ≤ max_retries | only if rate_limit_retries |
| POST /v2/pods (create)                 | never blindly: create_pod_safely reconciles first | same      |
| PATCH, start/stop/restart              | never: the caller re-reads and re-applies | same            |
| log stream                             | reconnect forever with stream backoff and resume | waits      |

A 429 is retried (for any method: RunPod did not apply the request) only when the caller
configured `rate_limit_retries` and the wait is at most `max_pace_wait`; otherwise it is raised
as `RunPodRateLimited` with `.retry_after`, and the client's pacing holds every later request
until then anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_delay"]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. Defaults follow RunPod's notes (§9.1, §9.2, §5)."""

    max_retries: int = 4  # after the first attempt: at most 5 tries of an idempotent call
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    # 429s waited out inside the client; 0 = raise RunPodRateLimited to the caller at once.
    rate_limit_retries: int = 0
    # Longest the client waits on its own (pacing or 429); beyond it RunPodRateLimited is raised.
    max_pace_wait: float = 90.0
    # Safe create: list pods after these delays looking for an ambiguous create's pod (visibility
    # may lag ~30 s), and POST again at most this many times when none shows up.
    reconcile_delays: Sequence[float] = (5.0, 10.0, 15.0)
    max_create_posts: int = 2
    # Log stream reconnects: 0.5 s doubling to 15 s; a connection idle this long is reopened.
    stream_backoff_base: float = 0.5
    stream_backoff_cap: float = 15.0
    stream_idle_timeout: float = 60.0


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Wait before retry number `attempt` (0-based): base x 2^attempt capped, "equal jitter".

    `jitter` in [0, 1) picks the point in the upper half of the interval, so clients that failed
    together do not come back together, and none comes back sooner than half the backoff.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt))
    jitter = min(max(jitter, 0.0), 1.0)
    return ceiling / 2 + jitter * ceiling / 2
