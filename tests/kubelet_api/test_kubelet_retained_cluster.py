"""`kubectl logs` of a finished Job pod, after the binder terminated its RunPod pod.

The real kube-apiserver and Job controller, the sandbox RunPod, and the binder's pod controller
and kubelet API sharing one retained-logs store, as the composition root wires them. The Job's
pod ends Failed, its RunPod pod is terminated (RunPod then keeps no logs), and `kubectl logs`
still shows what the container printed, without the completion wrapper's exit marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from kubelet_nodes import register_node, remove_node
from kubernetes_asyncio.client import ApiClient

from binder.kubelet_api.server import KubeletApiServer
from binder.pods.controller import PodController
from binder.retained_logs import RetainedLogs
from binder.settings import BinderSettings
from contract.annotations import EXIT_CODE, TERMINATED
from contract.plan import Candidate, Plan, plan_to_annotations
from controlplane import ControlPlane
from runpod_api.backoff import RetryPolicy
from runpod_api.client import RunPodClient
from sandbox.testing import RunningSandbox, running_sandbox

API_KEY = "retained-logs-test-key"
DEADLINE = 60.0


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        yield sb


@dataclass
class Binder:
    node: str
    plane: ControlPlane
    sandbox: RunningSandbox
    retained: RetainedLogs
    cluster_id: str

    async def kubectl(self, *args: str) -> Any:
        return await asyncio.to_thread(self.plane.kubectl, *args, check=False)

    def live_runpod_pods(self, uid: str) -> list[dict[str, Any]]:
        pods = self.sandbox.admin.state()["pods"]
        return [
            p
            for p in pods
            if (p.get("env") or {}).get("RPVK_POD_UID") == uid and p.get("status") != "TERMINATED"
        ]


@pytest.fixture
async def binder(
    control_plane: ControlPlane, namespace: str, kube_api: ApiClient, sandbox: RunningSandbox
) -> AsyncIterator[Binder]:
    node = f"rpret-{secrets.token_hex(4)}"
    settings = BinderSettings(
        runpod_api_key=API_KEY,
        runpod_base_url=sandbox.base_url,
        node_name=node,
        node_address="127.0.0.1",
        kubelet_client_ca_file=str(control_plane.kubelet_client_ca_file),
        reconcile_interval=2,
        fast_interval=0.5,
        sweep_interval=1,
        sweep_grace_seconds=2,
        gpu_budget=8,
        max_gpu_price=2.0,
        leader_election=False,
    )
    cluster_id = f"cl-{namespace}"
    retained = RetainedLogs()
    runpod = RunPodClient(
        api_key=API_KEY,
        base_url=sandbox.base_url,
        retry=RetryPolicy(reconcile_delays=(0.2, 0.5), backoff_base=0.05),
    )
    controller = PodController(
        kube_api,
        runpod,
        settings,
        cluster_id,
        visibility_window=timedelta(seconds=2),
        retained_logs=retained,
    )
    server = KubeletApiServer(api=kube_api, runpod=runpod, settings=settings, port=0, retained_logs=retained)
    tasks = [
        asyncio.create_task(server.serve(), name="kubelet-api"),
        asyncio.create_task(controller.run(), name="pod-controller"),
    ]
    try:
        await asyncio.wait_for(server.ready.wait(), DEADLINE)
        await asyncio.wait_for(controller.ready.wait(), DEADLINE)
        assert server.bound_port is not None
        await register_node(control_plane, node, server.bound_port)
        yield Binder(
            node=node, plane=control_plane, sandbox=sandbox, retained=retained, cluster_id=cluster_id
        )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runpod.aclose()
        await remove_node(control_plane, node)


def job_manifest(name: str, node: str, command: list[str]) -> dict[str, Any]:
    plan = Plan(
        candidates=(Candidate(gpu_type_id="NVIDIA A40", datacenter_id="EU-RO-1", usd_per_hour=0.44),),
        gpu_count=1,
        cloud="SECURE",
        datacenter_ids=(),
        ports=(),
        container_disk_gb=20,
        max_gpu_price=2.0,
        catalog_revision="test",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": plan_to_annotations(plan)},
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "main", "image": "busybox", "command": command}],
                },
            },
        },
    }


async def wait_for(check: Callable[[], Awaitable[Any]], *, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


async def test_kubectl_logs_of_a_failed_job_pod_shows_its_lines_after_its_runpod_pod_is_gone(
    binder: Binder, namespace: str
) -> None:
    b = binder
    manifest = job_manifest("train", b.node, ["sh", "-c", "echo loading; echo epoch 1; echo boom; exit 3"])
    await asyncio.to_thread(b.plane.kubectl, "create", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    async def finished_pod() -> dict[str, Any] | None:
        listed = await b.kubectl("get", "pods", "-n", namespace, "-l", "job-name=train", "-o", "json")
        items = json.loads(listed.stdout or "{}").get("items") or []
        if not items:
            return None
        pod: dict[str, Any] = items[0]
        annotations = pod["metadata"].get("annotations") or {}
        done = pod.get("status", {}).get("phase") == "Failed" and TERMINATED in annotations
        return pod if done else None

    pod = await wait_for(finished_pod, what="the Job's pod to fail and its RunPod pod to be terminated")
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    assert pod["metadata"]["annotations"][EXIT_CODE] == "3"
    assert b.live_runpod_pods(uid) == []

    logs = await b.kubectl("logs", "-n", namespace, "job/train")
    assert (logs.returncode, logs.stdout) == (0, "loading\nepoch 1\nboom\n"), logs.stderr
    tail = await b.kubectl("logs", "-n", namespace, name, "--tail=1")
    assert (tail.returncode, tail.stdout) == (0, "boom\n"), tail.stderr
    # A follow of a finished pod returns its lines and ends.
    follow = await asyncio.wait_for(b.kubectl("logs", "-n", namespace, name, "-f", "--limit-bytes=10"), 30)
    assert (follow.returncode, follow.stdout) == (0, "loading\nep"), follow.stderr

    # Deleting the Kubernetes pod drops what was kept of it.
    await b.kubectl("delete", "pod", "-n", namespace, name, "--wait=false")

    async def dropped() -> bool:
        return uid not in b.retained

    await wait_for(dropped, what="the deleted pod's retained lines to be dropped")


async def test_a_finished_pod_whose_lines_were_not_retained_says_its_logs_are_gone(
    binder: Binder, namespace: str
) -> None:
    b = binder
    manifest = job_manifest("lost", b.node, ["sh", "-c", "echo gone; exit 1"])
    await asyncio.to_thread(b.plane.kubectl, "create", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    async def terminated_pod() -> dict[str, Any] | None:
        listed = await b.kubectl("get", "pods", "-n", namespace, "-l", "job-name=lost", "-o", "json")
        items = json.loads(listed.stdout or "{}").get("items") or []
        pod = items[0] if items else None
        return pod if pod and TERMINATED in (pod["metadata"].get("annotations") or {}) else None

    pod = await wait_for(terminated_pod, what="the RunPod pod to be terminated")
    b.retained.discard(pod["metadata"]["uid"])  # as after a binder restart
    logs = await b.kubectl("logs", "-n", namespace, pod["metadata"]["name"])
    assert logs.returncode != 0
    assert "are no longer available" in logs.stderr
