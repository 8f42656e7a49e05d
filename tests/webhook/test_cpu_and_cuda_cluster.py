"""CPU-only pods and CUDA floors through the whole chain on the real control plane: the real
kube-apiserver calls the webhook, which plans from the catalog the binder publishes (CPU flavours
and CUDA versions per data center from the sandbox RunPod); the scheduler binds the pods to the
virtual node and the binder creates, mirrors and terminates their RunPod pods.

Checked on the sandbox's own record of what each create sent (`GET /_sandbox/state`'s
`createBody`): a pod asking `cpu: "2"` without a GPU limit runs as a RunPod CPU pod with `cpu` and
no `gpu` in its body, and a pod with `runpod.io/min-cuda-version` lands on a GPU whose machine
runs that CUDA, with the floor in its body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhook_cluster_support import Stack, get_pod, running_stack
from webhook_samples import gpu_pod

from binder.testing import wait_for
from controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture
def stack(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(
        control_plane,
        apps=namespace,
        tmp_path=tmp_path,
        purpose="cpu",
        binder_args=["--max-gpu-price", "2", "--cpu-budget", "16"],
        webhook_args=["--max-gpu-price=2"],
    ) as stack:
        yield stack


def _pod(stack: Stack, name: str, *, script: str, restart: str, gpus: int | None, **extra: Any) -> str:
    pod = gpu_pod(gpus=gpus, annotations=extra.pop("annotations", None))
    pod["metadata"] = {
        "name": name,
        **({"annotations": pod["metadata"]["annotations"]} if "annotations" in pod["metadata"] else {}),
    }
    pod["spec"]["nodeSelector"] = {"type": "virtual-kubelet", "kubernetes.io/hostname": stack.node}
    pod["spec"]["restartPolicy"] = restart
    container = pod["spec"]["containers"][0]
    container.update({"image": "busybox", "command": ["sh", "-c", script]})
    if "resources" in extra:
        container["resources"] = {**container.get("resources", {}), **extra["resources"]}
    return json.dumps(pod)


def _create(stack: Stack, manifest: str) -> None:
    created = stack.plane.kubectl("create", "-n", stack.apps, "-f", "-", input=manifest, check=False)
    assert created.returncode == 0, created.stderr


def _get(stack: Stack, name: str) -> dict[str, Any]:
    return get_pod(stack.plane, stack.apps, name)


def _phase(stack: Stack, name: str) -> str:
    return str(_get(stack, name).get("status", {}).get("phase"))


def _runpod(stack: Stack, pod_id: str) -> dict[str, Any]:
    state = stack.sandbox.admin.state()
    (found,) = [p for p in state["pods"] + state["terminated"] if p["id"] == pod_id]
    return dict(found)


def test_a_cpu_pod_without_a_gpu_limit_runs_as_a_runpod_cpu_pod_and_buys_no_gpu(stack: Stack) -> None:
    plane = stack.plane
    cpu_request = {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    _create(stack, _pod(stack, "crunch", script="echo crunching; sleep infinity", restart="Always", gpus=None,
                        resources=cpu_request))  # fmt: skip
    _create(stack, _pod(stack, "batch", script="echo batch done; sleep 2; exit 0", restart="Never", gpus=None,
                        resources={"requests": {"cpu": "3"}}))  # fmt: skip

    # Planned as a CPU pod; no GPU limit was added to it.
    admitted = _get(stack, "crunch")
    annotations = admitted["metadata"]["annotations"]
    assert annotations["plan.runpod.io/compute-type"] == "CPU"
    assert annotations["plan.runpod.io/version"] == "2"
    assert "plan.runpod.io/gpu-count" not in annotations
    assert "nvidia.com/gpu" not in json.dumps(admitted["spec"]["containers"][0]["resources"])

    # Runs as a RunPod CPU pod: `cpu` in the create body, no `gpu`; its state says so.
    wait_for("the CPU pod Running", lambda: _phase(stack, "crunch") == "Running", timeout=120)
    running = _get(stack, "crunch")["metadata"]["annotations"]
    assert (running["runpod.io/cpu-type"], running["runpod.io/vcpu-count"]) == ("cpu3c", "2")
    assert "runpod.io/gpu-type" not in running
    runpod = _runpod(stack, running["runpod.io/pod-id"])
    body = runpod["createBody"]
    assert body["cpu"] == {"id": "cpu3c", "vcpuCount": 2}
    assert "gpu" not in body and "gpu" not in runpod
    assert runpod["cost"] == pytest.approx(0.06) and running["runpod.io/cost-per-hour"] == "0.06"

    # The node's cpu capacity is the CPU budget, and the scheduler counted the pods against it.
    node = json.loads(plane.kubectl("get", "node", stack.node, "-o", "json").stdout)
    assert node["status"]["capacity"]["cpu"] == node["status"]["allocatable"]["cpu"] == "16"

    # A run-to-completion CPU pod (cpu 3, so 4 vCPUs) finishes, and its RunPod pod is terminated.
    wait_for("the batch pod Succeeded", lambda: _phase(stack, "batch") == "Succeeded", timeout=180)
    batch = _get(stack, "batch")["metadata"]["annotations"]
    assert batch["runpod.io/exit-code"] == "0" and batch["runpod.io/vcpu-count"] == "4"
    assert _runpod(stack, batch["runpod.io/pod-id"])["createBody"]["cpu"] == {"id": "cpu3c", "vcpuCount": 4}
    wait_for(
        "the batch RunPod pod terminated",
        lambda: batch["runpod.io/pod-id"] not in {p["id"] for p in stack.sandbox.admin.state()["pods"]},
        timeout=60,
    )

    # Deleting the server terminates its RunPod CPU pod.
    crunch_id = running["runpod.io/pod-id"]
    plane.kubectl("delete", "pod", "-n", stack.apps, "crunch", "--wait=false")
    wait_for(
        "the CPU pod gone",
        lambda: plane.kubectl("get", "pod", "-n", stack.apps, "crunch", check=False).returncode != 0,
        timeout=120,
    )
    assert crunch_id not in {p["id"] for p in stack.sandbox.admin.state()["pods"]}


def test_a_pod_with_a_cuda_floor_lands_on_a_gpu_whose_machine_runs_it(stack: Stack) -> None:
    _create(stack, _pod(stack, "cuda13", script="echo on cuda; sleep infinity", restart="Always", gpus=1,
                        annotations={"runpod.io/min-cuda-version": "13.0"}))  # fmt: skip
    plan = _get(stack, "cuda13")["metadata"]["annotations"]
    assert plan["plan.runpod.io/min-cuda-version"] == "13.0"

    wait_for("the CUDA pod Running", lambda: _phase(stack, "cuda13") == "Running", timeout=120)
    annotations = _get(stack, "cuda13")["metadata"]["annotations"]
    runpod = _runpod(stack, annotations["runpod.io/pod-id"])
    assert runpod["cudaVersion"] == "13.0"
    assert runpod["createBody"]["gpu"]["minCudaVersion"] == "13.0"
    assert runpod["gpu"]["id"] == annotations["runpod.io/gpu-type"]

    # A floor no machine meets is refused at admission, naming it and the versions on offer.
    refused = stack.plane.kubectl(
        "create", "-n", stack.apps, "-f", "-", check=False,
        input=_pod(stack, "cuda99", script="true", restart="Never", gpus=1,
                   annotations={"runpod.io/min-cuda-version": "99.0"}),
    )  # fmt: skip
    assert refused.returncode != 0
    assert (
        'runpod.io/min-cuda-version="99.0" on the pod: no GPU type in the catalog runs CUDA >= 99.0'
        in refused.stderr
    )
    assert "12.4, 12.8, 13.0" in refused.stderr

    # On a CPU pod the floor is refused too: it would be silently meaningless.
    cpu = stack.plane.kubectl(
        "create", "-n", stack.apps, "-f", "-", check=False,
        input=_pod(stack, "cpu-cuda", script="true", restart="Never", gpus=None,
                   annotations={"runpod.io/min-cuda-version": "12.4"}),
    )  # fmt: skip
    assert cpu.returncode != 0 and "applies to GPU pods only; this pod runs on a RunPod CPU pod" in cpu.stderr
