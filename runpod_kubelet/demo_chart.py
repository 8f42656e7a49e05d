"""`demo --chart`: the same story, on the chart as an operator installs it.

Starts the local control plane with a real worker node (`controlplane.WorkerNode`), builds the
image from the Dockerfile (`tools/image/build`, cached) and imports it into the node, then runs
`helm install` of `charts/runpod-kubelet` with that image and the in-cluster sandbox RunPod
(`sandbox.enabled=true`). The binder, the webhook and the sandbox run as the chart's pods on the
node; the story's Job runs on `virtual-runpod`. `close()` runs `helm uninstall` (which drains the
virtual node first), stops the node and the control plane. Needs root, like any kubelet.

Offers the attributes the story and `demo.main` read from `demo_stack.Stack`: `kube`,
`sandbox_url`, `cluster_id`, `webhook_installed`, `log_dir`, `check_alive`, `defer`, `close`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from runpod_kubelet.demo_render import DemoError, RunPodTarget
from runpod_kubelet.demo_stack import Kube, undo_all, wait_until

if TYPE_CHECKING:
    from controlplane import ControlPlane

__all__ = ["RELEASE", "RELEASE_NAMESPACE", "ChartStack", "sandbox_release_values"]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RELEASE: Final = "runpod-kubelet"
RELEASE_NAMESPACE: Final = "runpod-system"
_HELM_TIMEOUT: Final = "8m"
_SANDBOX_PORT: Final = 8089


def _helm_binary() -> Path:
    fetched = subprocess.run(
        [str(REPO_ROOT / "tools" / "helm" / "fetch")], capture_output=True, text=True, check=False
    )
    if fetched.returncode != 0:
        raise DemoError(f"tools/helm/fetch failed: {fetched.stderr.strip()[-500:]}")
    return Path(fetched.stdout.strip().splitlines()[-1])


def sandbox_release_values(*, repository: str, tag: str, api_key: str = "") -> list[str]:
    """helm flags for a release on the local node: the locally built image (never pulled: no
    registry is reachable), the in-cluster sandbox, a fast status sync."""
    values = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        "sandbox.enabled": "true",
        "kubelet.reconcileInterval": "5",
    }
    if api_key:
        values["runpod.apiKey"] = api_key
    return [flag for key, value in values.items() for flag in ("--set", f"{key}={value}")]


@dataclass
class ChartStack:
    data_dir: Path
    runpod: RunPodTarget
    demo_namespace: str
    say: Callable[[str], None]
    max_gpu_price: float
    kube: Kube | None = None
    sandbox_url: str | None = None
    cluster_id: str = ""
    webhook_installed: bool = True
    helm: Path | None = None
    _undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _closed: bool = False

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def check_alive(self) -> None:
        """The chart's pods are the cluster's to restart; nothing of ours can die silently."""

    def defer(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def start(self) -> None:
        from controlplane import BinariesMissing, ControlPlane, binaries_dir
        from controlplane.images import built_image
        from controlplane.node import WorkerNode, node_binaries_dir

        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            bin_dir = binaries_dir(build=False)
        except BinariesMissing:
            self.say("building Kubernetes from source (first run only; tens of minutes on 2 cores)...")
            bin_dir = binaries_dir(build=True)
        self.say("building the worker node's pause image and CoreDNS (first run only)...")
        node_bin = node_binaries_dir()
        self.say(
            "building the image from the Dockerfile (cached by content; the first build takes minutes)..."
        )
        image = built_image()
        self.say(f"image {image.reference}")
        plane = ControlPlane(bin_dir, self.data_dir / "control-plane")
        self._undo.append(("etcd data", lambda: shutil.rmtree(plane.files.etcd_data, ignore_errors=True)))
        self._undo.append(("control plane", plane.stop))
        started = time.monotonic()
        plane.start()
        node = WorkerNode(plane, node_bin_dir=node_bin, data_dir=self.data_dir / "node")
        self._undo.append(("worker node", node.stop))
        node.start()
        node.import_image(image.archive)
        self.say(f"control plane and worker node {node.name} up in {time.monotonic() - started:.1f}s")
        kube = self.kube = Kube(bin_dir / "kubectl", plane.kubeconfig)
        self.cluster_id = str((kube.get("namespace", "kube-system") or {}).get("metadata", {}).get("uid", ""))
        if kube.ensure_namespace(self.demo_namespace):
            self._undo.append((f"namespace {self.demo_namespace}", lambda: self._delete_namespace(kube)))
        self._install(plane, image.repository, image.tag)

    def _install(self, plane: ControlPlane, repository: str, tag: str) -> None:
        helm = self.helm = _helm_binary()
        argv = [
            str(helm),
            "install",
            RELEASE,
            str(REPO_ROOT / "charts" / "runpod-kubelet"),
            f"--kubeconfig={plane.kubeconfig}",
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            *sandbox_release_values(repository=repository, tag=tag, api_key=self.runpod.api_key),
            "--set",
            f"kubelet.maxGpuPrice={self.max_gpu_price}",
            "--wait",
            "--timeout",
            _HELM_TIMEOUT,
        ]
        self.say(
            f"helm install {RELEASE} charts/runpod-kubelet -n {RELEASE_NAMESPACE} --set sandbox.enabled=true ..."
        )
        started = time.monotonic()
        # Registered first so a half-done install is still uninstalled.
        self._undo.append(("helm release", lambda: self._uninstall(plane)))
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DemoError(f"helm install failed: {result.stderr.strip()[-2000:]}")
        self.say(f"installed in {time.monotonic() - started:.1f}s (hooks, webhook, binder, sandbox)")
        kube = self._kube()
        wait_until("the virtual node Ready", lambda: _ready(kube.get("node", "virtual-runpod")), timeout=180)
        sandbox = wait_until("the sandbox pod's address", lambda: self._sandbox_ip(kube), timeout=120)
        self.sandbox_url = f"http://{sandbox}:{_SANDBOX_PORT}"
        self.say("the chart's pods, on the real node:")
        self.say(kube.run("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide").stdout.rstrip())

    def _sandbox_ip(self, kube: Kube) -> str | None:
        pods = kube.get("pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=sandbox")
        for pod in (pods or {}).get("items", []):
            ip = pod.get("status", {}).get("podIP")
            if ip and pod.get("status", {}).get("phase") == "Running":
                return str(ip)
        return None

    def _uninstall(self, plane: ControlPlane) -> None:
        if self.helm is None:
            return
        self.say(f"helm uninstall {RELEASE} (drains the virtual node first)")
        result = subprocess.run(
            [
                str(self.helm),
                "uninstall",
                RELEASE,
                f"--kubeconfig={plane.kubeconfig}",
                "--namespace",
                RELEASE_NAMESPACE,
                "--wait",
                "--timeout",
                _HELM_TIMEOUT,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "not found" not in result.stderr:
            self.say(f"helm uninstall failed: {result.stderr.strip()[-1000:]}")

    def _delete_namespace(self, kube: Kube) -> None:
        kube.run(
            "delete", "namespace", self.demo_namespace, "--ignore-not-found", "--wait=false", check=False
        )

    def _kube(self) -> Kube:
        if self.kube is None:
            raise DemoError("no cluster yet")
        return self.kube

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        undo_all(self._undo, self.say)


def _ready(node: dict[str, object] | None) -> bool:
    status = (node or {}).get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
