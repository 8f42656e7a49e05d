"""Which RunPod pod a `containerLogs` request reads, and when it is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from binder.kubelet_api.options import LogRequestError
from binder.kubelet_api.targets import LogTarget, check_ownership, resolve_target
from binder.pods.naming import owner_markers
from contract.annotations import POD_ID, TERMINATED
from contract.plan import Candidate, Plan, plan_to_annotations

NODE = "virtual-runpod"
UID = "0b5c8e9a-1111-2222-3333-444455556666"


def pod(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "train",
            "namespace": "ml",
            "uid": UID,
            "creationTimestamp": "2026-06-01T12:00:00Z",
            "annotations": {POD_ID: "rp-123", **annotations},
        },
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "main"}, {"name": "sidecar"}],
            "initContainers": [{"name": "setup"}],
        },
    }


def resolve(raw: dict[str, Any] | None, container: str = "main") -> LogTarget:
    return resolve_target(raw, namespace="ml", name="train", container=container, node_name=NODE)


def test_the_first_container_of_a_pod_on_this_node_reads_its_runpod_pod() -> None:
    assert resolve(pod()) == LogTarget(
        runpod_pod_id="rp-123", pod_uid=UID, created_at=datetime(2026, 6, 1, 12, tzinfo=UTC)
    )


def test_a_missing_pod_or_a_pod_elsewhere_is_not_found() -> None:
    with pytest.raises(LogRequestError, match='pods "train" not found') as caught:
        resolve(None)
    assert caught.value.status == 404
    elsewhere = pod()
    elsewhere["spec"]["nodeName"] = "worker-1"
    with pytest.raises(LogRequestError, match="not on node virtual-runpod"):
        resolve(elsewhere)


def test_an_unknown_container_is_refused_in_the_kubelets_words() -> None:
    with pytest.raises(LogRequestError, match='container "nope" is not valid for pod "train"') as caught:
        resolve(pod(), "nope")
    assert caught.value.status == 400


def test_containers_that_do_not_run_on_runpod_are_refused_with_the_reason() -> None:
    with pytest.raises(LogRequestError, match='a RunPod pod runs one container \\("main"\\)'):
        resolve(pod(), "sidecar")
    with pytest.raises(LogRequestError, match="init and ephemeral containers"):
        resolve(pod(), "setup")


def test_the_container_that_runs_is_the_first_the_drop_list_does_not_name() -> None:
    plan = Plan(
        candidates=(Candidate(gpu_type_id="NVIDIA A40", usd_per_hour=0.44),),
        gpu_count=1,
        cloud="SECURE",
        container_disk_gb=50,
        max_gpu_price=0.5,
        catalog_revision="r1",
        drop_containers=("main", "setup"),
    )
    raw = pod(**plan_to_annotations(plan))
    assert resolve(raw, "sidecar").runpod_pod_id == "rp-123"
    with pytest.raises(
        LogRequestError, match='does not run on RunPod: a RunPod pod runs one container \\("sidecar"\\)'
    ):
        resolve(raw, "main")


def test_a_pod_not_yet_created_on_runpod_is_waiting_to_start() -> None:
    raw = pod()
    del raw["metadata"]["annotations"][POD_ID]
    with pytest.raises(LogRequestError, match="is waiting to start: ContainerCreating"):
        resolve(raw)
    raw["status"] = {
        "containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "CreateContainerConfigError"}}}
        ]
    }
    with pytest.raises(
        LogRequestError, match='"main" in pod "train" is waiting to start: CreateContainerConfigError'
    ):
        resolve(raw)


def test_a_terminated_runpod_pod_has_no_logs_left() -> None:
    with pytest.raises(LogRequestError, match="no longer available"):
        resolve(pod(**{TERMINATED: "true"}))


def test_the_runpod_pod_must_carry_this_pods_uid_in_its_owner_marker() -> None:
    target = resolve(pod())
    mine = owner_markers(cluster_id="c1", namespace="ml", name="train", uid=UID, attempt=1)
    check_ownership(mine, target=target, namespace="ml", name="train")
    other = owner_markers(cluster_id="c1", namespace="ml", name="train", uid="another-uid", attempt=1)
    for env in (other, {}, None):
        with pytest.raises(LogRequestError, match="does not belong to pod ml/train"):
            check_ownership(env, target=target, namespace="ml", name="train")
