"""Retained logs: the last container lines of wrapped pods, kept after RunPod forgets them.

RunPod keeps no logs once a pod is terminated, and the binder terminates a run-to-completion
pod as soon as its exit code is known (`binder.pods.completion`). So while the completion
reader (`ExitWatcher`) reads a wrapped pod's stream anyway, it copies the user-visible lines
here, and the kubelet API answers `kubectl logs` of a finished pod from this store.

Bounds (all constants below; the oldest lines and the least recently used pods go first):
- per pod: the last `MAX_LINES_PER_POD` lines and at most `MAX_BYTES_PER_POD` bytes of text;
- in all: at most `MAX_PODS` pods and `MAX_TOTAL_BYTES` (text plus an estimated per-line
  overhead of Python objects, so the budget bounds real memory, not only the text).

Entries are keyed by the Kubernetes pod UID (a pod re-created under the same name is another
pod) and dropped when that pod is deleted (`keep_only`, called with the live UIDs).

Limits, by design: memory only. A binder restart or a leader change loses every retained line
of pods that had already finished; the kubelet API then says the logs are gone. A pod still
running at a restart is re-read from RunPod's backlog (up to `MAX_LINES_PER_POD` lines).

Also owns the replay rule: a reader that reconnects with a `tail` backfill gets lines it
already stored; `resume` marks the point, and `append` skips exactly those lines again.

Pure and synchronous (one event loop, no locks); knows nothing of RunPod or HTTP.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

__all__ = [
    "LINE_OVERHEAD",
    "MAX_BYTES_PER_POD",
    "MAX_LINES_PER_POD",
    "MAX_PODS",
    "MAX_TOTAL_BYTES",
    "RetainedLine",
    "RetainedLogs",
]

# A failed training job's useful end (traceback, last metrics) fits easily; this is also what
# a reconnecting reader asks RunPod for as backlog (RunPod allows `tail` up to 5000).
MAX_LINES_PER_POD: Final = 2000
# A few very long lines (progress bars with "\r", JSON dumps) must not take a pod's whole share.
MAX_BYTES_PER_POD: Final = 1024 * 1024
# Finished pods whose logs are kept: a Job-heavy cluster has many; an old one is rarely read.
MAX_PODS: Final = 1000
# Memory for the whole store. Counted with LINE_OVERHEAD, so 1000 pods x 2000 short lines
# (~300 MB of Python objects otherwise) cannot happen: the LRU pods go first.
MAX_TOTAL_BYTES: Final = 64 * 1024 * 1024
# Approximate CPython cost of one retained line besides its text (str header, datetime, slot
# object, deque cell).
LINE_OVERHEAD: Final = 160


@dataclass(frozen=True, slots=True)
class RetainedLine:
    """One container line as the user sees it (exit marker removed)."""

    ts: datetime
    text: str


def _text_size(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def _clip(text: str, limit: int) -> str:
    """The last `limit` bytes' worth of `text` (whole characters)."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[len(data) - limit :].decode("utf-8", errors="ignore")


@dataclass(slots=True)
class _Entry:
    lines: deque[RetainedLine] = field(default_factory=deque)
    text_bytes: int = 0
    # Lines stored with the newest timestamp, and the part of them a replay may still repeat.
    last_ts: datetime | None = None
    at_last_ts: Counter[str] = field(default_factory=Counter)
    replay: Counter[str] | None = None

    def cost(self) -> int:
        return self.text_bytes + LINE_OVERHEAD * len(self.lines)


class RetainedLogs:
    """The store. Every method is synchronous and cheap; callers never share entries.

    `touch`/`append` (the completion reader) may create an entry; `lines` (the kubelet API) reads a
    copy; `keep_only`/`discard` (the pod controller) drop entries. An entry being written is the
    most recently used one, so the LRU eviction takes finished pods first.
    """

    def __init__(
        self,
        *,
        max_lines_per_pod: int = MAX_LINES_PER_POD,
        max_bytes_per_pod: int = MAX_BYTES_PER_POD,
        max_pods: int = MAX_PODS,
        max_total_bytes: int = MAX_TOTAL_BYTES,
    ) -> None:
        self.max_lines_per_pod = max_lines_per_pod
        self._max_pod_bytes = max_bytes_per_pod
        self._max_pods = max_pods
        self._max_total = max_total_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    @property
    def total_bytes(self) -> int:
        """Memory charged to the store (text plus `LINE_OVERHEAD` per line)."""
        return self._total

    def resume(self, uid: str) -> None:
        """A reader (re)connects to `uid`'s stream with a backfill: lines it already stored may
        come again. Until the first new line, `append` skips lines older than the newest stored
        one and, at that newest timestamp, as many copies of each line as were stored."""
        entry = self._entries.get(uid)
        if entry is not None and entry.last_ts is not None:
            entry.replay = Counter(entry.at_last_ts)

    def touch(self, uid: str) -> None:
        """`uid`'s stream was read (e.g. only its exit marker): an entry exists from now on, so
        a pod that printed nothing shows empty logs rather than "no longer available"."""
        if uid in self._entries:
            self._entries.move_to_end(uid)
            return
        self._entries[uid] = _Entry()
        self._evict(keep=uid)

    def append(self, uid: str, *, ts: datetime, text: str) -> None:
        """Keep one visible line of `uid` (callers pass no exit-marker text)."""
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = _Entry()
        else:
            self._entries.move_to_end(uid)
            if self._replayed(entry, ts, text):
                return
        text = _clip(text, self._max_pod_bytes)
        before = entry.cost()
        entry.lines.append(RetainedLine(ts=ts, text=text))
        entry.text_bytes += _text_size(text)
        if entry.last_ts is None or ts > entry.last_ts:
            entry.last_ts = ts
            entry.at_last_ts = Counter()
        if ts == entry.last_ts:
            entry.at_last_ts[text] += 1
        while len(entry.lines) > self.max_lines_per_pod or entry.text_bytes > self._max_pod_bytes:
            dropped = entry.lines.popleft()
            entry.text_bytes -= _text_size(dropped.text)
        self._total += entry.cost() - before
        self._evict(keep=uid)

    def lines(self, uid: str) -> list[RetainedLine] | None:
        """`uid`'s retained lines, oldest first; None when nothing was retained for it (an
        empty list is a pod that printed nothing)."""
        entry = self._entries.get(uid)
        if entry is None:
            return None
        self._entries.move_to_end(uid)
        return list(entry.lines)

    def discard(self, uid: str) -> None:
        entry = self._entries.pop(uid, None)
        if entry is not None:
            self._total -= entry.cost()

    def keep_only(self, uids: Collection[str]) -> None:
        """Drop the entries of every pod not in `uids` (the Kubernetes pods that still exist)."""
        for uid in [uid for uid in self._entries if uid not in uids]:
            self.discard(uid)

    @staticmethod
    def _replayed(entry: _Entry, ts: datetime, text: str) -> bool:
        """Whether this line is a repeat of an already stored one (see `resume`)."""
        replay = entry.replay
        if replay is None or entry.last_ts is None:
            return False
        if ts < entry.last_ts:
            return True
        if ts == entry.last_ts and replay[text] > 0:
            replay[text] -= 1
            return True
        entry.replay = None  # the first new line: the backfill's repeats are over
        return False

    def _evict(self, *, keep: str) -> None:
        while len(self._entries) > self._max_pods or self._total > self._max_total:
            oldest = next(iter(self._entries))
            if oldest == keep:
                break  # only the entry being written is left; its own bounds hold it
            self.discard(oldest)
