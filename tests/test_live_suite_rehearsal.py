"""The opt-in live RunPod suite stays runnable: rehearsed against the sandbox on every build.

tests/live is collected only with RUNPOD_LIVE=1 and a key, so without this rehearsal a broken
live suite would go unnoticed until someone spends money on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_live_suite_passes_against_the_sandbox_and_touches_only_its_own_pods() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "live" / "rehearse.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
