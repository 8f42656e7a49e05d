"""End to end: a real binder process creates its key Secret and a pod on the sandbox RunPod; the
dialer, with the key read from that Secret, runs `echo hi` in the pod over the emulated sshd."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from binder.ssh.dialing import SshEndpoint
from binder.ssh.endpoints import ssh_endpoint
from binder.ssh.keys import key_pair_from_secret
from binder.ssh.setup import build_dialer
from binder.testing import BinderProcess
from contract.annotations import POD_ID
from contract.plan import Candidate, Plan, plan_to_annotations
from kit.kube import NotFound, get_json, post_json
from runpod_api.client import RunPodClient
from sandbox.testing import RunningSandbox, running_sandbox

pytestmark = pytest.mark.cluster

API_KEY = "test-key"
PLAN = Plan(
    candidates=(Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),),
    gpu_count=1, cloud="SECURE", container_disk_gb=20, max_gpu_price=2.0, catalog_revision="t",
)  # fmt: skip


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=5, timings={"provisioningS": 0.1, "startingS": 0.1}) as sb:
        yield sb


async def poll(what: str, probe: Any, *, within: float = 60.0) -> Any:
    for _ in range(int(within / 0.25)):
        if found := await probe():
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_binder_made_pod_runs_echo_over_ssh_with_the_key_from_the_binders_secret(
    control_plane: Any, kube_api: ApiClient, namespace: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    node = f"vs-{namespace}"[:63]
    binder = BinderProcess(
        args=[
            "--kubeconfig", str(control_plane.kubeconfig), "--runpod-base-url", sandbox.base_url,
            "--node-name", node, "--namespace", namespace, "--cluster-id", f"cl-{namespace}",
            "--no-leader-election", "--reconcile-interval", "2", "--fast-interval", "0.5",
            "--max-gpu-price", "2", "--node-status-interval", "1",
        ],
        log_path=tmp_path / "binder.log",
        api_key=API_KEY,
    )  # fmt: skip
    runpod = RunPodClient(api_key=API_KEY, base_url=sandbox.base_url)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    try:
        secret = await poll(
            "the SSH key Secret",
            lambda: _read(kube_api, f"/api/v1/namespaces/{namespace}/secrets/runpod-kubelet-ssh"),
        )
        pair = key_pair_from_secret(secret)
        await post_json(
            kube_api,
            pods,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "shell", "annotations": plan_to_annotations(PLAN)},
                "spec": {
                    "nodeName": node,
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "main", "image": "runpod/pytorch:2.4"}],
                },
            },
        )

        async def running() -> dict[str, Any] | None:
            pod = await get_json(kube_api, f"{pods}/shell")
            return pod if (pod.get("status") or {}).get("phase") == "Running" else None

        pod = await poll("pod shell Running", running)
        listed = await runpod.get_pod(pod["metadata"]["annotations"][POD_ID])
        endpoint = ssh_endpoint(pod=pod, runpod=listed, public_key=pair.public_key)
        assert isinstance(endpoint, SshEndpoint), endpoint
        dialer = build_dialer(key_pair=pair, api=kube_api, pods=lambda: [pod])

        async with await dialer.connect(endpoint) as conn:
            done = await conn.run("echo hi", check=False)

        assert (done.stdout, done.exit_status) == ("hi\n", 0)
        assert "ssh-privatekey" not in binder.output() and "PRIVATE KEY" not in binder.output()
    finally:
        await runpod.aclose()
        binder.stop(signal.SIGTERM)
        control_plane.kubectl("delete", "pod", "shell", "-n", namespace, "--force", "--grace-period=0",
                              "--ignore-not-found", check=False)  # fmt: skip
        control_plane.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)


async def _read(api: ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return await get_json(api, path)
    except NotFound:
        return None
