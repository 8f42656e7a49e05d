"""Where the control-plane binaries live, and building them when they are missing.

`tools/control-plane/build` compiles etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, kubectl and the worker node's kubelet and kube-proxy for the release pinned in `tools/control-plane/versions.env`
into `${RUNPOD_KUBELET_CACHE:-~/.cache/runpod-kubelet}/k8s/<K8S_VERSION>/bin`, and writes a
`COMPLETE` stamp next to `bin/` when every binary is in place. This module reads the same pin
and the same stamp, so a cached build is found without running the script at all (fast), and
runs the script only when asked to build.

`RUNPOD_KUBELET_CONTROL_PLANE_BIN` overrides everything: a directory holding the seven binaries
(e.g. ones downloaded by other means). This module does not start anything; see `running`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "BIN_ENV",
    "COMPONENTS",
    "BinariesMissing",
    "binaries_dir",
    "build_script",
    "read_versions",
]

BIN_ENV: Final = "RUNPOD_KUBELET_CONTROL_PLANE_BIN"
CACHE_ENV: Final = "RUNPOD_KUBELET_CACHE"
COMPONENTS: Final = (
    "etcd",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubectl",
    "kubelet",
    "kube-proxy",
)

_TOOLS: Final = Path(__file__).resolve().parent.parent / "tools" / "control-plane"


class BinariesMissing(RuntimeError):
    """The binaries are not built (or not where the override says), and no build was requested."""


def build_script() -> Path:
    """The build script shipped in the repository next to the version pin."""
    return _TOOLS / "build"


def read_versions(path: Path | None = None) -> dict[str, str]:
    """`KEY=value` pairs of versions.env (comments and blank lines skipped)."""
    text = (path or _TOOLS / "versions.env").read_text()
    versions: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip().strip("\"'")
    return versions


def _complete(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in COMPONENTS)


def _cached_dir(environ: Mapping[str, str]) -> Path:
    cache_root = Path(environ.get(CACHE_ENV) or Path.home() / ".cache" / "runpod-kubelet")
    return cache_root / "k8s" / read_versions()["K8S_VERSION"]


def binaries_dir(*, build: bool = True, environ: Mapping[str, str] | None = None) -> Path:
    """The directory holding all seven binaries.

    Order: `$RUNPOD_KUBELET_CONTROL_PLANE_BIN` (must be complete, never built); the cache for
    the pinned version when its `COMPLETE` stamp exists; otherwise, with `build=True`, run
    `tools/control-plane/build` (slow the first time: tens of minutes on 2 cores; its progress
    goes to this process's stderr) and use the directory it prints last. Raises
    `BinariesMissing` when nothing usable exists.
    """
    env = os.environ if environ is None else environ
    override = env.get(BIN_ENV)
    if override:
        bin_dir = Path(override)
        if not _complete(bin_dir):
            raise BinariesMissing(f"{BIN_ENV}={override} does not hold all of {', '.join(COMPONENTS)}")
        return bin_dir
    out = _cached_dir(env)
    if (out / "COMPLETE").is_file() and _complete(out / "bin"):
        return out / "bin"
    if not build:
        raise BinariesMissing(
            f"control-plane binaries are not built in {out / 'bin'}; run `make control-plane` "
            f"(or {build_script()}) first"
        )
    result = subprocess.run([str(build_script())], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BinariesMissing(f"{build_script()} failed with exit code {result.returncode}")
    bin_dir = Path(lines[-1])
    if not _complete(bin_dir):
        raise BinariesMissing(f"{build_script()} finished but {bin_dir} is incomplete")
    return bin_dir
