"""A release of the chart on the real worker node, installed and removed by the real helm.

`Release` runs helm and kubectl against the local control plane with the admin kubeconfig and
reads the in-cluster sandbox RunPod the way any client would: its public API, at its pod's
address (pod addresses are routes on this machine only).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from controlplane import ControlPlane
from runpod_kubelet.demo_chart import sandbox_release_values
from runpod_kubelet.demo_stack import wait_until
from tests.chart.rendering import CHART

T = TypeVar("T")

SANDBOX_KEY = "sandbox"
# Fast emulated pods, so a Job runs in seconds.
SANDBOX_SCENARIO = {"timings": {"provisioningS": 0.5, "startingS": 0.5}}


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 1.0) -> T:
    """The demo's poller (its DemoError names `what` on timeout and fails the test)."""
    return cast(T, wait_until(what, probe, timeout=timeout, interval=interval))


@dataclass
class Release:
    plane: ControlPlane
    helm: Path
    name: str
    namespace: str
    image: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-runpod-kubelet"

    def helm_run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.helm), *args, f"--kubeconfig={self.plane.kubeconfig}", "--namespace", self.namespace]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
            )
        return result

    def values(self) -> list[str]:
        repository, tag = self.image.rsplit(":", 1)
        return [
            *sandbox_release_values(repository=repository, tag=tag),
            "--set-json",
            f"sandbox.scenario={json.dumps(SANDBOX_SCENARIO)}",
            "--set",
            "uninstall.drainTimeoutSeconds=180",
        ]

    def install(self) -> subprocess.CompletedProcess[str]:
        return self.helm_run(
            "install",
            self.name,
            str(CHART),
            "--create-namespace",
            *self.values(),
            "--wait",
            "--timeout",
            "8m",
        )

    def upgrade(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.helm_run(
            "upgrade", self.name, str(CHART), *self.values(), *extra, "--wait", "--timeout", "8m"
        )

    def uninstall(self) -> subprocess.CompletedProcess[str]:
        return self.helm_run("uninstall", self.name, "--wait", "--timeout", "8m", check=False)

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.plane.kubectl(*args, "-o", "json").stdout)

    def pods(self, component: str) -> list[dict[str, Any]]:
        listing = self.kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"app.kubernetes.io/component={component}"
        )
        return list(listing["items"])

    def running_ready(self, component: str, count: int) -> list[dict[str, Any]] | None:
        pods = [p for p in self.pods(component) if _ready(p) and not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count else None

    def leader(self) -> str:
        lease = self.kubectl_json(
            "get", "lease", "-n", self.namespace, "runpod-kubelet-binder-virtual-runpod"
        )
        return str(lease["spec"].get("holderIdentity") or "")

    def sandbox_url(self) -> str:
        pods = self.running_ready("sandbox", 1)
        if not pods:
            raise AssertionError("the sandbox pod is not Running and Ready")
        return f"http://{pods[0]['status']['podIP']}:8089"

    def runpod_pods(self, url: str | None = None) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{url or self.sandbox_url()}/v2/pods",
            headers={"Authorization": f"Bearer {SANDBOX_KEY}"},
            timeout=10,
        )
        response.raise_for_status()
        return list(response.json()["pods"])


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return pod.get("status", {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def owned_by(release: str, items: Sequence[dict[str, Any]]) -> list[str]:
    """Names of objects carrying the release's instance label."""
    return [
        f"{item['kind']}/{item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
        for item in items
        if item["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == release
    ]
