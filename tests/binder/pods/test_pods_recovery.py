"""Restarts, force deletes, provider-side deletions and foreign pods: nothing leaks, nothing doubles."""

from __future__ import annotations

import asyncio

from pods_support import Harness, make_plan, phase, wait_for

from binder.pods.naming import owner_markers
from contract.annotations import POD_ID
from kit.kube import delete_json


async def _running(h: Harness, name: str) -> bool:
    return phase(await h.pod(name)) == "Running"


async def _gone(h: Harness, name: str) -> bool:
    return await h.pod(name) is None


async def test_a_restarted_controller_recovers_running_pods_without_redeploying(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("steady")
    await wait_for(lambda: _running(h, "steady"), what="Running")
    await h.stop()
    await h.start()
    await asyncio.sleep(2.0)  # several sync ticks of the new controller
    assert h.sandbox.admin.state()["creates"] == 1
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    assert phase(await h.pod("steady")) == "Running"


async def test_a_pod_deleted_while_the_controller_was_down_is_terminated_at_startup(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("leaving")
    await wait_for(lambda: _running(h, "leaving"), what="Running")
    await h.stop()
    await h.delete_pod("leaving")  # graceful: stays Terminating, nobody acts on it
    await asyncio.sleep(0.5)
    pod = await h.pod("leaving")
    assert pod is not None and pod["metadata"].get("deletionTimestamp")
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    await h.start()
    await wait_for(lambda: _gone(h, "leaving"), what="Terminating pod finished after restart")
    assert h.runpod_pods(created["metadata"]["uid"]) == []


async def test_a_force_deleted_pod_is_swept_and_foreign_pods_are_never_touched(pods_harness: Harness) -> None:
    h = pods_harness
    foreign = h.sandbox.admin.seed_pod(
        {"name": "someone-elses-notebook", "gpu": {"id": "NVIDIA A40", "count": 1}}
    )
    other_cluster = h.sandbox.admin.seed_pod(
        {
            "name": "rpvk-other-cluster-0",
            "gpu": {"id": "NVIDIA A40", "count": 1},
            "env": owner_markers(
                cluster_id="another-cluster", namespace="x", name="y", uid="u-gone", attempt=0
            ),
        }
    )
    await h.start()
    created = await h.create_pod("forced")
    await wait_for(lambda: _running(h, "forced"), what="Running")
    await h.stop()  # a force delete while the binder is down: no graceful path at all
    await delete_json(
        h.api,
        f"/api/v1/namespaces/{h.namespace}/pods/forced",
        body={"gracePeriodSeconds": 0, "propagationPolicy": "Background"},
    )
    await wait_for(lambda: _gone(h, "forced"), what="force delete")
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    await h.start()

    async def swept() -> bool:
        return h.runpod_pods(created["metadata"]["uid"]) == []

    await wait_for(swept, within=30, what="orphan swept after the grace period")
    alive = {p["id"] for p in h.sandbox.admin.state()["pods"] if p["status"] != "TERMINATED"}
    assert foreign["id"] in alive
    assert other_cluster["id"] in alive


async def test_a_runpod_pod_deleted_outside_kubernetes_fails_the_pod(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("vanishing")
    await wait_for(lambda: _running(h, "vanishing"), what="Running")
    [runpod] = h.runpod_pods(created["metadata"]["uid"])
    await h.runpod.delete_pod(runpod["id"])

    async def failed() -> bool:
        return phase(await h.pod("vanishing")) == "Failed"

    await wait_for(failed, what="Failed after provider-side deletion")
    pod = await h.pod("vanishing")
    assert pod is not None and pod["status"]["reason"] == "ProviderDeleted"
    assert "ProviderDeleted" in await h.reasons("vanishing")


async def test_a_forged_pod_id_never_lets_the_binder_touch_someone_elses_pod(pods_harness: Harness) -> None:
    h = pods_harness
    victim = h.sandbox.admin.seed_pod({"name": "precious", "gpu": {"id": "NVIDIA A40", "count": 1}})
    await h.start()
    await h.create_pod("forger", extra_annotations={POD_ID: victim["id"]})

    async def failed() -> bool:
        return phase(await h.pod("forger")) == "Failed"

    await wait_for(failed, what="forged pod Failed")
    await h.delete_pod("forger")
    await wait_for(lambda: _gone(h, "forger"), what="forged pod deleted")
    alive = {p["id"] for p in h.sandbox.admin.state()["pods"] if p["status"] != "TERMINATED"}
    assert victim["id"] in alive
    assert h.sandbox.admin.state()["creates"] == 0


async def test_a_duplicate_runpod_pod_of_the_same_uid_is_terminated(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("twin", plan=make_plan())
    await wait_for(lambda: _running(h, "twin"), what="Running")
    uid = created["metadata"]["uid"]
    # A late-surfacing earlier attempt: same cluster and UID marker, another id.
    late = h.sandbox.admin.seed_pod(
        {
            "name": "rpvk-late-attempt",
            "gpu": {"id": "NVIDIA A40", "count": 1},
            "env": owner_markers(
                cluster_id=h.cluster_id, namespace=h.namespace, name="twin", uid=uid, attempt=7
            ),
        }
    )

    async def one_left() -> bool:
        return [p["id"] for p in h.runpod_pods(uid)] != [] and late["id"] not in {
            p["id"] for p in h.runpod_pods(uid)
        }

    await wait_for(one_left, what="duplicate terminated")
    pod = await h.pod("twin")
    assert pod is not None
    assert [p["id"] for p in h.runpod_pods(uid)] == [pod["metadata"]["annotations"][POD_ID]]
