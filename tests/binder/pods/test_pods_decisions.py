"""Pure create decisions: candidate walk, policy re-check, request body and attempt recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binder.pods.decisions import (
    Next,
    RecoveryKind,
    build_create_request,
    candidate_violation,
    classify_create_error,
    datacenters_for,
    next_attempt,
    recover_attempt,
)
from binder.pods.naming import owner_markers, runpod_pod_name
from contract.plan import Candidate, Plan, Port
from contract.policy import NodePolicy
from runpod_api.errors import (
    RunPodAuthError,
    RunPodBadRequest,
    RunPodForbidden,
    RunPodNotFound,
    RunPodPaymentRequired,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
    RunPodUnprocessable,
)
from runpod_api.models import Pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
UID = "0d4c1e52-aaaa-bbbb-cccc-000011112222"


def plan(**changes: object) -> Plan:
    base: dict[str, object] = {
        "candidates": (
            Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),
            Candidate(gpu="NVIDIA RTX A5000", usdPerHour=0.30),
        ),
        "gpu_count": 1,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1", "US-KS-2"),
        "ports": (Port(number=8888, protocol="http"), Port(number=22, protocol="tcp")),
        "container_disk_gb": 40,
        "max_gpu_price": 0.5,
        "catalog_revision": "abc",
    }
    base.update(changes)
    return Plan.model_validate(base)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RunPodBadRequest("There are no longer any instances available", is_capacity=True),
            Next.NEXT_CANDIDATE,
        ),
        (RunPodBadRequest("cuda rule"), Next.NEXT_CANDIDATE),
        (RunPodForbidden("account cannot access the requested pool"), Next.NEXT_CANDIDATE),
        (RunPodPaymentRequired("balance", status=402), Next.STOP_PAYMENT),
        (RunPodUnprocessable("bad", errors=["$: x"]), Next.FAIL),
        (RunPodNotFound("template", status=404), Next.FAIL),
        (RunPodRateLimited("slow down", retry_after=12), Next.WAIT),
        (RunPodServerError("oops", status=500), Next.AMBIGUOUS),
        (RunPodTimeout("timeout"), Next.AMBIGUOUS),
        (RunPodAuthError("bad key", status=401), Next.WAIT),
    ],
)
def test_each_create_answer_has_its_next_step(error: Exception, expected: Next) -> None:
    step = classify_create_error(error)  # type: ignore[arg-type]
    assert step.next is expected


def test_rate_limit_waits_the_retry_after() -> None:
    assert classify_create_error(RunPodRateLimited("x", retry_after=12)).delay == 12


def test_cloudflare_block_is_not_a_candidate_problem() -> None:
    step = classify_create_error(RunPodForbidden("error code: 1010", is_cloudflare=True))
    assert step.next is Next.WAIT


def test_policy_recheck_refuses_candidates_over_the_cap_or_outside_allowed_dcs() -> None:
    p = plan(max_gpu_price=0.4)
    policy = NodePolicy(max_gpu_price=0.5, allowed_datacenter_ids=("US-KS-2",))
    a40, a5000 = p.candidates
    assert "above the cap" in (candidate_violation(a40, p, policy) or "")
    assert candidate_violation(a5000, p, policy) is None
    pricey_ok = plan(candidates=(Candidate(gpu="X", dc="EU-RO-1", usdPerHour=0.1),))
    assert "not allowed" in (candidate_violation(pricey_ok.candidates[0], pricey_ok, policy) or "")


def test_price_cap_is_per_gpu() -> None:
    p = plan(gpu_count=2, candidates=(Candidate(gpu="NVIDIA A40", usdPerHour=0.88),))
    assert candidate_violation(p.candidates[0], p, NodePolicy(max_gpu_price=0.5)) is None
    assert candidate_violation(p.candidates[0], p, NodePolicy(max_gpu_price=0.43)) is not None


def test_datacenters_sent_follow_candidate_then_plan_within_policy() -> None:
    p = plan()
    a40, a5000 = p.candidates
    assert datacenters_for(a40, p, NodePolicy()) == ["EU-RO-1"]
    assert datacenters_for(a5000, p, NodePolicy()) == ["EU-RO-1", "US-KS-2"]
    assert datacenters_for(a5000, p, NodePolicy(allowed_datacenter_ids=("US-KS-2",))) == ["US-KS-2"]
    assert datacenters_for(a5000, plan(datacenter_ids=()), NodePolicy()) is None
    assert datacenters_for(a5000, plan(datacenter_ids=()), NodePolicy(allowed_datacenter_ids=("X",))) == ["X"]
    empty = NodePolicy(allowed_datacenter_ids=("AP-JP-1",))
    assert candidate_violation(a5000, p, empty) is not None


def test_request_sends_what_the_pod_asks_and_markers_cannot_be_overridden() -> None:
    p = plan(registry_auth_id="reg1", template_id="tpl1")
    markers = owner_markers(cluster_id="c1", namespace="ns", name="web", uid=UID, attempt=0)
    request = build_create_request(
        name="rpvk-x-0",
        plan=p,
        candidate=p.candidates[0],
        policy=NodePolicy(),
        image="nvidia/cuda:12.4.1-base-ubuntu22.04",
        args="python train.py",
        env={"A": "1", "RPVK_POD_UID": "forged"},
        markers=markers,
    )
    body = request.body()
    assert body["gpu"] == {"id": "NVIDIA A40", "count": 1}
    assert body["cloud"] == "SECURE"
    assert body["dataCenterIds"] == ["EU-RO-1"]
    assert body["disk"] == 40
    assert body["ports"] == ["8888/http", "22/tcp"]
    assert body["args"] == "python train.py"
    assert body["registry"] == "reg1"
    assert body["templateId"] == "tpl1"
    assert body["env"]["A"] == "1"
    assert body["env"]["RPVK_POD_UID"] == UID


def test_attempt_numbers_advance_from_the_recorded_name() -> None:
    assert next_attempt(None) == 0
    assert next_attempt(runpod_pod_name(cluster_id="c", uid=UID, attempt=4)) == 5


def _rp(pod_id: str, name: str, status: str = "RUNNING") -> Pod:
    return Pod.model_validate({"id": pod_id, "name": name, "status": status, "env": {"RPVK_POD_UID": UID}})


def test_recovery_adopts_the_recorded_attempt_and_names_the_rest_duplicates() -> None:
    recorded = runpod_pod_name(cluster_id="c", uid=UID, attempt=1)
    older = _rp("a", runpod_pod_name(cluster_id="c", uid=UID, attempt=0))
    mine = _rp("b", recorded)
    result = recover_attempt(
        matches=[older, mine],
        recorded_attempt=recorded,
        attempt_resolved=False,
        attempt_made_before=T0,
        snapshot_taken_at=T0,
    )
    assert result.kind is RecoveryKind.ADOPT
    assert result.adopt is not None and result.adopt.id == "b"
    assert [d.id for d in result.duplicates] == ["a"]


def test_recovery_waits_for_late_visibility_before_creating_again() -> None:
    recorded = runpod_pod_name(cluster_id="c", uid=UID, attempt=0)
    early = recover_attempt(
        matches=[],
        recorded_attempt=recorded,
        attempt_resolved=False,
        attempt_made_before=T0,
        snapshot_taken_at=T0 + timedelta(seconds=10),
    )
    assert early.kind is RecoveryKind.WAIT
    assert early.delay == pytest.approx(20)
    late = recover_attempt(
        matches=[],
        recorded_attempt=recorded,
        attempt_resolved=False,
        attempt_made_before=T0,
        snapshot_taken_at=T0 + timedelta(seconds=31),
    )
    assert late.kind is RecoveryKind.CREATE


def test_recovery_creates_at_once_without_an_attempt_or_after_a_definite_refusal() -> None:
    for recorded, resolved in ((None, False), ("rpvk-x-y-0", True)):
        result = recover_attempt(
            matches=[],
            recorded_attempt=recorded,
            attempt_resolved=resolved,
            attempt_made_before=T0,
            snapshot_taken_at=T0,
        )
        assert result.kind is RecoveryKind.CREATE


def test_terminated_leftovers_are_not_adopted() -> None:
    result = recover_attempt(
        matches=[_rp("a", "rpvk-x-y-0", status="TERMINATED")],
        recorded_attempt=None,
        attempt_resolved=False,
        attempt_made_before=T0,
        snapshot_taken_at=T0,
    )
    assert result.kind is RecoveryKind.CREATE
