"""`runpod-kubelet binder` as a subprocess, for tests, benchmarks and chaos runs.

The binder is started exactly as its Deployment runs it (the console script, settings from flags
and `RUNPOD_API_KEY` from the environment), with its output in a log file that callers read or
print when something fails. Health endpoints listen on loopback on a free port; the kubelet API
gets a free port too, so several binders can run side by side.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

__all__ = ["BinderProcess", "free_port", "wait_for"]

T = TypeVar("T")

BINDER_EXE = Path(sys.executable).with_name("runpod-kubelet")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.2) -> T:
    """Polls `probe` until it returns something truthy and returns that; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class BinderProcess:
    """One binder subprocess. `args` are its flags after `binder` (health and kubelet ports are
    added); it sees this process's environment with `api_key` as RUNPOD_API_KEY and without
    POD_NAME (which would override `--identity`). `name` only labels it for people."""

    def __init__(
        self, *, args: Sequence[str], log_path: Path, api_key: str, name: str = "binder", append: bool = False
    ) -> None:
        environment = {**os.environ, "RUNPOD_API_KEY": api_key}
        environment.pop("POD_NAME", None)
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab" if append else "wb")
        self.health_port = free_port()
        cmd = [
            str(BINDER_EXE), "binder", *args,
            "--health-host", "127.0.0.1", "--health-port", str(self.health_port),
            "--kubelet-port", str(free_port()),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=environment)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readyz(self) -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL: nothing of the binder's shutdown runs, as when a node dies. Also ends a
        stopped (SIGSTOP) process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        self._close_log()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Sends `sig` and returns the exit code; SIGKILL if it has not exited within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if not self._log.closed:
            self._log.close()
