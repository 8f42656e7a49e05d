"""`runpod-kubelet <subcommand> [flags]`: dispatch to each process's own `main(argv)`.

Subcommands are imported lazily so `runpod-kubelet certs` does not import FastAPI and a
broken optional part cannot stop the others from starting.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from runpod_kubelet import __version__

# subcommand -> ("module", "function", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "webhook": ("webhook.cli", "main", "admission webhook: validate, enforce compliance, resolve the plan"),
    "binder": ("binder.cli", "main", "controller: virtual node, catalog, execute plans on RunPod"),
    "certs": ("certs.cli", "main", "generate/rotate the webhook's TLS material and patch caBundle"),
    "sandbox": ("sandbox.cli", "main", "a local emulator of RunPod's REST v2 API"),
    "uninstall": (
        "runpod_kubelet.uninstall",
        "main",
        "helm uninstall's hooks: drain the node, remove run-time objects",
    ),
    "demo": ("runpod_kubelet.demo", "main", "the whole system on a local control plane, narrated"),
}


def _usage() -> str:
    lines = [f"runpod-kubelet {__version__}", "", "usage: runpod-kubelet <subcommand> [--help] [flags]", ""]
    width = max(len(n) for n in SUBCOMMANDS)
    for name, (_, _, text) in SUBCOMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"runpod-kubelet: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
