"""Completion: how a run-to-completion pod learns its exit code on RunPod, which has none.

RunPod v2 reports no exit code and restarts a container whose command ends, so a Job's pod would
run its workload again and again. For pods with `restartPolicy: Never` or `OnFailure` the binder
therefore wraps the start command:

    args = sh -c '<user command, shell-quoted>; rc=$?; echo "::rpvk-exit::<pod uid>::$rc"; sleep infinity'

and reads the pod's log stream (`RunPodClient.stream_logs`, source `container`, small `tail`) for
the marker. `sleep infinity` keeps RunPod from restarting the container and re-running the
workload in the seconds before the binder terminates it. Exit 0 -> Succeeded, any other code ->
Failed with that code (container terminated state, annotation `runpod.io/exit-code`); then the
RunPod pod is terminated. `restartPolicy: Always` pods are not wrapped: they run until deleted.
`OnFailure` is treated like `Never` (the pod fails; a Job retries per its backoffLimit with a new
pod), because restarting in place on RunPod would re-run the workload without an exit record.

What the wrapper needs from the image, and the fallback:
- RunPod v2 has no entrypoint override: `args` is handed to the image's ENTRYPOINT. The wrapper
  only works when that ENTRYPOINT execs its arguments (no ENTRYPOINT at all, or a script ending in
  `exec "$@"`, as nvidia/cuda, pytorch and most base images do) and the image has `sh`.
- The wrapper is applied only when the pod sets `command` (Kubernetes semantics: command replaces
  the ENTRYPOINT, so running it through `sh -c` is faithful). A pod that sets only `args` keeps
  them as arguments to the image's ENTRYPOINT and is not wrapped; neither is a pod that sets
  neither (the image's own CMD, which the binder cannot know).
- Fallback for unwrapped run-to-completion pods and shell-less images: no exit code is ever
  known; the pod stays Running until it is deleted (RunPod restarts the finished container). The
  binder records a Warning Event `CompletionNotTracked` so a person sees why.

Retained logs: RunPod keeps no logs after termination, so while a reader reads a pod's stream it
copies the visible container lines into the `binder.retained_logs` store (when given one), from
which the kubelet API answers `kubectl logs` of a finished pod. The first connection asks for
the store's per-pod line bound as backlog, so a pod's earlier lines are kept too.

This module owns the wrapper and marker format (pure; `visible_text` says what of a line is
user output) and `ExitWatcher`, the bounded set of log readers. It does not decide statuses
(`status`) nor terminate pods (`deleting`/`controller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

from binder.retained_logs import RetainedLogs
from runpod_api.errors import RunPodAuthError, RunPodError, RunPodForbidden, RunPodNotFound

log = logging.getLogger(__name__)

MARKER_PREFIX: Final = "::rpvk-exit::"
_MARKER: Final = re.compile(r"::rpvk-exit::(?P<uid>[A-Za-z0-9-]+)::(?P<rc>\d{1,3})\b")
WRAPPED_POLICIES: Final = frozenset({"Never", "OnFailure"})
# Lines of backlog to read on (re)connect: the marker is the last line a wrapped pod prints.
LOG_TAIL: Final = 50
# Bound on concurrent log streams (each is a rate-limited RunPod request held open).
MAX_READERS: Final = 200
_RECONNECT_BACKOFF: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
_CONTAINER: Final = "container"


def start_command(container: Mapping[str, Any]) -> tuple[list[str] | None, list[str]]:
    """(command, args) of a Kubernetes container; command None = the image's ENTRYPOINT."""
    command = container.get("command")
    args = container.get("args") or []
    return (list(command) if command else None), list(args)


def wants_wrapper(*, restart_policy: str | None, container: Mapping[str, Any]) -> bool:
    command, _ = start_command(container)
    return (restart_policy or "Always") in WRAPPED_POLICIES and command is not None


def runpod_args(*, restart_policy: str | None, container: Mapping[str, Any], uid: str) -> str:
    """The one RunPod `args` string for this container (wrapped when completion is tracked)."""
    command, args = start_command(container)
    if command is None:
        return shlex.join(args) if args else ""
    user = shlex.join(command + args)
    if not wants_wrapper(restart_policy=restart_policy, container=container):
        return user
    return wrap_command(user, uid=uid)


def wrap_command(user_command: str, *, uid: str) -> str:
    script = f'{user_command}; rc=$?; echo "{MARKER_PREFIX}{uid}::$rc"; sleep infinity'
    return "sh -c " + shlex.quote(script)


def parse_exit_marker(line: str, *, uid: str) -> int | None:
    """The exit code if `line` is this pod's marker; None for any other line (or another pod's)."""
    if MARKER_PREFIX not in line:
        return None
    for match in _MARKER.finditer(line):
        if match.group("uid") == uid:
            return int(match.group("rc"))
    return None


def visible_text(line: str, *, uid: str) -> str | None:
    """The part of a container line a user sees; None when nothing of it is left.

    The wrapper's `echo` follows the workload's output, so when the workload's last line had no
    newline the marker shares its line ("done::rpvk-exit::<uid>::0"): the text before the
    marker is kept. A line starting with the marker prefix is hidden whatever follows it (a
    malformed or foreign marker is still not user output).
    """
    at = line.find(MARKER_PREFIX)
    if at < 0:
        return line
    if parse_exit_marker(line, uid=uid) is None and line[:at].strip():
        return line  # the user's own text merely mentions the prefix
    before = line[:at]
    return before if before.strip() else None


class ExitWatcher:
    """One cheap log reader per running wrapped pod, at most `max_readers` at once.

    `watch(key, pod_id, uid)` starts a reader if none runs for that key (repeat calls are no-ops);
    the reader calls `on_exit(key, uid, code)` once when it sees the marker, then ends. `forget(key)`
    cancels it. Readers reconnect with backoff on errors and stop on 401/403/404 (the pod or the
    key is gone; the sync loop notices that on its own). Must be closed with `aclose()`.

    With `retained`, every visible container line read is also kept there under the pod's UID
    (`forget` does not drop it: a finished pod's lines must outlive its reader; `retain_only`
    does, for pods deleted from Kubernetes).
    """

    def __init__(
        self,
        *,
        runpod: Any,
        on_exit: Callable[[str, str, int], None],
        max_readers: int = MAX_READERS,
        sleep: Callable[[float], Any] = asyncio.sleep,
        retained: RetainedLogs | None = None,
    ) -> None:
        self._runpod = runpod
        self._retained = retained
        # Backlog per connection: enough to find the marker, and to retain the pod's lines.
        self._tail = LOG_TAIL if retained is None else max(LOG_TAIL, retained.max_lines_per_pod)
        self._on_exit = on_exit
        self._slots = asyncio.Semaphore(max_readers)
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._sleep = sleep

    def watching(self, key: str) -> bool:
        return key in self._tasks

    def watch(self, key: str, *, pod_id: str, uid: str) -> None:
        existing = self._tasks.get(key)
        if existing is not None and existing[0] == pod_id and not existing[1].done():
            return
        if existing is not None:
            existing[1].cancel()
        task = asyncio.create_task(self._read(key, pod_id, uid), name=f"exit-watch {key}")
        self._tasks[key] = (pod_id, task)

    def forget(self, key: str) -> None:
        entry = self._tasks.pop(key, None)
        if entry is not None:
            entry[1].cancel()

    def keys(self) -> Sequence[str]:
        return list(self._tasks)

    def retain_only(self, uids: Collection[str | None]) -> None:
        """Drop retained lines of every pod whose UID is not in `uids` (deleted pods)."""
        if self._retained is not None:
            self._retained.keep_only({uid for uid in uids if uid})

    async def aclose(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _read(self, key: str, pod_id: str, uid: str) -> None:
        attempt = 0
        async with self._slots:
            while True:
                try:
                    stream = self._runpod.stream_logs(pod_id, tail=self._tail, source=_CONTAINER)
                    if self._retained is not None:
                        self._retained.resume(uid)
                    async with contextlib.aclosing(stream):
                        async for event in stream:
                            attempt = 0
                            self._retain(uid, event)
                            code = parse_exit_marker(event.line, uid=uid)
                            if code is not None:
                                self._tasks.pop(key, None)
                                self._on_exit(key, uid, code)
                                return
                    # The stream is not supposed to end; treat an end like a dropped connection.
                except (RunPodNotFound, RunPodAuthError, RunPodForbidden):
                    log.info("log stream for %s closed by RunPod; completion reader stops", key)
                    self._tasks.pop(key, None)
                    return
                except RunPodError as exc:
                    log.info("log stream for %s failed (%s); reconnecting", key, type(exc).__name__)
                delay = _RECONNECT_BACKOFF[min(attempt, len(_RECONNECT_BACKOFF) - 1)]
                attempt += 1
                await self._sleep(delay)

    def _retain(self, uid: str, event: Any) -> None:
        if self._retained is None or getattr(event, "source", _CONTAINER) != _CONTAINER:
            return
        text = visible_text(event.line, uid=uid)
        if text is None:
            self._retained.touch(uid)  # the marker alone: the pod printed nothing (yet)
        else:
            self._retained.append(uid, ts=event.ts, text=text)
