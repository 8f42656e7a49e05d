"""What a pod buys (GPUs or a RunPod CPU pod), its CUDA and vCPU annotations, and its cpu and
memory need: validated with messages that name the annotation, the value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.compute import CpuNeed, count_gpus, decide_compute, read_cpu_need
from webhook.inputs import read_inputs
from webhook.problems import Denial


def _inputs(annotations: dict[str, str], **kwargs: Any) -> Any:
    return read_inputs(annotations, node_max_gpu_price=2.0, node_max_vcpu_price=0.1, **kwargs)


def _denied(annotations: dict[str, str]) -> str:
    with pytest.raises(Denial) as caught:
        _inputs(annotations)
    return caught.value.message


def _spec(resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if resources is not None:
        container["resources"] = resources
    return {"containers": [container]}


def _compute(annotations: dict[str, str], resources: dict[str, Any] | None = None) -> str:
    return decide_compute(_inputs(annotations), count_gpus(_spec(resources)))


def _refusal(annotations: dict[str, str], resources: dict[str, Any] | None = None) -> str:
    with pytest.raises(Denial) as caught:
        _compute(annotations, resources)
    return caught.value.message


GPU_LIMIT = {"limits": {"nvidia.com/gpu": "1"}}


def test_the_new_annotations_are_read_when_valid() -> None:
    inputs = _inputs(
        {
            "runpod.io/compute-type": "CPU",
            "runpod.io/cpu-types": "cpu3c, cpu5c",
            "runpod.io/max-vcpu-price": "0.05",
        }
    )
    assert (inputs.compute_type, inputs.cpu_types, inputs.max_vcpu_price) == ("CPU", ("cpu3c", "cpu5c"), 0.05)
    assert _inputs({"runpod.io/min-cuda-version": "12.4"}).min_cuda_version == "12.4"
    assert _inputs({"runpod.io/cuda-versions": "12.4,12.6"}).cuda_versions == ("12.4", "12.6")


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (
            {"runpod.io/min-cuda-version": "12"},
            'runpod.io/min-cuda-version="12" on the pod: not a CUDA version; allowed: a CUDA version as '
            "major.minor, e.g. 12.4 (a bare major such as 12 names no version)",
        ),
        (
            {"runpod.io/min-cuda-version": "v12.4"},
            'runpod.io/min-cuda-version="v12.4" on the pod: not a CUDA version',
        ),
        (
            {"runpod.io/cuda-versions": "12.4,twelve"},
            'runpod.io/cuda-versions="12.4,twelve" on the pod: not a CUDA version: "twelve"; allowed: a '
            "comma-separated list of CUDA versions",
        ),
        ({"runpod.io/cuda-versions": " , "}, 'runpod.io/cuda-versions=" , " on the pod: empty list'),
        (
            {"runpod.io/min-cuda-version": "12.4", "runpod.io/cuda-versions": "12.6"},
            'runpod.io/cuda-versions="12.6" on the pod: runpod.io/min-cuda-version is set too: a floor and an '
            "exact set exclude each other; allowed: one of runpod.io/min-cuda-version (a floor) or "
            "runpod.io/cuda-versions (an exact set)",
        ),
        (
            {"runpod.io/compute-type": "cpu"},
            'runpod.io/compute-type="cpu" on the pod: unknown compute type; did you mean CPU?; allowed: GPU (a '
            "RunPod GPU pod) or CPU (a RunPod CPU pod, no GPU); default: GPU with a nvidia.com/gpu limit, else CPU",
        ),
        (
            {"runpod.io/max-vcpu-price": "0.2"},
            'runpod.io/max-vcpu-price="0.2" on the pod: above the node cap $0.1/vCPU-hour; allowed: USD per '
            "vCPU-hour, > 0 and <= the node cap 0.1",
        ),
        ({"runpod.io/max-vcpu-price": "-1"}, "must be a positive number"),
        ({"runpod.io/cpu-types": ","}, 'runpod.io/cpu-types="," on the pod: empty list'),
    ],
)
def test_bad_values_are_refused_naming_the_annotation_the_value_and_what_is_allowed(
    annotations: dict[str, str], expected: str
) -> None:
    assert expected in _denied(annotations)


def test_a_vcpu_price_above_the_node_cap_is_forbidden_not_invalid() -> None:
    with pytest.raises(Denial) as caught:
        _inputs({"runpod.io/max-vcpu-price": "0.2"})
    assert caught.value.code == 403


def test_a_job_level_cuda_floor_is_reported_as_the_jobs() -> None:
    with pytest.raises(Denial) as caught:
        read_inputs(
            {},
            job_annotations={"runpod.io/min-cuda-version": "12"},
            job_name="train",
            node_max_gpu_price=2.0,
        )
    assert 'runpod.io/min-cuda-version="12" on Job train' in caught.value.message


def test_a_pod_without_a_gpu_limit_is_a_cpu_pod_and_with_one_a_gpu_pod() -> None:
    assert _compute({}) == "CPU"
    assert _compute({}, {"limits": {"cpu": "2"}}) == "CPU"
    assert _compute({}, GPU_LIMIT) == "GPU"


def test_the_compute_type_annotation_asks_for_a_gpu_without_a_limit_or_confirms_cpu() -> None:
    assert _compute({"runpod.io/compute-type": "GPU"}) == "GPU"
    assert _compute({"runpod.io/compute-type": "CPU"}) == "CPU"
    assert _compute({"runpod.io/compute-type": "GPU"}, GPU_LIMIT) == "GPU"


def test_compute_type_cpu_with_gpu_limits_is_a_contradiction() -> None:
    message = _refusal({"runpod.io/compute-type": "CPU"}, {"limits": {"nvidia.com/gpu": "2"}})
    assert (
        'runpod.io/compute-type="CPU" on the pod: the pod has nvidia.com/gpu limits (2 in total); allowed: GPU, '
        "or remove the nvidia.com/gpu limits to run on a RunPod CPU pod"
    ) in message


@pytest.mark.parametrize(
    "key",
    [
        "runpod.io/min-cuda-version",
        "runpod.io/cuda-versions",
        "runpod.io/gpu-types",
        "runpod.io/required-gpu-memory",
        "runpod.io/max-gpu-price",
    ],
)
def test_gpu_only_annotations_on_a_cpu_pod_are_refused_with_how_to_get_a_gpu(key: str) -> None:
    value = {
        "runpod.io/min-cuda-version": "12.4",
        "runpod.io/cuda-versions": "12.4",
        "runpod.io/gpu-types": "NVIDIA A40",
        "runpod.io/required-gpu-memory": "24",
        "runpod.io/max-gpu-price": "0.5",
    }[key]
    message = _refusal({key: value})
    assert (
        f'{key}="{value}" on the pod: applies to GPU pods only; this pod runs on a RunPod CPU pod' in message
    )
    assert "(the pod has no nvidia.com/gpu limit)" in message
    assert "allowed: set limits nvidia.com/gpu (or runpod.io/compute-type: GPU) to run on a GPU" in message


def test_cpu_only_annotations_on_a_gpu_pod_are_refused() -> None:
    message = _refusal({"runpod.io/max-vcpu-price": "0.05", "runpod.io/cpu-types": "cpu3c"}, GPU_LIMIT)
    assert (
        'runpod.io/cpu-types="cpu3c" on the pod: applies to CPU pods only; this pod runs on a RunPod GPU pod'
        in message
    )
    assert 'runpod.io/max-vcpu-price="0.05"' in message
    assert "drop the nvidia.com/gpu limits to run on a RunPod CPU pod" in message


def test_a_cpu_pod_in_the_community_cloud_is_refused() -> None:
    message = _refusal({"runpod.io/cloud-type": "COMMUNITY"})
    assert (
        'runpod.io/cloud-type="COMMUNITY" on the pod: RunPod CPU pods run in the SECURE cloud only' in message
    )
    assert _compute({"runpod.io/cloud-type": "SECURE"}) == "CPU"


@pytest.mark.parametrize(
    ("resources", "need"),
    [
        (None, CpuNeed(cores=0, memory_gb=0)),
        ({"requests": {"cpu": "2"}}, CpuNeed(cores=2, memory_gb=0)),
        ({"requests": {"cpu": "500m", "memory": "512Mi"}}, CpuNeed(cores=0.5, memory_gb=0.5)),
        (
            {"requests": {"cpu": "1"}, "limits": {"cpu": "3", "memory": "16Gi"}},
            CpuNeed(cores=3, memory_gb=16),
        ),
        ({"limits": {"memory": "8G"}}, CpuNeed(cores=0, memory_gb=8e9 / 2**30)),
    ],
)
def test_the_cpu_need_is_the_running_containers_limit_else_request(
    resources: dict[str, Any] | None, need: CpuNeed
) -> None:
    assert read_cpu_need(_spec(resources), 0) == need


def test_the_cpu_need_is_read_from_the_container_that_runs() -> None:
    spec = {
        "containers": [
            {"name": "proxy", "resources": {"limits": {"cpu": "8"}}},
            {"name": "main", "resources": {"limits": {"cpu": "2"}}},
        ]
    }
    assert read_cpu_need(spec, 1).cores == 2
    assert read_cpu_need(spec, None) == CpuNeed(cores=0, memory_gb=0)
