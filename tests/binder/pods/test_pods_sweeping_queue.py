"""Orphan sweep decisions and the per-pod work queue's one-writer guarantee."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from binder.pods.naming import owner_markers
from binder.pods.queue import WorkQueue
from binder.pods.sweeping import find_orphans
from runpod_api.models import Pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=120)


def _rp(pod_id: str, uid: str, *, cluster: str = "c1", status: str = "RUNNING") -> Pod:
    env = owner_markers(cluster_id=cluster, namespace="ns", name="p", uid=uid, attempt=0)
    return Pod.model_validate({"id": pod_id, "status": status, "env": env})


def test_orphans_are_terminated_only_after_the_grace_period() -> None:
    pods = [_rp("orphan", "gone-uid")]
    due, seen = find_orphans(pods, cluster_id="c1", live_uids=set(), first_seen={}, now=T0, grace=GRACE)
    assert due == [] and seen == {"orphan": T0}
    due, seen = find_orphans(
        pods, cluster_id="c1", live_uids=set(), first_seen=seen, now=T0 + timedelta(seconds=60), grace=GRACE
    )
    assert due == []
    due, seen = find_orphans(
        pods, cluster_id="c1", live_uids=set(), first_seen=seen, now=T0 + GRACE, grace=GRACE
    )
    assert [p.id for p in due] == ["orphan"] and seen == {}


def test_foreign_other_cluster_and_owned_pods_are_never_orphans() -> None:
    pods = [
        Pod.model_validate({"id": "console", "status": "RUNNING", "env": {"FOO": "bar"}}),
        _rp("other", "gone", cluster="c2"),
        _rp("live", "live-uid"),
        _rp("dead", "gone", status="TERMINATED"),
    ]
    due, seen = find_orphans(
        pods, cluster_id="c1", live_uids={"live-uid"}, first_seen={}, now=T0 + GRACE * 10, grace=timedelta(0)
    )
    assert due == [] and seen == {}


def test_an_orphan_whose_pod_reappears_is_forgotten() -> None:
    pods = [_rp("x", "uid-x")]
    _, seen = find_orphans(pods, cluster_id="c1", live_uids=set(), first_seen={}, now=T0, grace=GRACE)
    due, seen = find_orphans(
        pods, cluster_id="c1", live_uids={"uid-x"}, first_seen=seen, now=T0 + GRACE, grace=GRACE
    )
    assert due == [] and seen == {}


async def test_a_key_being_processed_is_never_handed_to_a_second_worker() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    key = await queue.get()
    queue.add("ns/a")  # event while a worker holds it
    queue.add("ns/a")
    assert len(queue) == 0
    queue.done(key)
    assert len(queue) == 1  # coalesced into one re-run after done
    assert await queue.get() == "ns/a"
    queue.done("ns/a")
    assert len(queue) == 0
    queue.close()


async def test_add_after_keeps_the_earliest_schedule_and_backoff_doubles() -> None:
    queue = WorkQueue()
    queue.add_after("k", 5.0)
    queue.add_after("k", 0.01)
    await asyncio.wait_for(queue.get(), timeout=1.0)
    queue.done("k")
    assert [queue.backoff("k") for _ in range(3)] == [1.0, 2.0, 4.0]
    queue.forget("k")
    assert queue.backoff("k") == 1.0
    queue.close()
