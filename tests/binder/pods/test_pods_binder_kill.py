"""The binder process SIGKILLed mid-create: never a duplicate RunPod pod, never a leak.

The kill lands at a known step thanks to sandbox faults, not test hooks in the binder: a create
that RunPod applied but never answered (the binder holds intent, the pod exists, no id) and a
create that RunPod never applied (intent only). A fresh binder must finish both with exactly one
RunPod pod each, and `kubectl delete` must leave none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pods_support import BinderProcess, Harness, phase, wait_for

from contract.annotations import CREATE_ATTEMPT, POD_ID


async def _running(h: Harness, name: str) -> bool:
    return phase(await h.pod(name)) == "Running"


async def _gone(h: Harness, name: str) -> bool:
    return await h.pod(name) is None


def _binder(h: Harness, control_plane: Any, tmp_path: Path) -> BinderProcess:
    return BinderProcess(
        kubeconfig=str(control_plane.kubeconfig),
        base_url=h.sandbox.base_url,
        node=h.node,
        namespace=h.namespace,
        cluster_id=h.cluster_id,
        log_path=tmp_path / "binder.log",
    )


async def test_killed_while_runpod_applies_a_create_then_a_new_binder_adopts_it(
    pods_harness: Harness, control_plane: Any, tmp_path: Path
) -> None:
    h = pods_harness
    h.sandbox.admin.inject(
        {"route": "POST /v2/pods", "kind": "ambiguous_timeout", "count": 1, "delaySeconds": 45}
    )
    binder = _binder(h, control_plane, tmp_path)
    try:
        created = await h.create_pod("applied")
        uid = created["metadata"]["uid"]

        async def in_flight() -> bool:
            pod = await h.pod("applied")
            annotations = (pod or {}).get("metadata", {}).get("annotations", {})
            return (
                len(h.runpod_pods(uid)) == 1 and CREATE_ATTEMPT in annotations and POD_ID not in annotations
            )

        await wait_for(in_flight, within=60, what="the create applied but unanswered")
        binder.kill()
        h.sandbox.admin.clear_faults()  # RunPod is healthy again for the next binder
        binder = _binder(h, control_plane, tmp_path)
        await wait_for(lambda: _running(h, "applied"), within=60, what="Running under the new binder")
        pods = h.runpod_pods(uid)
        assert len(pods) == 1
        pod = await h.pod("applied")
        assert pod is not None and pod["metadata"]["annotations"][POD_ID] == pods[0]["id"]
        assert h.sandbox.admin.state()["creates"] == 1

        await h.delete_pod("applied")
        await wait_for(lambda: _gone(h, "applied"), within=30, what="deleted")
        assert h.runpod_pods(uid) == []
    finally:
        binder.stop()
        print((tmp_path / "binder.log").read_text(errors="replace")[-8000:])


async def test_killed_while_a_create_was_not_applied_then_a_new_binder_creates_exactly_one(
    pods_harness: Harness, control_plane: Any, tmp_path: Path
) -> None:
    h = pods_harness
    h.sandbox.admin.inject({"route": "POST /v2/pods", "kind": "timeout", "count": 1, "delaySeconds": 45})
    binder = _binder(h, control_plane, tmp_path)
    try:
        created = await h.create_pod("unapplied")
        uid = created["metadata"]["uid"]

        async def intent_recorded() -> bool:
            pod = await h.pod("unapplied")
            return CREATE_ATTEMPT in ((pod or {}).get("metadata", {}).get("annotations") or {})

        await wait_for(intent_recorded, within=60, what="intent recorded")
        binder.kill()
        h.sandbox.admin.clear_faults()  # RunPod is healthy again for the next binder
        assert h.runpod_pods(uid) == []
        binder = _binder(h, control_plane, tmp_path)
        # The new binder waits out RunPod's visibility window (30 s) before it creates again.
        await wait_for(lambda: _running(h, "unapplied"), within=90, what="Running under the new binder")
        assert len(h.runpod_pods(uid)) == 1
        assert h.sandbox.admin.state()["creates"] == 1
    finally:
        binder.stop()
        print((tmp_path / "binder.log").read_text(errors="replace")[-8000:])
