"""A webhook outage stops new RunPod pods, and nothing else: running pods are still recorded,
finished, labelled and deleted, and their state still cannot be forged.

The whole chain as the chart installs it, on the real control plane: the binder as a process
running as its own ServiceAccount (a TokenRequest kubeconfig) against the sandbox RunPod, the
webhook planning from the catalog that binder publishes, both webhook configurations and the
admission policy. The pods are planned while the webhook is up; then the webhook process is
stopped and its Service loses its endpoints, and everything after that happens in the outage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhook_cluster_support import Stack, get_pod, running_stack, stop
from webhook_samples import gpu_pod

from binder.testing import wait_for
from controlplane import ControlPlane

AS_ALICE = ("--as=alice", "--as-group=system:masters")


@pytest.fixture
def stack(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(
        control_plane,
        apps=namespace,
        tmp_path=tmp_path,
        purpose="outage",
        binder_args=["--max-gpu-price", "2"],
        webhook_args=["--max-gpu-price=2"],
    ) as stack:
        yield stack


def _pod_for(node: str, name: str, script: str, restart: str) -> str:
    """A pod for `node` (scheduled by the real scheduler) running `script` on the sandbox."""
    pod = gpu_pod()
    pod["metadata"] = {"name": name}
    pod["spec"]["nodeSelector"] = {"type": "virtual-kubelet", "kubernetes.io/hostname": node}
    pod["spec"]["restartPolicy"] = restart
    pod["spec"]["containers"][0].update({"image": "busybox", "command": ["sh", "-c", script]})
    return json.dumps(pod)


def _annotations(stack: Stack, name: str) -> dict[str, str]:
    return dict(get_pod(stack.plane, stack.apps, name)["metadata"].get("annotations") or {})


def _phase(stack: Stack, name: str) -> str:
    return str(get_pod(stack.plane, stack.apps, name).get("status", {}).get("phase"))


def test_during_a_webhook_outage_the_binder_records_and_finishes_pods_and_users_label_them(
    stack: Stack,
) -> None:
    plane, apps = stack.plane, stack.apps
    # Planned while the webhook is up: a job that fails after a while, and a server.
    plane.kubectl("create", "-n", apps, "-f", "-",
                  input=_pod_for(stack.node, "job", "echo working; sleep 8; exit 3", "Never"))  # fmt: skip
    plane.kubectl("create", "-n", apps, "-f", "-",
                  input=_pod_for(stack.node, "server", "echo serving; sleep infinity", "Always"))  # fmt: skip

    # The outage: no webhook process, no endpoints behind its Service.
    stop(stack.webhook.process)
    stack.webhook.route.close()
    blocked = plane.kubectl("create", "-n", apps, "-f", "-", check=False,
                            input=_pod_for(stack.node, "new", "true", "Never"))  # fmt: skip
    assert blocked.returncode != 0 and 'failed calling webhook "mutate.runpod-kubelet.io"' in blocked.stderr

    # The binder still records what it did, runs the job to its end and records the exit code.
    wait_for("the server Running", lambda: _phase(stack, "server") == "Running", timeout=120)
    server_id = _annotations(stack, "server")["runpod.io/pod-id"]
    labelled = plane.kubectl("label", "-n", apps, "pod", "job", "server", "team=ml", *AS_ALICE, check=False)
    assert labelled.returncode == 0, labelled.stderr
    forged = plane.kubectl("annotate", "-n", apps, "pod", "job", "runpod.io/exit-code=0", "--overwrite",
                           *AS_ALICE, check=False)  # fmt: skip
    assert forged.returncode != 0
    assert f"runpod.io/exit-code: written only by the binder ({stack.binder_username}), not by alice" in (
        forged.stderr
    )
    wait_for("the job Failed", lambda: _phase(stack, "job") == "Failed", timeout=120)
    job: dict[str, Any] = get_pod(plane, apps, "job")
    assert job["metadata"]["annotations"]["runpod.io/exit-code"] == "3"
    assert job["metadata"]["labels"]["team"] == "ml"
    job_id = job["metadata"]["annotations"]["runpod.io/pod-id"]

    # Deleting the server ends its RunPod pod; the finished job's RunPod pod is gone too.
    plane.kubectl("delete", "pod", "-n", apps, "server", "--wait=false")
    wait_for(
        "the server pod gone",
        lambda: plane.kubectl("get", "pod", "-n", apps, "server", check=False).returncode != 0,
        timeout=120,
    )
    live = {p["id"] for p in stack.sandbox.admin.state()["pods"]}
    assert server_id not in live and job_id not in live
