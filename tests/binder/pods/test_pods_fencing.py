"""The leadership fence and the capacity-refresh decision, without I/O.

A deposed binder replica must write nothing: `PodContext.fence` raises `NotLeading`, and the
orphan sweeper sends no DELETE (checked with an httpx MockTransport standing in for RunPod).
The cluster tests in `test_pods_fencing_cluster.py` drive the same fence through the real
controller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from binder.pods.context import NotLeading, PodContext, write_fence
from binder.pods.creating import wants_catalog_refresh
from binder.pods.metrics import PodMetrics
from binder.pods.naming import owner_markers
from binder.pods.sweeping import Sweeper
from runpod_api.client import RunPodClient
from runpod_api.models import Pod
from sandbox.testing import running_sandbox

CLUSTER = "cl-fence"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_walk_where_every_tried_candidate_had_no_capacity_asks_for_a_catalog_refresh() -> None:
    assert wants_catalog_refresh(["NoCapacity"])
    assert wants_catalog_refresh(["NoCapacity", "NoCapacity", "NoCapacity"])


def test_a_walk_with_any_other_refusal_or_no_try_at_all_does_not_refresh_the_catalog() -> None:
    assert not wants_catalog_refresh([])  # skipped by policy or budget: nothing was tried
    assert not wants_catalog_refresh(["NoCapacity", "PoolForbidden"])
    assert not wants_catalog_refresh(["CreateRefused"])
    assert not wants_catalog_refresh(["RateLimited"])


def _context(leading: list[bool]) -> PodContext:
    # Only the fence is exercised: it runs before any client is touched.
    return PodContext(
        runpod=None,  # type: ignore[arg-type]
        kube=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        settings=None,  # type: ignore[arg-type]
        policy=None,  # type: ignore[arg-type]
        cluster_id=CLUSTER,
        started_at=NOW,
        is_leading=lambda: leading[0],
    )


def test_the_fence_passes_while_leading_and_raises_once_leadership_is_lost() -> None:
    leading = [True]
    ctx = _context(leading)
    ctx.fence()
    leading[0] = False
    with pytest.raises(NotLeading):
        ctx.fence()


async def test_a_deposed_replica_writes_no_annotation_and_records_no_intent() -> None:
    ctx = _context([False])
    pod = {"metadata": {"namespace": "ns", "name": "p", "uid": "u1", "resourceVersion": "7"}}
    with pytest.raises(NotLeading):
        await ctx.record_intent(pod, "rpvk-x-u1-0")
    with pytest.raises(NotLeading):
        await ctx.annotate(pod, {"runpod.io/last-failure": "x"})
    # Nothing remembered as written: a later sync must not re-send an intent that never landed.
    assert "runpod.io/create-attempt" not in ctx.known_for("u1").annotations


def _orphan(pod_id: str) -> Pod:
    env = owner_markers(cluster_id=CLUSTER, namespace="ns", name=pod_id, uid=f"uid-{pod_id}", attempt=0)
    return Pod(id=pod_id, name=pod_id, status="RUNNING", env=env)


async def _sweep(*, leading: bool) -> tuple[list[str], list[str]]:
    deletes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deletes.append(request.url.path.rsplit("/", 1)[-1])
            return httpx.Response(204)
        return httpx.Response(404, json={"error": "not found"})

    async def no_owner(namespace: str, name: str) -> str | None:
        return None

    async with RunPodClient(
        api_key="k", base_url="http://runpod.test", transport=httpx.MockTransport(handler)
    ) as runpod:
        sweeper = Sweeper(
            runpod=runpod,
            owner_uid=no_owner,
            cluster_id=CLUSTER,
            grace=timedelta(0),
            metrics=PodMetrics(CollectorRegistry()),
            is_leading=lambda: leading,
        )
        done = await sweeper.sweep([_orphan("a"), _orphan("b")], live_uids=set(), now=NOW)
    return done, deletes


async def test_the_leader_sweeps_orphans() -> None:
    done, deletes = await _sweep(leading=True)
    assert sorted(done) == ["a", "b"]
    assert sorted(deletes) == ["a", "b"]


async def test_a_deposed_replica_terminates_no_orphan() -> None:
    done, deletes = await _sweep(leading=False)
    assert done == []
    assert deletes == []


async def test_the_runpod_client_sends_no_write_once_the_fence_refuses_but_still_reads() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"pods": []})
        return httpx.Response(204)

    leading = [True]
    async with RunPodClient(
        api_key="k",
        base_url="http://runpod.test",
        transport=httpx.MockTransport(handler),
        before_write=write_fence(lambda: leading[0]),
    ) as runpod:
        assert await runpod.delete_pod("p1")
        leading[0] = False
        # Refused on the wire: even a request already inside the client (pacing, retries).
        with pytest.raises(NotLeading):
            await runpod.delete_pod("p2")
        assert await runpod.list_pods() == []
    assert sent == ["DELETE", "GET"]


async def test_a_write_whose_leadership_lapses_while_its_connection_opens_is_never_sent() -> None:
    # The second check runs once the connection is up, right before the first byte: a replica
    # frozen while a create waited for a connection must not send it on waking.
    checks: list[str] = []

    def lapses_after_first_check() -> None:
        checks.append("check")
        if len(checks) > 1:
            raise NotLeading("lapsed")

    with running_sandbox(api_key="k", seed=1) as sb:
        async with RunPodClient(
            api_key="k", base_url=sb.base_url, before_write=lapses_after_first_check
        ) as runpod:
            with pytest.raises(NotLeading):
                await runpod.delete_pod("nope")
        assert sb.admin.state()["deletes"] == 0
        assert sb.admin.state()["requests"].get("DELETE /v2/pods/{id}", 0) == 0
    assert checks[:2] == ["check", "check"]
