"""Leader election against the real apiserver: racing candidates, release, takeover (in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from binder.election import LeaderElector, LeadershipLost
from kit.kube import get_json

pytestmark = pytest.mark.cluster


def _elector(api: Any, namespace: str, identity: str, *, lease: float = 15.0) -> LeaderElector:
    return LeaderElector(
        api=api, namespace=namespace, name="binder-leader", identity=identity,
        lease_duration=lease, renew_deadline=lease * 2 / 3, retry_period=0.2,
    )  # fmt: skip


async def test_racing_candidates_end_with_exactly_one_leader(kube_api: Any, namespace: str) -> None:
    candidates = [_elector(kube_api, namespace, f"candidate-{i}") for i in range(5)]
    for _ in range(3):  # first round creates (one wins), later rounds update with resourceVersion
        await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    leaders = [c.identity for c in candidates if c.is_leader]
    assert len(leaders) == 1
    lease = await get_json(
        kube_api, f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/binder-leader"
    )
    assert lease["spec"]["holderIdentity"] == leaders[0]
    assert lease["spec"]["leaseTransitions"] == 0


async def test_a_released_lease_is_taken_at_once_and_counts_a_transition(
    kube_api: Any, namespace: str
) -> None:
    first, second = _elector(kube_api, namespace, "first"), _elector(kube_api, namespace, "second")
    assert await first.try_acquire_or_renew()
    assert not await second.try_acquire_or_renew()  # a live lease is respected
    await first.release()
    assert not first.is_leader
    assert await second.try_acquire_or_renew()  # no waiting out the 15 s lease
    lease = await get_json(
        kube_api, f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/binder-leader"
    )
    assert lease["spec"]["holderIdentity"] == "second"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_a_leader_that_missed_its_renewals_is_replaced_and_stops_leading(
    kube_api: Any, namespace: str
) -> None:
    old = _elector(kube_api, namespace, "old", lease=1.5)
    new = _elector(kube_api, namespace, "new", lease=1.5)
    assert await old.try_acquire_or_renew()
    assert old.leading()
    # `new` sees the record, then it stays unchanged for a lease duration: it takes over.
    assert not await new.try_acquire_or_renew()
    await asyncio.sleep(1.6)
    assert await new.try_acquire_or_renew()
    assert not old.leading()  # its renew deadline (1 s) passed without a renewal
    assert not await old.try_acquire_or_renew()  # no way back: the lease is live and not ours
    assert old.holder == "new"
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(old.hold(), timeout=10)
