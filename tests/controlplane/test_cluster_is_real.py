"""The local control plane is a real cluster: kubectl, scheduler and Job controller all work."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controlplane import ControlPlane

_WAIT = 60.0
NODE_LABEL = "controlplane.test/node"


def _eventually(what: str, probe: Callable[[], Any], timeout: float = _WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def tainted_node(control_plane: ControlPlane) -> Iterator[str]:
    """A Ready node carrying a NoSchedule taint; nothing runs it (no kubelet needed)."""
    name = f"virtual-{secrets.token_hex(3)}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "virtual-kubelet", NODE_LABEL: name}},
        "spec": {
            "taints": [{"key": "virtual-kubelet.io/provider", "value": "runpod", "effect": "NoSchedule"}]
        },
        # Node status may be set at create; Ready=True keeps the node lifecycle controller from
        # adding its not-ready/unreachable taints during the test.
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        },
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(node))
    yield name
    control_plane.kubectl("delete", "node", name, "--wait=false", check=False)


def test_kubectl_get_raw_readyz_answers_ok_with_the_admin_kubeconfig(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("get", "--raw", "/readyz")
    assert result.stdout.strip() == "ok"
    assert control_plane.kubeconfig.is_file()
    assert control_plane.server.startswith("https://127.0.0.1:")


def test_scheduler_binds_a_tolerating_pod_to_the_tainted_node(
    control_plane: ControlPlane, namespace: str, tainted_node: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu-job", "namespace": namespace},
        "spec": {
            # Other suites may register virtual nodes too: select this test's node only.
            "nodeSelector": {NODE_LABEL: tainted_node},
            "tolerations": [
                {"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(pod))

    def node_name() -> str:
        got = control_plane.kubectl(
            "get", "pod", "gpu-job", "-n", namespace, "-o", "jsonpath={.spec.nodeName}"
        )
        return got.stdout.strip()

    assert _eventually("the scheduler to bind the pod", node_name) == tainted_node


def test_scheduler_keeps_a_non_tolerating_pod_off_the_tainted_node(
    control_plane: ControlPlane, namespace: str, tainted_node: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": namespace},
        "spec": {
            "nodeSelector": {NODE_LABEL: tainted_node},
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(pod))

    def unschedulable() -> bool:
        got = control_plane.kubectl("get", "pod", "plain", "-n", namespace, "-o", "json")
        conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    _eventually("the scheduler to report the pod unschedulable", unschedulable)
    got = control_plane.kubectl("get", "pod", "plain", "-n", namespace, "-o", "jsonpath={.spec.nodeName}")
    assert got.stdout.strip() == ""


def test_job_controller_creates_the_jobs_pod(control_plane: ControlPlane, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
            },
        },
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(job))

    def job_pods() -> list[dict[str, Any]]:
        got = control_plane.kubectl(
            "get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=train", "-o", "json"
        )
        return list(json.loads(got.stdout)["items"])

    pods = _eventually("the Job controller to create a pod", job_pods)
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Job", "train")
