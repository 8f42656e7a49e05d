"""Rehearse the live RunPod suite for free, against the sandbox: `.venv/bin/python tests/live/rehearse.py`.

Three runs of `pytest tests/live`, each in a fresh process:
1. without `RUNPOD_LIVE`: nothing may be collected, and the terminal must say why;
2. with `RUNPOD_LIVE=1`, a sandbox key and `RUNPOD_BASE_URL` on an in-process sandbox whose
   account already holds two foreign pods (one without a marker, one with another live run's
   marker): every test must pass;
3. afterwards the sandbox must hold exactly the two foreign pods, untouched: the suite deleted
   its own pod and nothing else.

Any `RUNPOD_*` variable of the caller's shell is dropped first, so a real key can never reach
real RunPod from here. Exit status 0 when all three hold; pytest's output is shown as it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from sandbox.testing import running_sandbox

_ROOT: Final = Path(__file__).resolve().parents[2]
_KEY: Final = "rehearsal-key"
_NOT_COLLECTED: Final = "live RunPod suite (tests/live) not collected"
_NO_TESTS_RAN: Final = 5  # pytest's exit status when nothing was collected


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "tests/live", "-m", "live", "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout + result.stderr)
    return result


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}


def main() -> int:
    failures: list[str] = []
    gated = _pytest(_clean_env())
    if gated.returncode != _NO_TESTS_RAN or _NOT_COLLECTED not in gated.stdout:
        failures.append(f"without RUNPOD_LIVE the suite was collected (exit {gated.returncode})")

    with running_sandbox(api_key=_KEY, seed=7) as sb:
        notebook = sb.admin.seed_pod({"name": "colleague-notebook", "gpu": {"id": "NVIDIA A40", "count": 1}})
        other_run = sb.admin.seed_pod(
            {
                "name": "rpvk-00000000-00000000-0",
                "gpu": {"id": "NVIDIA A40", "count": 1},
                "env": {"RPVK_OWNER": "rpvk-live-0ther0run/live/cycle", "RPVK_POD_UID": "u-1"},
            }
        )
        env = _clean_env() | {"RUNPOD_LIVE": "1", "RUNPOD_API_KEY": _KEY, "RUNPOD_BASE_URL": sb.base_url}
        live = _pytest(env)
        if live.returncode != 0:
            failures.append(f"the live suite failed against the sandbox (exit {live.returncode})")
        state = sb.admin.state()
        left = sorted((p["id"], p["status"]) for p in state["pods"])
        expected = sorted((p["id"], "RUNNING") for p in (notebook, other_run))
        if left != expected:
            failures.append(f"the sandbox should hold only the two foreign pods, running; it holds {left}")
        if state["creates"] != 1:
            failures.append(f"the suite should create exactly one pod; it created {state['creates']}")

    for failure in failures:
        print(f"REHEARSAL FAILED: {failure}")
    if not failures:
        print(
            "rehearsal passed: gate closed without RUNPOD_LIVE; suite green on the sandbox; foreign pods untouched"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
