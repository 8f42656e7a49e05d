"""Pacing under RunPod's per-user quotas, read from the `RateLimit` / `RateLimit-Policy` headers.

RunPod counts every request against three windows (`minute`, `hour`, `day`) and answers 429 as
soon as one is exhausted (notes §8). Its headers say, per window, the quota `q` and length `w`
(policy) and the remaining requests `r` and seconds to reset `t` (live state)::

    RateLimit-Policy: "minute";q=60;w=60, "hour";q=3000;w=3600, "day";q=50000;w=86400
    RateLimit: "minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012

`RateLimitState` keeps the latest view, lowered by every request the client sends before an
answer confirms it (so a burst of concurrent requests cannot all spend the same `r`).
`pacing_delay` is the decision, a pure function of that state and the clock:

- a window with `r = 0` blocks until its reset;
- a window whose `r` is low (at most `LOW_FRACTION` of its quota, or `LOW_ABSOLUTE` when the
  quota is unknown) spreads the remaining requests evenly over the time left to its reset;
- a `Retry-After` from a 429 blocks every request until it has passed.

Absent headers mean the caller is exempt: no pacing. This module does no I/O and never sleeps;
the client owns waiting. Times are seconds on the client's monotonic clock.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "LOW_ABSOLUTE",
    "LOW_FRACTION",
    "RESET_MARGIN",
    "RateLimitState",
    "RateWindow",
    "pacing_delay",
    "parse_structured_list",
]

LOW_FRACTION: Final = 0.2
LOW_ABSOLUTE: Final = 10
# Two answers whose resets differ by less than this describe the same window instance.
_SAME_WINDOW_SLACK: Final = 2.0
# `t` is whole seconds and may be rounded down: a reset is trusted only this much later.
RESET_MARGIN: Final = 1.0


def parse_structured_list(value: str) -> dict[str, dict[str, float]]:
    """`"minute";r=0;t=12, "hour";r=2800` -> {"minute": {"r": 0, "t": 12}, "hour": {"r": 2800}}.

    Lenient: quoted or bare names, unknown or malformed parameters skipped, never raises.
    """
    windows: dict[str, dict[str, float]] = {}
    for member in value.split(","):
        parts = [p.strip() for p in member.split(";")]
        name = parts[0].strip('"').strip() if parts else ""
        if not name:
            continue
        params: dict[str, float] = {}
        for part in parts[1:]:
            key, sep, raw = part.partition("=")
            if not sep:
                continue
            try:
                number = float(raw.strip().strip('"'))
            except ValueError:
                continue
            if math.isfinite(number):
                params[key.strip()] = number
        windows[name] = params
    return windows


@dataclass
class RateWindow:
    """What the client believes about one quota window."""

    name: str
    quota: int | None = None
    length: float | None = None
    remaining: int | None = None
    reset_at: float | None = None
    last_send: float | None = None

    def is_low(self) -> bool:
        if self.remaining is None:
            return False
        mark = max(1.0, self.quota * LOW_FRACTION) if self.quota else float(LOW_ABSOLUTE)
        return self.remaining <= mark


@dataclass
class RateLimitState:
    """The client's view of every window; updated from answers, lowered by each send."""

    windows: dict[str, RateWindow] = field(default_factory=dict)
    blocked_until: float = 0.0

    def remaining(self) -> dict[str, int]:
        """Remaining requests per window, as far as known (for metrics and logs)."""
        return {n: w.remaining for n, w in self.windows.items() if w.remaining is not None}

    def observe(self, headers: Mapping[str, str], *, now: float, in_flight: int = 0) -> None:
        """Take in an answer's headers. `in_flight` = other requests sent but not yet answered.

        `headers` must look keys up case-insensitively (httpx.Headers, or lower-case keys).
        An answer may describe the server before some of our in-flight requests arrived, so
        those are subtracted; within one window instance the lower estimate wins.
        """
        for name, params in parse_structured_list(headers.get("ratelimit-policy", "")).items():
            window = self.windows.setdefault(name, RateWindow(name))
            if "q" in params:
                window.quota = int(params["q"])
            if "w" in params:
                window.length = params["w"]
        for name, params in parse_structured_list(headers.get("ratelimit", "")).items():
            if "r" not in params or "t" not in params:
                continue
            window = self.windows.setdefault(name, RateWindow(name))
            remaining = max(0, int(params["r"]) - max(0, in_flight))
            reset_at = now + max(0.0, params["t"]) + RESET_MARGIN
            same = window.reset_at is not None and abs(window.reset_at - reset_at) < _SAME_WINDOW_SLACK
            if same and window.remaining is not None:
                window.remaining = min(window.remaining, remaining)
            else:
                window.remaining, window.reset_at = remaining, reset_at
        retry_after = headers.get("retry-after")
        if retry_after:
            with contextlib.suppress(ValueError):
                self.blocked_until = max(self.blocked_until, now + float(retry_after.strip()))

    def block_for(self, seconds: float, *, now: float) -> None:
        """Hold every request for `seconds` (a 429's wait, even without RateLimit headers)."""
        self.blocked_until = max(self.blocked_until, now + seconds)

    def reserve(self, *, now: float) -> None:
        """Account for one request about to be sent at `now`."""
        for window in self.windows.values():
            _roll(window, now=now)
            if window.remaining is not None:
                window.remaining = max(0, window.remaining - 1)
            window.last_send = now


def _roll(window: RateWindow, *, now: float) -> None:
    """A window whose reset has passed starts over: full quota if known, else unknown."""
    if window.reset_at is None or window.reset_at > now:
        return
    if window.quota is not None and window.length:
        periods = math.floor((now - window.reset_at) / window.length) + 1
        window.reset_at += periods * window.length
        window.remaining = window.quota
    else:
        window.remaining, window.reset_at = None, None


def pacing_delay(state: RateLimitState, *, now: float) -> float:
    """Seconds to wait before the next request may go out (0 = now). Pure."""
    delay = max(0.0, state.blocked_until - now)
    for window in state.windows.values():
        if window.remaining is None or window.reset_at is None:
            continue
        left = window.reset_at - now
        if left <= 0:
            continue  # reset has passed; the next reserve() starts it over
        if window.remaining <= 0:
            delay = max(delay, left)
        elif window.is_low() and window.last_send is not None:
            # Evenly over what is left, the last one a step before the reset.
            spacing = (window.reset_at - window.last_send) / (window.remaining + 1)
            delay = max(delay, window.last_send + spacing - now)
    return max(0.0, delay)
