"""Helpers shared by the chart tests: where the chart is, `helm template`, manifest lookups."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "runpod-kubelet"
RELEASE = "rk"
RELEASE_NAMESPACE = "runpod"

Render = Callable[..., list[dict[str, Any]]]


def fetch_helm() -> Path:
    """tools/helm/fetch: downloads once, then only prints the cached path."""
    fetched = subprocess.run(
        [str(REPO / "tools" / "helm" / "fetch")], check=True, capture_output=True, text=True, timeout=240
    )
    return Path(fetched.stdout.strip().splitlines()[-1])


def helm_template(
    helm: Path, *, values: Sequence[str] = (), namespace: str = RELEASE_NAMESPACE, release: str = RELEASE
) -> subprocess.CompletedProcess[str]:
    args = [str(helm), "template", release, str(CHART), "--namespace", namespace]
    for value in values:
        args += ["--set-json", value] if "={" in value or "=[" in value else ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind} *{name_suffix}, found {len(matches)}")
    return matches[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
