"""Helpers for the pod lifecycle tests against the real control plane and the sandbox RunPod.

`pods_harness` runs a `PodController` in-process for one test: its own virtual node name (so
controllers of different tests never see each other's pods), its own sandbox account, fast
intervals. Pods are created bound to the node (`spec.nodeName`) with plan annotations built by
`contract.plan.plan_to_annotations`; the webhook is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from prometheus_client import CollectorRegistry

from binder.pods.controller import PodController
from binder.pods.metrics import PodMetrics
from binder.settings import BinderSettings
from binder.testing import BinderProcess as RunningBinder
from contract.plan import Candidate, Plan, Port, plan_to_annotations
from controlplane import ControlPlane
from controlplane.egress import CLUSTER_NETWORK_IP
from kit.kube import NotFound, delete_json, get_json, post_json
from runpod_api.client import RunPodClient
from sandbox.testing import RunningSandbox

API_KEY = "test-key"


def make_plan(
    candidates: tuple[tuple[str, str | None, float], ...] = (("NVIDIA A40", "EU-RO-1", 0.44),),
    *,
    gpu_count: int = 1,
    ports: tuple[str, ...] = (),
    max_gpu_price: float = 2.0,
    drop_containers: tuple[str, ...] = (),
) -> Plan:
    return Plan(
        candidates=tuple(Candidate(gpu=g, dc=dc, usdPerHour=usd) for g, dc, usd in candidates),
        gpu_count=gpu_count,
        cloud="SECURE",
        datacenter_ids=(),
        ports=tuple(Port(number=int(p.split("/")[0]), protocol=p.split("/")[1]) for p in ports),  # type: ignore[arg-type]
        container_disk_gb=20,
        max_gpu_price=max_gpu_price,
        catalog_revision="test",
        drop_containers=drop_containers,
    )


def pod_manifest(
    name: str,
    node: str,
    *,
    plan: Plan | None = None,
    command: list[str] | None = None,
    restart_policy: str = "Always",
    env: list[dict[str, Any]] | None = None,
    image: str = "nvidia/cuda:12.4.1-base-ubuntu22.04",
    extra_annotations: dict[str, str] | None = None,
    sidecars: tuple[str, ...] = (),
    init_containers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A pod bound to `node`; `sidecars` and `init_containers` are extra containers by name."""
    container: dict[str, Any] = {"name": "main", "image": image}
    if command is not None:
        container["command"] = command
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {**plan_to_annotations(plan or make_plan()), **(extra_annotations or {})},
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [container, *({"name": n, "image": f"{n}:1"} for n in sidecars)],
            **(
                {"initContainers": [{"name": n, "image": f"{n}:1"} for n in init_containers]}
                if init_containers
                else {}
            ),
        },
    }


@dataclass
class Harness:
    api: ApiClient
    namespace: str
    node: str
    cluster_id: str
    sandbox: RunningSandbox
    settings: BinderSettings
    runpod: RunPodClient
    controller: PodController | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: PodMetrics | None = None
    # The binder's SSH public key the controller adds to every RunPod pod (None: none).
    ssh_public_key: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    # ---- controller --------------------------------------------------------------------------

    async def start(self) -> PodController:
        if self.metrics is None:
            self.metrics = PodMetrics(self.registry)
        self.controller = PodController(
            self.api,
            self.runpod,
            self.settings,
            self.cluster_id,
            metrics=self.metrics,
            visibility_window=timedelta(seconds=2),
            ssh_public_key=self.ssh_public_key,
        )
        self._task = asyncio.create_task(self.controller.run(), name="pod-controller")
        await asyncio.wait_for(self.controller.ready.wait(), timeout=30)
        return self.controller

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the controller's metrics (same registry across restarts)."""
        return self.registry.get_sample_value(name, labels)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ---- Kubernetes --------------------------------------------------------------------------

    async def create_pod(self, name: str, **kw: Any) -> dict[str, Any]:
        return await post_json(
            self.api, f"/api/v1/namespaces/{self.namespace}/pods", pod_manifest(name, self.node, **kw)
        )

    async def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await get_json(self.api, f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        except NotFound:
            return None

    async def delete_pod(self, name: str, *, force: bool = False) -> None:
        body = {"gracePeriodSeconds": 0} if force else None
        await delete_json(self.api, f"/api/v1/namespaces/{self.namespace}/pods/{name}", body=body)

    async def events(self, name: str) -> list[dict[str, Any]]:
        listed = await get_json(
            self.api,
            f"/api/v1/namespaces/{self.namespace}/events",
            params={"fieldSelector": f"involvedObject.name={name}"},
        )
        return list(listed.get("items") or [])

    async def reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in await self.events(name)]

    # ---- RunPod (sandbox) --------------------------------------------------------------------

    def runpod_pods(self, uid: str | None = None) -> list[dict[str, Any]]:
        """Live sandbox pods of this test's cluster (optionally of one Kubernetes pod UID)."""
        pods = self.sandbox.admin.state()["pods"]
        ours = [
            p for p in pods if (p.get("env") or {}).get("RPVK_OWNER", "").startswith(self.cluster_id + "/")
        ]
        if uid is not None:
            ours = [p for p in ours if p["env"].get("RPVK_POD_UID") == uid]
        return [p for p in ours if p.get("status") != "TERMINATED"]


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    *,
    within: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `within` s."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


def phase(pod: dict[str, Any] | None) -> str | None:
    return None if pod is None else (pod.get("status") or {}).get("phase")


async def running_and_ready(h: Harness, name: str) -> bool:
    pod = await h.pod(name)
    return phase(pod) == "Running" and condition(pod, "Ready") == "True"


def condition(pod: dict[str, Any] | None, kind: str) -> str | None:
    for cond in ((pod or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def job_manifest(name: str, node: str, *, command: list[str], plan: Plan | None = None) -> dict[str, Any]:
    template = pod_manifest(name, node, plan=plan, command=command, restart_policy="Never")
    template_metadata = {"annotations": template["metadata"]["annotations"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": template_metadata, "spec": template["spec"]},
        },
    }


def job_condition(job: dict[str, Any] | None, kind: str) -> str | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


async def create_job(
    h: Harness, name: str, *, command: list[str], plan: Plan | None = None
) -> dict[str, Any]:
    return await post_json(
        h.api,
        f"/apis/batch/v1/namespaces/{h.namespace}/jobs",
        job_manifest(name, h.node, command=command, plan=plan),
    )


async def job(h: Harness, name: str) -> dict[str, Any]:
    return await get_json(h.api, f"/apis/batch/v1/namespaces/{h.namespace}/jobs/{name}")


async def job_pods(h: Harness, name: str) -> list[dict[str, Any]]:
    listed = await get_json(
        h.api, f"/api/v1/namespaces/{h.namespace}/pods", params={"labelSelector": f"job-name={name}"}
    )
    return list(listed.get("items") or [])


class BinderProcess(RunningBinder):
    """`runpod-kubelet binder` as a subprocess (exactly as the Deployment runs it); log in a file."""

    def __init__(
        self,
        *,
        kubeconfig: str,
        base_url: str,
        node: str,
        namespace: str,
        cluster_id: str,
        log_path: Path,
        extra: tuple[str, ...] = (),
    ) -> None:
        args = [
            "--kubeconfig", kubeconfig, "--runpod-base-url", base_url,
            "--node-name", node, "--namespace", namespace, "--cluster-id", cluster_id,
            "--no-leader-election", "--reconcile-interval", "2", "--fast-interval", "0.5",
            "--sweep-interval", "1", "--sweep-grace-seconds", "3", "--gpu-budget", "64",
            "--max-gpu-price", "2", "--node-status-interval", "1", "--log-level", "info", *extra,
        ]  # fmt: skip
        super().__init__(args=args, log_path=log_path, api_key=API_KEY, append=True)

    def kill(self, timeout: float = 15) -> None:
        super().kill(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        return super().stop(sig, timeout)


def proxied_binder(
    plane: ControlPlane, *, base_url: str, node: str, namespace: str, cluster_id: str, log_path: Path
) -> BinderProcess:
    """A binder process whose node the apiserver's node proxy reaches, as a kubelet's: its
    InternalIP is the control plane's cluster-network address, and it trusts the apiserver's
    kubelet client certificate. Returns once the binder has published its catalog: pods are
    planned against it, and so is the binder's choice of network."""
    binder = BinderProcess(
        kubeconfig=str(plane.kubeconfig),
        base_url=base_url,
        node=node,
        namespace=namespace,
        cluster_id=cluster_id,
        log_path=log_path,
        extra=(
            "--node-address", CLUSTER_NETWORK_IP,
            "--kubelet-client-ca-file", str(plane.kubelet_client_ca_file),
        ),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while (
            plane.kubectl("get", "configmap", "runpod-catalog", "-n", namespace, check=False).returncode != 0
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"the binder published no catalog in {namespace}; log {log_path}")
            time.sleep(0.5)
    except BaseException:
        binder.stop()
        raise
    return binder
