"""RunPod's per-user request quotas: minute/hour/day windows and the headers that report them.

Every authenticated request counts against all windows, GETs included (notes §8). A request
arriving while any window is exhausted is refused with 429 and does not count. Windows are
fixed, aligned to the limiter's start, so `t` (seconds to reset) is exact and testable.
`RateLimiter.hit(now)` is the only mutation; the clock is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.scenario import RateWindow

__all__ = ["RateDecision", "RateLimiter"]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    headers: dict[str, str]
    # set when refused
    window: str | None = None
    retry_after: int = 0


@dataclass
class _Window:
    name: str
    quota: int
    length: int
    start: float
    used: int = 0

    def roll(self, now: float) -> None:
        if now >= self.start + self.length:
            periods = math.floor((now - self.start) / self.length)
            self.start += periods * self.length
            self.used = 0

    def reset_in(self, now: float) -> int:
        return max(0, math.ceil(self.start + self.length - now))


class RateLimiter:
    def __init__(self, windows: Sequence[RateWindow], *, now: float) -> None:
        self._windows = [_Window(w.window, w.quota, w.window_s, now) for w in windows]

    def configure(self, windows: Sequence[RateWindow], *, now: float) -> None:
        """Replace the quotas (admin); counting restarts."""
        self._windows = [_Window(w.window, w.quota, w.window_s, now) for w in windows]

    def _headers(self, now: float) -> dict[str, str]:
        if not self._windows:
            return {}  # exempt: RunPod omits the headers
        policy = ", ".join(f'"{w.name}";q={w.quota};w={w.length}' for w in self._windows)
        state = ", ".join(
            f'"{w.name}";r={max(w.quota - w.used, 0)};t={w.reset_in(now)}' for w in self._windows
        )
        return {"RateLimit-Policy": policy, "RateLimit": state}

    def hit(self, now: float) -> RateDecision:
        for window in self._windows:
            window.roll(now)
        exhausted = [w for w in self._windows if w.used >= w.quota]
        if exhausted:
            # The longest wait decides: retrying after a shorter one would be refused again.
            worst = max(exhausted, key=lambda w: w.reset_in(now))
            return RateDecision(
                allowed=False,
                headers=self._headers(now),
                window=worst.name,
                retry_after=max(worst.reset_in(now), 1),
            )
        for window in self._windows:
            window.used += 1
        return RateDecision(allowed=True, headers=self._headers(now))

    def peek(self, now: float) -> dict[str, str]:
        """Headers describing the current state without counting a request."""
        for window in self._windows:
            window.roll(now)
        return self._headers(now)
