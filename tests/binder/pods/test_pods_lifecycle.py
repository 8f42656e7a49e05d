"""The life of a pod on the virtual node: real control plane, sandbox RunPod, in-process controller."""

from __future__ import annotations

import pytest
from pods_support import Harness, make_plan, phase, running_and_ready, wait_for

from binder.events import EventRecorder
from binder.pods.kubeapi import KubePods, PodGone


async def test_a_pod_runs_becomes_ready_and_delete_leaves_no_runpod_pod(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("web", plan=make_plan(ports=("8888/http",)))
    uid = created["metadata"]["uid"]

    await wait_for(lambda: running_and_ready(h, "web"), what="pod Running and Ready")
    pod = await h.pod("web")
    assert pod is not None
    annotations = pod["metadata"]["annotations"]
    runpod = h.runpod_pods(uid)
    assert len(runpod) == 1
    assert annotations["runpod.io/pod-id"] == runpod[0]["id"]
    assert annotations["runpod.io/gpu-type"] == "NVIDIA A40"
    assert annotations["runpod.io/datacenter-id"] == "EU-RO-1"
    assert annotations["runpod.io/cost-per-hour"] == "0.44"
    assert "8888/http=https://" in annotations["runpod.io/port-mappings"]
    status = pod["status"]["containerStatuses"][0]
    assert status["name"] == "main" and status["ready"] is True
    assert status["state"]["running"]["startedAt"]
    assert runpod[0]["env"]["RPVK_POD_UID"] == uid
    assert runpod[0]["gpu"] == {"id": "NVIDIA A40", "count": 1}
    reasons = await h.reasons("web")
    assert "Created" in reasons and "Started" in reasons
    assert h.metric("runpod_kubelet_creates_total", outcome="created") == 1
    assert h.metric("runpod_kubelet_spend_usd_per_hour") == 0.44

    await h.delete_pod("web")
    await wait_for(lambda: _gone(h, "web"), what="pod removed after graceful delete")
    assert h.runpod_pods(uid) == []
    assert h.sandbox.admin.state()["creates"] == 1
    assert h.metric("runpod_kubelet_terminations_total", why="deleted") == 1


async def _gone(h: Harness, name: str) -> bool:
    return await h.pod(name) is None


async def test_writes_aimed_at_a_replaced_pod_are_refused(pods_harness: Harness) -> None:
    h = pods_harness
    await h.create_pod("replaced")
    kube = KubePods(h.api)
    with pytest.raises(PodGone):
        await kube.patch_annotations(h.namespace, "replaced", {"runpod.io/pod-id": "x"}, uid="an-older-pod")
    with pytest.raises(PodGone):
        await kube.patch_status(h.namespace, "replaced", {"status": {"phase": "Failed"}}, uid="an-older-pod")
    pod = await h.pod("replaced")
    assert pod is not None
    assert "runpod.io/pod-id" not in pod["metadata"]["annotations"]
    assert phase(pod) != "Failed"


async def test_repeated_events_are_aggregated_into_one_with_a_count(pods_harness: Harness) -> None:
    h = pods_harness
    pod = await h.create_pod("noisy")
    recorder = EventRecorder(h.api, component="test", host=h.node)
    for _ in range(3):
        await recorder.record(pod, type="Warning", reason="NoCapacity", message="no A40 anywhere")
    await recorder.record(pod, type="Normal", reason="Created", message="RunPod pod x")
    events = await h.events("noisy")
    by_reason = {e["reason"]: e for e in events}
    assert by_reason["NoCapacity"]["count"] == 3
    assert by_reason["NoCapacity"]["type"] == "Warning"
    assert by_reason["NoCapacity"]["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert by_reason["Created"]["count"] == 1
    assert len(events) == 2
