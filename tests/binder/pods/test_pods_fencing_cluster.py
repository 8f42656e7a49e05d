"""The leadership fence and the intent compare-and-swap against the real control plane and the
sandbox RunPod: a deposed controller spends nothing, and of two writers racing to record a create
attempt for one pod only one can (so only one POSTs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from pods_support import Harness, make_plan, phase, wait_for

from binder.pods.controller import PodController
from binder.pods.creating import CONFLICT_RETRY, ensure_created
from binder.pods.kubeapi import KubePods
from binder.pods.naming import runpod_pod_name
from binder.pods.state import Snapshot
from contract.annotations import CREATE_ATTEMPT, POD_ID
from kit.kube import Conflict


@contextlib.asynccontextmanager
async def _running(
    h: Harness, *, is_leading: Callable[[], bool], request_catalog_refresh: Callable[[], None] = lambda: None
) -> AsyncIterator[PodController]:
    controller = PodController(
        h.api,
        h.runpod,
        h.settings,
        h.cluster_id,
        visibility_window=timedelta(seconds=2),
        is_leading=is_leading,
        request_catalog_refresh=request_catalog_refresh,
    )
    task = asyncio.create_task(controller.run(), name="pod-controller")
    try:
        await asyncio.wait_for(controller.ready.wait(), timeout=30)
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_deposed_controller_creates_nothing_and_records_no_intent(pods_harness: Harness) -> None:
    h = pods_harness
    leading = [False]
    async with _running(h, is_leading=lambda: leading[0]):
        created = await h.create_pod("fenced")
        # Several ticks and worker passes: nothing may reach RunPod or the pod.
        await asyncio.sleep(3)
        pod = await h.pod("fenced")
        assert pod is not None
        assert CREATE_ATTEMPT not in pod["metadata"]["annotations"]
        assert h.sandbox.admin.state()["creates"] == 0
        assert h.runpod_pods() == []

    # The same pod under a leading controller is created, exactly once.
    leading[0] = True
    async with _running(h, is_leading=lambda: leading[0]):

        async def running() -> bool:
            return phase(await h.pod("fenced")) == "Running"

        await wait_for(running, what="the pod Running once leading")
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    assert h.sandbox.admin.state()["creates"] == 1


async def test_an_intent_write_on_a_stale_pod_version_is_refused_by_the_api_server(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    created = await h.create_pod("cas")
    kube = KubePods(h.api)
    meta = created["metadata"]
    await kube.patch_annotations(
        h.namespace,
        "cas",
        {CREATE_ATTEMPT: "first"},
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
    )
    with pytest.raises(Conflict):
        await kube.patch_annotations(
            h.namespace,
            "cas",
            {CREATE_ATTEMPT: "second"},
            uid=meta["uid"],
            resource_version=meta["resourceVersion"],
        )
    pod = await h.pod("cas")
    assert pod is not None and pod["metadata"]["annotations"][CREATE_ATTEMPT] == "first"


async def test_a_worker_that_lost_the_intent_race_sends_no_post_and_waits_for_the_winners_attempt(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    created = await h.create_pod("race")
    meta = created["metadata"]
    controller = PodController(
        h.api, h.runpod, h.settings, h.cluster_id, visibility_window=timedelta(seconds=30)
    )
    ctx = controller.ctx
    ctx.snapshot = Snapshot.build((), cluster_id=h.cluster_id, taken_at=ctx.clock())
    # Another replica records its attempt first (and may be POSTing it right now).
    winner = runpod_pod_name(cluster_id=h.cluster_id, uid=meta["uid"], attempt=0)
    await KubePods(h.api).patch_annotations(
        h.namespace,
        "race",
        {CREATE_ATTEMPT: winner},
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
    )

    # This worker decided on the pod as it was before: its compare-and-swap loses, no POST.
    assert await ensure_created(ctx, created) == CONFLICT_RETRY
    assert h.sandbox.admin.state()["creates"] == 0
    assert ctx.ledger.usage().gpus == 0

    # Looking again with the fresh pod, the winner's attempt is not listed yet: wait, never POST.
    fresh = await h.pod("race")
    assert fresh is not None
    ctx.snapshot = Snapshot.build((), cluster_id=h.cluster_id, taken_at=ctx.clock())
    delay = await ensure_created(ctx, fresh)
    assert delay is not None and delay > 20
    assert h.sandbox.admin.state()["creates"] == 0
    pod = await h.pod("race")
    assert pod is not None and pod["metadata"]["annotations"][CREATE_ATTEMPT] == winner


async def test_a_pod_no_candidate_has_capacity_for_requests_a_catalog_refresh(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.set_stock(gpu_id="NVIDIA A40", datacenter_id="EU-RO-1", cloud="SECURE", free=0)
    h.sandbox.admin.set_stock(gpu_id="NVIDIA RTX A4000", datacenter_id="EU-RO-1", cloud="SECURE", free=0)
    requested = asyncio.Event()
    plan = make_plan((("NVIDIA A40", "EU-RO-1", 0.44), ("NVIDIA RTX A4000", "EU-RO-1", 0.35)))
    async with _running(h, is_leading=lambda: True, request_catalog_refresh=requested.set):
        await h.create_pod("starved", plan=plan)
        await asyncio.wait_for(requested.wait(), timeout=30)
        pod = await h.pod("starved")
        assert pod is not None and POD_ID not in pod["metadata"]["annotations"]
    assert h.sandbox.admin.state()["creates"] == 0


async def test_a_create_that_finds_capacity_requests_no_catalog_refresh(pods_harness: Harness) -> None:
    h = pods_harness
    requested = asyncio.Event()
    async with _running(h, is_leading=lambda: True, request_catalog_refresh=requested.set):
        await h.create_pod("fed")

        async def running() -> bool:
            return phase(await h.pod("fed")) == "Running"

        await wait_for(running, what="the pod Running")
    assert not requested.is_set()
