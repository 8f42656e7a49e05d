"""Where to SSH for a pod, or the refusal that says why not and what to do: every case."""

from __future__ import annotations

from typing import Any

import pytest

from binder.ssh.dialing import SshEndpoint, SshUnavailable, Unavailability
from binder.ssh.endpoints import Refusal, ssh_endpoint
from runpod_api.models import Pod

OURS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurs runpod-kubelet"
DIRECT = {
    "host": "195.26.233.3",
    "port": 34446,
    "username": "root",
    "command": "ssh root@195.26.233.3 -p 34446",
}


def k8s_pod(*, phase: str = "Running", deleting: bool = False, **annotations: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "namespace": "ml",
        "name": "train",
        "uid": "u1",
        "annotations": {
            "runpod.io/pod-id": "rp1",
            **{k.replace("runpod_", "runpod.io/", 1): v for k, v in annotations.items()},
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase}}


def runpod_pod(
    *,
    status: str = "RUNNING",
    ports: tuple[str, ...] = ("8888/http", "22/tcp"),
    public_key: str | None = OURS,
    direct: dict[str, Any] | None = DIRECT,
    public_22: int | None = 34446,
) -> Pod:
    return Pod.model_validate(
        {
            "id": "rp1",
            "status": status,
            "image": "runpod/pytorch:2.4",
            "ports": list(ports),
            "env": {"PUBLIC_KEY": public_key} if public_key is not None else {},
            "ssh": {"proxy": None, "direct": direct},
            "runtime": {"ports": [{"private": 22, "public": public_22, "type": "tcp", "ip": "195.26.233.3"}]}
            if status == "RUNNING"
            else None,
        }
    )


def refusal(pod: dict[str, Any], runpod: Pod | None, public_key: str | None = OURS) -> Refusal:
    answer = ssh_endpoint(pod=pod, runpod=runpod, public_key=public_key)
    assert isinstance(answer, Refusal), answer
    return answer


def test_a_running_pod_with_ssh_direct_gets_its_endpoint() -> None:
    assert ssh_endpoint(pod=k8s_pod(), runpod=runpod_pod(), public_key=OURS) == SshEndpoint(
        runpod_pod_id="rp1", host="195.26.233.3", port=34446, username="root",
        image="runpod/pytorch:2.4", pod="ml/train",
    )  # fmt: skip


def test_the_endpoint_needs_no_key_check_when_the_key_is_not_known() -> None:
    assert isinstance(ssh_endpoint(pod=k8s_pod(), runpod=runpod_pod(public_key=None)), SshEndpoint)


def test_a_kubernetes_phase_that_lags_behind_runpod_does_not_matter() -> None:
    assert isinstance(
        ssh_endpoint(pod=k8s_pod(phase="Pending"), runpod=runpod_pod(), public_key=OURS), SshEndpoint
    )


@pytest.mark.parametrize(
    ("pod", "runpod", "reason", "message"),
    [
        (
            k8s_pod(runpod_ssh="disabled"),
            runpod_pod(),
            Unavailability.OPTED_OUT,
            "pod ml/train opted out of SSH with runpod.io/ssh=disabled; remove the annotation and recreate the pod",
        ),
        (
            k8s_pod(phase="Succeeded"),
            runpod_pod(),
            Unavailability.FINISHED,
            "pod ml/train has finished (phase Succeeded); exec, attach and port-forward need a running pod",
        ),
        (
            k8s_pod(phase="Failed"),
            None,
            Unavailability.FINISHED,
            "pod ml/train has finished (phase Failed); exec, attach and port-forward need a running pod",
        ),
        (
            k8s_pod(deleting=True),
            runpod_pod(),
            Unavailability.FINISHED,
            "pod ml/train is being deleted: its RunPod pod is terminated or terminating",
        ),
        (
            k8s_pod(runpod_terminated="true"),
            None,
            Unavailability.FINISHED,
            "pod ml/train is being deleted: its RunPod pod is terminated or terminating",
        ),
        (
            {"metadata": {"namespace": "ml", "name": "train"}, "status": {"phase": "Pending"}},
            None,
            Unavailability.NOT_RUNNING,
            "pod ml/train is not running yet (no RunPod pod is created for it yet); retry when the pod is Running",
        ),
        (
            k8s_pod(phase="Pending"),
            None,
            Unavailability.NOT_RUNNING,
            "pod ml/train is not running yet (RunPod does not list its pod rp1 yet); retry when the pod is Running",
        ),
        (
            k8s_pod(phase="Pending"),
            runpod_pod(status="PROVISIONING", direct=None),
            Unavailability.NOT_RUNNING,
            "pod ml/train is not running yet (RunPod status PROVISIONING); retry when the pod is Running",
        ),
        (
            k8s_pod(phase="Pending"),
            runpod_pod(status="STARTING", direct=None),
            Unavailability.NOT_RUNNING,
            "pod ml/train is not running yet (RunPod status STARTING); retry when the pod is Running",
        ),
        (
            k8s_pod(),
            runpod_pod(status="MIGRATING", direct=None),
            Unavailability.NOT_RUNNING,
            "pod ml/train is not running yet (RunPod status MIGRATING); retry when the pod is Running",
        ),
        (
            k8s_pod(),
            runpod_pod(status="EXITED", direct=None),
            Unavailability.FINISHED,
            "RunPod pod rp1 of pod ml/train is stopped (RunPod status EXITED); "
            "exec, attach and port-forward need a running pod",
        ),
        (
            k8s_pod(),
            runpod_pod(status="ERROR", direct=None),
            Unavailability.FINISHED,
            "RunPod pod rp1 of pod ml/train failed on its host (RunPod status ERROR; see `kubectl logs`); "
            "exec, attach and port-forward need a running pod",
        ),
        (
            k8s_pod(),
            runpod_pod(status="TERMINATED", direct=None),
            Unavailability.FINISHED,
            "RunPod pod rp1 of pod ml/train is terminated; exec, attach and port-forward need a running pod",
        ),
        (
            k8s_pod(),
            runpod_pod(ports=("8888/http",), direct=None),
            Unavailability.NO_SSH_ACCESS,
            "RunPod pod rp1 of pod ml/train was created without 22/tcp in its ports, so it has no SSH address; "
            "recreate the pod",
        ),
        (
            k8s_pod(),
            runpod_pod(ports=("22/http",), direct=None),
            Unavailability.NO_SSH_ACCESS,
            "RunPod pod rp1 of pod ml/train was created without 22/tcp in its ports, so it has no SSH address; "
            "recreate the pod",
        ),
        (
            k8s_pod(),
            runpod_pod(public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser alice"),
            Unavailability.NO_SSH_ACCESS,
            "RunPod pod rp1 of pod ml/train was created without the binder's SSH key in PUBLIC_KEY (before SSH "
            "was set up, or under an earlier key Secret); recreate the pod",
        ),
        (
            k8s_pod(),
            runpod_pod(direct=None),
            Unavailability.NO_SSHD,
            "the image runpod/pytorch:2.4 of pod ml/train runs no sshd (RunPod reports no ssh.direct for it "
            "although 22/tcp is mapped); use an image that starts sshd with PUBLIC_KEY, such as RunPod's "
            "official images",
        ),
        (
            k8s_pod(),
            runpod_pod(direct=None, public_22=None),
            Unavailability.NO_PUBLIC_ADDRESS,
            "RunPod pod rp1 of pod ml/train has no public address for 22/tcp (RunPod maps no public port to it: "
            "its host may have no public IP); exec, attach and port-forward need one, so recreate the pod to "
            "have it placed again",
        ),
    ],
    ids=[
        "opted-out", "succeeded", "failed", "deleting", "terminated-annotation", "no-runpod-pod",
        "not-listed-yet", "provisioning", "starting", "unknown-status", "exited", "error",
        "runpod-terminated", "no-22-port", "22-as-http", "not-our-key", "no-sshd", "no-public-port",
    ],
)  # fmt: skip
def test_each_reason_to_refuse_has_its_message(
    pod: dict[str, Any], runpod: Pod | None, reason: Unavailability, message: str
) -> None:
    answer = refusal(pod, runpod)

    assert (answer.reason, answer.message) == (reason, message)
    error = answer.error()
    assert isinstance(error, SshUnavailable) and (str(error), error.reason) == (message, reason)


def test_opting_out_wins_over_every_other_cause() -> None:
    assert refusal(k8s_pod(phase="Succeeded", runpod_ssh="disabled"), None).reason is Unavailability.OPTED_OUT


def test_only_not_running_yet_and_network_trouble_are_worth_a_retry() -> None:
    assert {r for r in Unavailability if r.temporary} == {
        Unavailability.NOT_RUNNING,
        Unavailability.TIMEOUT,
        Unavailability.UNREACHABLE,
    }
