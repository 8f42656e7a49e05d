"""The plan survives the trip through annotations, and a broken plan says which key is wrong."""

from __future__ import annotations

import pytest

from contract.plan import (
    PLAN_CANDIDATES,
    PLAN_CLOUD,
    PLAN_GPU_COUNT,
    PLAN_PORTS,
    PLAN_VERSION,
    Candidate,
    Plan,
    PlanError,
    parse_port,
    plan_from_annotations,
    plan_to_annotations,
)


def _plan(**overrides: object) -> Plan:
    fields: dict[str, object] = {
        "candidates": (
            Candidate(gpu_type_id="NVIDIA A40", datacenter_id="EU-RO-1", usd_per_hour=0.88, stock="HIGH"),
            Candidate(gpu_type_id="NVIDIA L40", datacenter_id=None, usd_per_hour=1.64),
        ),
        "gpu_count": 2,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1", "US-KS-2"),
        "ports": (parse_port("8888/http"), parse_port("22/tcp")),
        "container_disk_gb": 50,
        "max_gpu_price": 0.9,
        "registry_auth_id": "reg-1",
        "template_id": None,
        "catalog_revision": "3f2a9c1b7d00",
    }
    fields.update(overrides)
    return Plan.model_validate(fields)


def test_a_plan_round_trips_through_its_annotations() -> None:
    plan = _plan()
    assert plan_from_annotations(plan_to_annotations(plan)) == plan


def test_plan_annotations_are_readable_by_a_person() -> None:
    annotations = plan_to_annotations(_plan())
    assert annotations[PLAN_CLOUD] == "SECURE"
    assert annotations[PLAN_GPU_COUNT] == "2"
    assert annotations[PLAN_PORTS] == "8888/http,22/tcp"
    assert '"gpu":"NVIDIA A40"' in annotations[PLAN_CANDIDATES]
    assert "plan.runpod.io/template-id" not in annotations  # unset optional keys are omitted


def test_a_pod_without_a_plan_is_named_as_such() -> None:
    with pytest.raises(PlanError, match="no plan"):
        plan_from_annotations({})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (PLAN_VERSION, "9", "not supported"),
        (PLAN_CANDIDATES, "not json", "not JSON"),
        (PLAN_CANDIDATES, "[]", "non-empty"),
        (PLAN_CLOUD, "ALL", "allowed: SECURE, COMMUNITY"),
        (PLAN_GPU_COUNT, "two", "not an integer"),
        (PLAN_GPU_COUNT, "0", "gpu_count"),
        (PLAN_PORTS, "80/udp", "PORT/http or PORT/tcp"),
    ],
)
def test_a_malformed_plan_names_the_offending_key(key: str, value: str, message: str) -> None:
    annotations = plan_to_annotations(_plan())
    annotations[key] = value
    with pytest.raises(PlanError, match=message):
        plan_from_annotations(annotations)


@pytest.mark.parametrize("text", ["80", "80/udp", "http/80", "0/tcp", "70000/tcp", "-1/tcp", "8o/http"])
def test_ports_outside_port_slash_protocol_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"PORT/http or PORT/tcp|1\.\.65535"):
        parse_port(text)


def test_the_drop_list_round_trips_and_is_omitted_when_empty() -> None:
    from contract.plan import PLAN_DROP_CONTAINERS, plan_drop_containers

    plan = _plan(drop_containers=("istio-proxy", "setup"))
    annotations = plan_to_annotations(plan)
    assert annotations[PLAN_DROP_CONTAINERS] == "istio-proxy,setup"
    assert plan_from_annotations(annotations) == plan
    assert plan_drop_containers(annotations) == ("istio-proxy", "setup")
    assert PLAN_DROP_CONTAINERS not in plan_to_annotations(_plan())
    assert plan_drop_containers({}) == ()


def _cpu_plan(**overrides: object) -> Plan:
    fields: dict[str, object] = {
        "compute_type": "CPU",
        "candidates": (
            Candidate(
                cpu_type_id="cpu3c", vcpu_count=4, datacenter_id="EU-RO-1", usd_per_hour=0.12, stock="HIGH"
            ),
            Candidate(cpu_type_id="cpu3m", vcpu_count=2, datacenter_id="US-KS-2", usd_per_hour=0.12),
        ),
        "gpu_count": 0,
        "cloud": "SECURE",
        "container_disk_gb": 20,
        "max_vcpu_price": 0.1,
        "catalog_revision": "3f2a9c1b7d00",
    }
    fields.update(overrides)
    return Plan.model_validate(fields)


def test_a_cpu_plan_round_trips_as_version_2_without_gpu_keys() -> None:
    plan = _cpu_plan()
    annotations = plan_to_annotations(plan)
    assert annotations[PLAN_VERSION] == "2"
    assert annotations["plan.runpod.io/compute-type"] == "CPU"
    assert PLAN_GPU_COUNT not in annotations and "plan.runpod.io/max-gpu-price" not in annotations
    assert annotations["plan.runpod.io/max-vcpu-price"] == "0.1"
    assert plan_from_annotations(annotations) == plan
    assert plan.unit_price(plan.candidates[0]) == pytest.approx(0.03)
    assert plan.candidates[0].label == "cpu3c x4 vCPU"


def test_a_gpu_plan_with_a_cuda_requirement_round_trips_as_version_2() -> None:
    floor = _plan(min_cuda_version="12.4")
    assert plan_to_annotations(floor)[PLAN_VERSION] == "2"
    assert plan_from_annotations(plan_to_annotations(floor)) == floor
    exact = _plan(cuda_versions=("12.4", "12.8"))
    assert plan_to_annotations(exact)["plan.runpod.io/cuda-versions"] == "12.4,12.8"
    assert plan_from_annotations(plan_to_annotations(exact)) == exact
    assert plan_to_annotations(_plan())[PLAN_VERSION] == "1"  # no requirement: what it always was


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("plan.runpod.io/min-cuda-version", "12.4", "not part of a plan.runpod.io/version='1' plan"),
        ("plan.runpod.io/compute-type", "GPU", "not part of a plan.runpod.io/version='1' plan"),
    ],
)
def test_a_version_1_plan_carrying_a_version_2_key_is_refused_not_half_read(
    key: str, value: str, message: str
) -> None:
    annotations = plan_to_annotations(_plan())
    annotations[key] = value
    with pytest.raises(PlanError, match=message):
        plan_from_annotations(annotations)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan.runpod.io/compute-type": None}, "compute-type missing"),
        ({"plan.runpod.io/compute-type": "TPU"}, "allowed: GPU, CPU"),
        ({"plan.runpod.io/max-vcpu-price": None}, "max-vcpu-price missing"),
        ({"plan.runpod.io/cloud": "COMMUNITY"}, "SECURE cloud only"),
        ({"plan.runpod.io/gpu-count": "1"}, "gpu-count: not part of a CPU plan"),
        ({"plan.runpod.io/candidates": '[{"gpu":"NVIDIA A40","usdPerHour":0.4}]'}, "CPU one"),
        ({"plan.runpod.io/candidates": '[{"cpu":"cpu3c","usdPerHour":0.4}]'}, "vcpus"),
        ({"plan.runpod.io/candidates": '[{"cpu":"cpu3c","vcpus":3,"usdPerHour":0.4}]'}, "power of two"),
        (
            {"plan.runpod.io/candidates": '[{"cpu":"cpu3c","gpu":"A40","vcpus":2,"usdPerHour":0.4}]'},
            "exactly one",
        ),
        ({"plan.runpod.io/min-cuda-version": "12.4"}, "min-cuda-version: not part of a CPU plan"),
    ],
)
def test_a_malformed_cpu_plan_says_what_is_wrong(change: dict[str, str | None], message: str) -> None:
    annotations = plan_to_annotations(_cpu_plan())
    for key, value in change.items():
        if value is None:
            annotations.pop(key)
        else:
            annotations[key] = value
    with pytest.raises(PlanError, match=message):
        plan_from_annotations(annotations)


def test_a_cuda_floor_and_an_exact_set_exclude_each_other() -> None:
    annotations = plan_to_annotations(_plan(min_cuda_version="12.4"))
    annotations["plan.runpod.io/cuda-versions"] = "12.8"
    with pytest.raises(PlanError, match="mutually exclusive"):
        plan_from_annotations(annotations)
