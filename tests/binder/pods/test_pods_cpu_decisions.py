"""CPU plans and CUDA requirements in the binder's pure decisions: the create body buys a CPU
pod (no `gpu`) or passes the CUDA floor on, the policy re-check before spending counts per vCPU,
the vCPU budget counts what RunPod CPU pods hold, and the state annotations mirror the flavour."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binder.pods.budgets import SpendLedger, Usage, budget_violation
from binder.pods.decisions import build_create_request, candidate_violation, describe_purchase, price_cap
from binder.pods.naming import owner_markers
from binder.pods.status import state_annotations
from contract.plan import Candidate, Plan
from contract.policy import NodePolicy
from runpod_api.models import Pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MARKERS = owner_markers(cluster_id="c1", namespace="ns", name="web", uid="u1", attempt=0)


def cpu_plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "compute_type": "CPU",
        "candidates": (
            Candidate(cpu_type_id="cpu3c", vcpu_count=4, datacenter_id="EU-RO-1", usd_per_hour=0.12),
            Candidate(cpu_type_id="cpu3m", vcpu_count=2, datacenter_id="US-KS-2", usd_per_hour=0.12),
        ),
        "gpu_count": 0,
        "cloud": "SECURE",
        "container_disk_gb": 20,
        "max_vcpu_price": 0.05,
        "catalog_revision": "r",
    }
    fields.update(changes)
    return Plan.model_validate(fields)


def gpu_plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "candidates": (Candidate(gpu_type_id="NVIDIA A40", datacenter_id="EU-RO-1", usd_per_hour=0.44),),
        "gpu_count": 1,
        "cloud": "SECURE",
        "container_disk_gb": 20,
        "max_gpu_price": 0.5,
        "catalog_revision": "r",
    }
    fields.update(changes)
    return Plan.model_validate(fields)


def body(plan: Plan, candidate: Candidate | None = None) -> dict[str, object]:
    return build_create_request(
        name="rpvk-c1-u1-0",
        plan=plan,
        candidate=candidate or plan.candidates[0],
        policy=NodePolicy(),
        image="python:3.12-slim",
        args="",
        env={},
        markers=MARKERS,
        global_networking=False,
    ).body()


def test_a_cpu_candidate_creates_a_cpu_pod_and_buys_no_gpu() -> None:
    created = body(cpu_plan())
    assert created["cpu"] == {"id": "cpu3c", "vcpuCount": 4}
    assert "gpu" not in created and "globalNetworking" not in created
    assert created["cloud"] == "SECURE" and created["dataCenterIds"] == ["EU-RO-1"]


def test_a_cuda_floor_or_set_is_passed_to_runpod_in_the_gpu_object() -> None:
    assert body(gpu_plan(min_cuda_version="12.4"))["gpu"] == {
        "id": "NVIDIA A40",
        "count": 1,
        "minCudaVersion": "12.4",
    }
    assert body(gpu_plan(cuda_versions=("12.4", "12.8")))["gpu"] == {
        "id": "NVIDIA A40",
        "count": 1,
        "allowedCudaVersions": ["12.4", "12.8"],
    }
    assert body(gpu_plan())["gpu"] == {"id": "NVIDIA A40", "count": 1}


def test_the_policy_recheck_counts_a_cpu_candidate_per_vcpu_against_the_vcpu_caps() -> None:
    plan = cpu_plan()
    cheap, dear = plan.candidates[0], Candidate(cpu_type_id="cpu3m", vcpu_count=2, usd_per_hour=0.12)
    assert price_cap(plan, NodePolicy(max_vcpu_price=0.1)) == 0.05  # the plan's own, lower
    assert price_cap(plan, NodePolicy(max_vcpu_price=0.04)) == 0.04  # the node's, lowered since
    assert candidate_violation(cheap, plan, NodePolicy(max_vcpu_price=0.1)) is None  # $0.03/vCPU
    assert candidate_violation(dear, plan, NodePolicy(max_vcpu_price=0.1)) == (
        "cpu3m x2 vCPU costs $0.06/vCPU-hour, above the cap $0.05"
    )
    assert candidate_violation(cheap, plan, NodePolicy(allowed_datacenter_ids=("US-KS-2",))) == (
        "data center EU-RO-1 is not allowed on this node"
    )
    # The GPU cap says nothing about a CPU pod.
    assert candidate_violation(cheap, plan, NodePolicy(max_gpu_price=0.01)) is None


def test_purchases_read_well_in_events() -> None:
    assert describe_purchase(cpu_plan(), cpu_plan().candidates[0]) == "cpu3c x4 vCPU"
    assert describe_purchase(gpu_plan(gpu_count=2), gpu_plan().candidates[0]) == "NVIDIA A40 x2"


def test_the_vcpu_budget_counts_the_new_cpu_pod_and_a_gpu_pod_never_hits_it() -> None:
    assert (
        budget_violation(
            usage=Usage(vcpus=60),
            gpus=0,
            vcpus=4,
            usd_per_hour=0.1,
            gpu_budget=4,
            max_spend_per_hour=None,
            cpu_budget=64,
        )
        is None
    )
    reason = budget_violation(
        usage=Usage(vcpus=62),
        gpus=0,
        vcpus=4,
        usd_per_hour=0.1,
        gpu_budget=4,
        max_spend_per_hour=None,
        cpu_budget=64,
    )
    assert reason == "CPU budget: 62 of 64 vCPUs in use, this pod needs 4"
    # A full GPU budget does not hold back a CPU pod, nor a full CPU budget a GPU pod.
    assert (
        budget_violation(
            usage=Usage(gpus=4),
            gpus=0,
            vcpus=2,
            usd_per_hour=0.1,
            gpu_budget=4,
            max_spend_per_hour=None,
            cpu_budget=8,
        )
        is None
    )
    assert (
        budget_violation(
            usage=Usage(vcpus=8),
            gpus=1,
            vcpus=0,
            usd_per_hour=0.4,
            gpu_budget=4,
            max_spend_per_hour=None,
            cpu_budget=8,
        )
        is None
    )


@pytest.mark.parametrize("cost", [0.12, 0.5])
def test_the_spend_ceiling_counts_cpu_pods_too(cost: float) -> None:
    reason = budget_violation(
        usage=Usage(usd_per_hour=1.8),
        gpus=0,
        vcpus=2,
        usd_per_hour=cost,
        gpu_budget=4,
        max_spend_per_hour=2.0,
    )
    assert (reason is None) is (cost < 0.2)


def _cpu_rp(uid: str, *, vcpus: int = 4, status: str = "RUNNING") -> Pod:
    env = owner_markers(cluster_id="c1", namespace="ns", name=f"p-{uid}", uid=uid, attempt=0)
    return Pod.model_validate(
        {
            "id": f"id-{uid}",
            "status": status,
            "env": env,
            "cpu": {"id": "cpu3c", "vcpuCount": vcpus, "memory": vcpus * 2},
            "cost": 0.03 * vcpus,
        }
    )


def test_the_ledger_counts_the_vcpus_of_live_cpu_pods_from_runpods_list() -> None:
    ledger = SpendLedger(cluster_id="c1")
    ledger.rebuild([_cpu_rp("a", vcpus=4), _cpu_rp("b", vcpus=8), _cpu_rp("c", status="EXITED")], taken_at=T0)
    usage = ledger.usage()
    assert (usage.gpus, usage.vcpus, usage.usd_per_hour) == (0, 12, pytest.approx(0.36))
    ledger.reserve("d", Usage(vcpus=2, usd_per_hour=0.06), at=T0)
    assert ledger.usage().vcpus == 14
    assert ledger.usage(excluding="a").vcpus == 10


def test_a_cpu_pods_state_annotations_name_its_flavour_and_vcpus_and_no_gpu() -> None:
    pod = _cpu_rp("a", vcpus=4).model_copy(update={"data_center_id": "EU-RO-1"})
    annotations = state_annotations(pod, ())
    assert annotations["runpod.io/cpu-type"] == "cpu3c"
    assert annotations["runpod.io/vcpu-count"] == "4"
    assert annotations["runpod.io/datacenter-id"] == "EU-RO-1"
    assert annotations["runpod.io/cost-per-hour"] == "0.12"
    assert "runpod.io/gpu-type" not in annotations
