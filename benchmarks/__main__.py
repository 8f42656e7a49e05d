"""`make bench`: run every benchmark in one process tree, one after the other, and print each table.

Each benchmark is its own module with a `main() -> int`; a failing one does not hide the others.
Figures are ratios measured side by side in the same run: absolute times on a shared 2-core
machine are noise.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("benchmarks.webhook_bench", "benchmarks.binder_bench")


def main() -> int:
    failures = 0
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        try:
            module = importlib.import_module(name)
            rc = int(module.main() or 0)
        except Exception as exc:  # a broken benchmark is reported, the others still run
            print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
            rc = 1
        failures += rc != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
