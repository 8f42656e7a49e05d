"""A work queue of pod keys with the client-go semantics the pod workers rely on.

- A key is handed to at most one worker at a time: adding a key that is being processed marks it
  dirty, and it is queued again when that worker calls `done` (never two writers for one pod).
- A key waiting in the queue is there once, however often it is added (events coalesce).
- `add_after(key, delay)` schedules a later add; the earliest pending schedule wins.
- `backoff(key)` returns the next per-key failure delay (1 s doubling to 5 min); `forget(key)`
  resets it after a success.
"""

from __future__ import annotations

import asyncio
from typing import Final

BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 300.0


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[str, int] = {}

    def __len__(self) -> int:
        return self._queue.qsize()

    def add(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= due:
                return
            existing[1].cancel()
        handle = loop.call_later(delay, self._fire, key)
        self._timers[key] = (due, handle)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def backoff(self, key: str) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**failures)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
