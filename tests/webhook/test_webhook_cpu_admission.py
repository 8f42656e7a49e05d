"""Admission of CPU pods and CUDA floors over whole AdmissionReviews: the plan mutate writes,
what validate accepts and refuses, without HTTP or a cluster."""

from __future__ import annotations

from typing import Any

from webhook_samples import apply_patch, gpu_pod, review_bytes, sample_catalog

from contract.plan import plan_from_annotations
from contract.policy import NodePolicy
from webhook.admission import mutate, validate
from webhook.reviews import Verdict, parse_review

CATALOG = sample_catalog()
POLICY = NodePolicy(
    allowed_datacenter_ids=("EU-RO-1", "US-KS-2", "EU-SE-1"),
    max_gpu_price=3.0,
    max_vcpu_price=0.05,
    max_candidates=3,
)


def cpu_pod(
    resources: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    pod = gpu_pod(gpus=None, annotations=annotations)
    if resources is not None:
        pod["spec"]["containers"][0]["resources"] = resources
    return pod


def _mutate(pod: dict[str, Any], policy: NodePolicy = POLICY) -> Verdict:
    return mutate(parse_review(review_bytes(pod)), catalog=CATALOG, policy=policy, jobs=None)


def _planned(pod: dict[str, Any], policy: NodePolicy = POLICY) -> dict[str, Any]:
    verdict = _mutate(pod, policy)
    assert verdict.allowed, verdict.message
    return apply_patch(pod, list(verdict.patch))


def _validate(pod: dict[str, Any], policy: NodePolicy = POLICY) -> Verdict:
    return validate(parse_review(review_bytes(pod)), policy=policy)


def test_a_pod_without_a_gpu_limit_is_planned_on_cpu_flavours_and_gets_no_gpu() -> None:
    pod = cpu_pod({"requests": {"cpu": "2", "memory": "4Gi"}})
    verdict = _mutate(pod)
    planned = apply_patch(pod, list(verdict.patch))
    plan = plan_from_annotations(planned["metadata"]["annotations"])

    assert plan.compute_type == "CPU" and plan.gpu_count == 0 and plan.cloud == "SECURE"
    assert [(c.cpu_type_id, c.vcpu_count, c.datacenter_id) for c in plan.candidates] == [
        ("cpu3c", 2, "EU-RO-1"),
        ("cpu5c", 2, "EU-SE-1"),
        ("cpu3g", 2, "US-KS-2"),
    ]
    assert plan.max_vcpu_price == 0.05 and plan.max_gpu_price is None
    assert planned["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}
    # The old "no GPU limit: using 1 GPU" warning is gone, and nothing else needs saying here.
    assert verdict.warnings == ()
    assert _validate(planned) == Verdict(allowed=True)


def test_the_data_center_allow_list_and_the_vcpu_cap_of_the_node_apply() -> None:
    planned = _planned(cpu_pod({"requests": {"cpu": "2"}}))
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert all(c.datacenter_id in POLICY.allowed_datacenter_ids for c in plan.candidates)  # no US-TX-3
    assert all(c.cpu_type_id != "cpu3m" for c in plan.candidates)  # $0.06/vCPU > the $0.05 cap


def test_a_pods_own_vcpu_cap_and_flavour_pins_narrow_the_plan() -> None:
    annotations = {"runpod.io/max-vcpu-price": "0.04", "runpod.io/cpu-types": "cpu3g,cpu5c"}
    plan = plan_from_annotations(_planned(cpu_pod(annotations=annotations))["metadata"]["annotations"])
    assert [c.cpu_type_id for c in plan.candidates] == ["cpu5c", "cpu3g", "cpu3g"]
    assert plan.max_vcpu_price == 0.04


def test_a_cpu_request_that_is_no_vcpu_count_runpod_sells_is_rounded_up_with_a_warning() -> None:
    verdict = _mutate(cpu_pod({"limits": {"cpu": "3", "memory": "2Gi"}}))
    plan = plan_from_annotations(
        apply_patch(cpu_pod({"limits": {"cpu": "3"}}), list(verdict.patch))["metadata"]["annotations"]
    )
    assert plan.candidates[0].vcpu_count == 4
    assert verdict.warnings == ("cpu 3: planned 4 vCPUs (cpu3c x4 vCPU); RunPod sells 2, 4, 8, ... vCPUs",)
    assert all(len(w) <= 120 for w in verdict.warnings)
    assert _mutate(cpu_pod()).warnings == (
        "no cpu: planned 2 vCPUs (cpu3c x2 vCPU); RunPod sells 2, 4, 8, ... vCPUs",
    )


def test_a_node_whose_default_compute_type_is_gpu_gives_a_pod_without_a_limit_one_gpu() -> None:
    policy = POLICY.model_copy(update={"default_compute_type": "GPU"})
    pod = cpu_pod({"requests": {"cpu": "2"}})
    verdict = _mutate(pod, policy)
    planned = apply_patch(pod, list(verdict.patch))
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert (plan.compute_type, plan.gpu_count) == ("GPU", 1)
    assert planned["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert verdict.warnings == ()
    assert _validate(planned, policy) == Verdict(allowed=True)
    # The annotation still asks for a CPU pod there.
    cpu = plan_from_annotations(
        _planned(cpu_pod(annotations={"runpod.io/compute-type": "CPU"}), policy)["metadata"]["annotations"]
    )
    assert cpu.compute_type == "CPU"


def test_a_gpu_annotation_on_a_cpu_pod_is_refused_at_admission() -> None:
    verdict = _mutate(cpu_pod(annotations={"runpod.io/min-cuda-version": "12.4"}))
    assert (verdict.allowed, verdict.code) == (False, 422)
    assert 'runpod.io/min-cuda-version="12.4" on the pod: applies to GPU pods only' in (verdict.message or "")


def test_a_cpu_pod_nothing_fits_is_refused_naming_the_nearest_miss() -> None:
    verdict = _mutate(cpu_pod({"limits": {"cpu": "2"}}, annotations={"runpod.io/datacenter-ids": "EU-SE-1"}))
    assert verdict.allowed  # cpu5c is in EU-SE-1
    tight = NodePolicy(allowed_datacenter_ids=("US-KS-2",), max_vcpu_price=0.035)
    refused = _mutate(cpu_pod({"limits": {"cpu": "2"}}), tight)
    assert not refused.allowed
    assert "no CPU flavour fits: cheapest fitting cpu 2 in stock in US-KS-2 is cpu3g x2 vCPU" in (
        refused.message or ""
    )


def test_validate_refuses_a_cpu_plan_on_a_pod_that_gained_a_gpu_limit() -> None:
    planned = _planned(cpu_pod({"requests": {"cpu": "2"}}))
    planned["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    verdict = _validate(planned)
    assert not verdict.allowed
    assert "a CPU plan, but the pod has nvidia.com/gpu limits" in (verdict.message or "")


def test_validate_refuses_a_cpu_plan_above_the_nodes_vcpu_cap() -> None:
    planned = _planned(cpu_pod())
    annotations = planned["metadata"]["annotations"]
    annotations["plan.runpod.io/max-vcpu-price"] = "0.5"
    annotations["plan.runpod.io/candidates"] = '[{"cpu":"cpu3m","vcpus":2,"dc":"US-KS-2","usdPerHour":0.12}]'
    message = _validate(planned).message or ""
    assert "max-vcpu-price 0.5 above the node cap 0.05" in message
    assert "candidate cpu3m x2 vCPU costs above the node cap per vCPU" in message


def test_asking_for_a_gpu_by_annotation_keeps_the_old_behaviour_of_one_gpu() -> None:
    planned = _planned(cpu_pod(annotations={"runpod.io/compute-type": "GPU"}))
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert (plan.compute_type, plan.gpu_count, plan.candidates[0].gpu_type_id) == ("GPU", 1, "NVIDIA L4")
    assert _validate(planned) == Verdict(allowed=True)


def test_a_cuda_floor_is_planned_only_where_machines_satisfy_it_and_travels_in_the_plan() -> None:
    pod = gpu_pod(annotations={"runpod.io/min-cuda-version": "12.8"})
    planned = _planned(pod)
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert planned["metadata"]["annotations"]["plan.runpod.io/version"] == "2"
    assert plan.min_cuda_version == "12.8" and plan.cuda_versions == ()
    assert [(c.gpu_type_id, c.datacenter_id) for c in plan.candidates] == [
        ("NVIDIA A40", "US-KS-2"),
        ("NVIDIA RTX A6000", "EU-SE-1"),
        ("NVIDIA GeForce RTX 4090", "EU-RO-1"),
    ]
    assert _validate(planned) == Verdict(allowed=True)


def test_an_exact_cuda_set_travels_in_the_plan() -> None:
    plan = plan_from_annotations(
        _planned(gpu_pod(annotations={"runpod.io/cuda-versions": "12.4"}))["metadata"]["annotations"]
    )
    assert plan.cuda_versions == ("12.4",) and plan.min_cuda_version is None
    assert [(c.gpu_type_id, c.datacenter_id) for c in plan.candidates] == [
        ("NVIDIA L4", "US-KS-2"),
        ("NVIDIA A40", "EU-SE-1"),
    ]


def test_a_cuda_floor_no_machine_meets_is_refused_naming_the_floor_and_the_versions() -> None:
    verdict = _mutate(gpu_pod(annotations={"runpod.io/min-cuda-version": "13.1"}))
    assert (verdict.allowed, verdict.code) == (False, 422)
    message = verdict.message or ""
    assert (
        'runpod.io/min-cuda-version="13.1" on the pod: no GPU type in the catalog runs CUDA >= 13.1'
        in message
    )
    assert "12.4, 12.8, 13.0" in message


def test_a_cuda_floor_met_only_outside_the_allowed_data_centers_says_where() -> None:
    # H100 on 13.0 is in US-KS-2 only; the node allows EU-RO-1 alone.
    policy = NodePolicy(allowed_datacenter_ids=("EU-RO-1",), max_gpu_price=3.0)
    verdict = _mutate(gpu_pod(annotations={"runpod.io/min-cuda-version": "13.0"}), policy)
    assert not verdict.allowed
    message = verdict.message or ""
    assert "no GPU type with >= 16 GB on CUDA >= 13.0 is in stock in EU-RO-1" in message
    assert "in stock in US-KS-2" in message
