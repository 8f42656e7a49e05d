"""`runpod-kubelet binder [flags]`: parse settings, configure logging, run the composition root.

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad flags or settings, 3 after losing leadership,
4 when an essential leader task ended; the Deployment restarts the process in the last two cases.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from binder.settings import load_binder_settings
from kit.logs import configure_logging

__all__ = ["main"]

EXIT_BAD_SETTINGS = 2


def main(argv: list[str]) -> int:
    try:
        settings = load_binder_settings(argv)
    except ValidationError as exc:
        # pydantic echoes input values; a bad key must not reach the terminal, so list only
        # where and what.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        print(f"runpod-kubelet binder: invalid settings: {problems}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    configure_logging(settings.log_level, secrets=(settings.runpod_api_key.get_secret_value(),))
    log = logging.getLogger(__name__)
    log.info(
        "runpod-kubelet binder starting", extra={"node": settings.node_name, "identity": settings.identity}
    )
    # Imported after logging is set up: importing the clients is the slow part of start-up.
    from binder.composition import run_until_signalled
    from kit.kube import KubeConfigError

    try:
        return run_until_signalled(settings)
    except KubeConfigError as exc:
        log.error("cannot connect to Kubernetes", extra={"error": exc.message})
        return EXIT_BAD_SETTINGS
