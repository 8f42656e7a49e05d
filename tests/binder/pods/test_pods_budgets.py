"""Budgets: GPU budget and spend ceiling, with reservations that close the check-then-create race."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from binder.pods.budgets import SpendLedger, Usage, budget_violation
from binder.pods.naming import owner_markers
from runpod_api.models import Pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _rp(uid: str, *, cluster: str = "c1", gpus: int = 1, cost: float = 0.44, status: str = "RUNNING") -> Pod:
    env = owner_markers(cluster_id=cluster, namespace="ns", name=f"p-{uid}", uid=uid, attempt=0)
    return Pod.model_validate(
        {"id": f"id-{uid}", "status": status, "env": env, "gpu": {"id": "A40", "count": gpus}, "cost": cost}
    )


def test_gpu_budget_counts_the_new_pod() -> None:
    assert (
        budget_violation(usage=Usage(gpus=3), gpus=1, usd_per_hour=1, gpu_budget=4, max_spend_per_hour=None)
        is None
    )
    reason = budget_violation(
        usage=Usage(gpus=3), gpus=2, usd_per_hour=1, gpu_budget=4, max_spend_per_hour=None
    )
    assert reason is not None and "GPU budget" in reason


def test_spend_ceiling_includes_the_candidate_price() -> None:
    usage = Usage(gpus=1, usd_per_hour=1.5)
    assert (
        budget_violation(usage=usage, gpus=1, usd_per_hour=0.5, gpu_budget=8, max_spend_per_hour=2.0) is None
    )
    reason = budget_violation(usage=usage, gpus=1, usd_per_hour=0.51, gpu_budget=8, max_spend_per_hour=2.0)
    assert reason is not None and "spend ceiling" in reason


def test_ledger_counts_only_this_clusters_live_pods() -> None:
    ledger = SpendLedger(cluster_id="c1")
    ledger.rebuild(
        [
            _rp("a", gpus=2, cost=0.88),
            _rp("b", cluster="other", gpus=4, cost=9.0),
            _rp("c", status="EXITED", cost=0.0),
            Pod.model_validate(
                {"id": "foreign", "status": "RUNNING", "gpu": {"id": "A40", "count": 8}, "cost": 3}
            ),
        ],
        taken_at=T0,
    )
    assert ledger.usage() == Usage(gpus=2, usd_per_hour=0.88)


def test_reservations_count_until_a_later_list_shows_the_pod() -> None:
    ledger = SpendLedger(cluster_id="c1")
    ledger.reserve("a", Usage(gpus=1, usd_per_hour=0.44), at=T0)
    assert ledger.usage().gpus == 1
    ledger.rebuild([], taken_at=T0 + timedelta(seconds=1))
    assert ledger.usage().gpus == 1  # not listed yet: still reserved
    ledger.rebuild([_rp("a")], taken_at=T0 + timedelta(seconds=2))
    assert ledger.usage() == Usage(gpus=1, usd_per_hour=0.44)  # counted once
    ledger.release("a")
    assert ledger.usage() == Usage()


def test_a_pods_own_share_is_left_out_of_its_check() -> None:
    ledger = SpendLedger(cluster_id="c1")
    ledger.reserve("a", Usage(gpus=1, usd_per_hour=0.44), at=T0)
    assert ledger.usage(excluding="a") == Usage()
