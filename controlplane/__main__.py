"""`python -m controlplane [DATA_DIR]`: run a local control plane until Ctrl-C.

Prints the admin kubeconfig path (`export KUBECONFIG=...`) once the cluster is usable, for
poking at it by hand or running the binder and webhook against it. Builds the binaries first
if they are missing. Everything under DATA_DIR (default: a new temporary directory) is kept.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from controlplane.binaries import binaries_dir
from controlplane.running import ControlPlane


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="runpod-kubelet-cp-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    with ControlPlane(binaries_dir(), data_dir) as plane:
        print(f"control plane ready in {time.monotonic() - started:.1f}s at {plane.server}", flush=True)
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print(f"component logs: {plane.log_dir}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
