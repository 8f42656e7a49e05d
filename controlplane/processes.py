"""Child processes of the local cluster: started in their own process group, killed with us.

`ChildProcess` runs one binary with its output appended to a log file, in a new session, and
asks the kernel to SIGKILL it when the thread that started it dies (`PR_SET_PDEATHSIG`), so a
killed test run leaks no apiserver or kubelet. `stop()` signals exactly that process group
(SIGTERM, then SIGKILL after a grace period) and never touches other processes. Used by
`running` (the control plane), `node` (the worker node) and the demo's own children.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

__all__ = ["ChildProcess", "free_port"]

_STOP_GRACE: Final = 10.0
_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL: Final = 3000


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL it when the parent dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ChildProcess:
    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.name, self.argv, self.log_path = name, list(argv), log_path
        self.env = None if env is None else dict(env)
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            # Only prctl runs between fork and exec; no Python-level locks are taken.
            preexec_fn=_die_with_parent,
        )

    def exited(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, *, grace: float = _STOP_GRACE) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = _LOG_TAIL) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
