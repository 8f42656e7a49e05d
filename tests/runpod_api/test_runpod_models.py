"""RunPod's answers are read leniently; our create requests are written exactly (notes §2.1, §9.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest
from runpod_fakes import pod_json

from runpod_api import CreateGpuConfig, CreatePodRequest, Pod


def test_a_full_pod_answer_is_read_with_snake_case_fields() -> None:
    pod = Pod.model_validate(pod_json())
    assert pod.id == "xedezhzb9la3ye"
    assert pod.status == "RUNNING"
    assert pod.gpu is not None and (pod.gpu.id, pod.gpu.count) == ("NVIDIA A40", 1)
    assert pod.data_center_id == "EU-RO-1"
    assert pod.cost == pytest.approx(0.44)
    assert pod.runtime is not None and pod.runtime.uptime == 312
    assert [(p.private, p.public, p.type) for p in pod.runtime.ports] == [
        (22, 34446, "tcp"),
        (80, None, "http"),
    ]
    assert pod.public_ip == "195.26.233.3"
    assert pod.created_at == datetime(2026, 11, 20, 9, 14, 2, tzinfo=UTC)


def test_unknown_fields_and_statuses_are_kept_or_ignored_never_fatal() -> None:
    pod = Pod.model_validate(pod_json(status="MIGRATING", brandNewField={"x": 1}, tags=["a"]))
    assert pod.status == "MIGRATING"
    assert not pod.is_known_status


@pytest.mark.parametrize("runtime", [None, {}, "garbage"])
def test_runtime_null_or_empty_reads_as_not_running(runtime: object) -> None:
    pod = Pod.model_validate(pod_json(status="PROVISIONING", runtime=runtime))
    assert pod.runtime is None


def test_a_sparse_pod_reads_with_harmless_defaults() -> None:
    pod = Pod.model_validate(
        {
            "id": "abc",
            "status": None,
            "ssh": {"proxy": None, "direct": None},
            "cost": None,
            "env": {"A": 1, "B": None, "C": "x"},
            "startedAt": None,
            "createdAt": "not a time",
            "runtime": {"uptime": 3, "ports": [{"private": 22, "public": None}, {"bogus": True}]},
        }
    )
    assert (pod.name, pod.status, pod.cost, pod.gpu, pod.started_at, pod.created_at) == (
        "",
        "UNKNOWN",
        0.0,
        None,
        None,
        None,
    )
    assert pod.env == {"A": "1", "C": "x"}
    assert pod.runtime is not None and [p.private for p in pod.runtime.ports] == [22]
    assert pod.public_ip is None


def test_env_values_do_not_show_in_the_pods_repr() -> None:
    pod = Pod.model_validate(pod_json(env={"HF_TOKEN": "hf_secretsecret"}))
    assert "hf_secretsecret" not in repr(pod)


def test_a_create_body_always_carries_gpu_count_and_omits_unset_fields() -> None:
    request = CreatePodRequest(
        name="rpvk-c1a2-7f3a9b21-0",
        image="busybox",
        gpu=CreateGpuConfig(id="NVIDIA GeForce RTX 4090"),
        cloud="SECURE",
        data_center_ids=["EU-RO-1"],
        disk=50,
        ports=["22/tcp", "8888/http"],
        env={"RPVK_OWNER": "c1a2/ns1/web"},
        args="sh -c 'echo hi'",
    )
    assert request.body() == {
        "name": "rpvk-c1a2-7f3a9b21-0",
        "image": "busybox",
        "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1},
        "cloud": "SECURE",
        "dataCenterIds": ["EU-RO-1"],
        "disk": 50,
        "ports": ["22/tcp", "8888/http"],
        "env": {"RPVK_OWNER": "c1a2/ns1/web"},
        "args": "sh -c 'echo hi'",
    }


def test_a_template_create_uses_runpods_field_names() -> None:
    body = CreatePodRequest(
        name="x", template_id="tpl1", gpu=CreateGpuConfig(id="NVIDIA A40", count=2)
    ).body()
    assert body == {"name": "x", "templateId": "tpl1", "gpu": {"id": "NVIDIA A40", "count": 2}}


def test_a_create_request_refuses_fields_runpod_would_reject() -> None:
    with pytest.raises(pydantic.ValidationError):
        CreatePodRequest.model_validate({"name": "x", "gpuCount": 1})
    with pytest.raises(pydantic.ValidationError):
        CreateGpuConfig(id="NVIDIA A40", count=0)


def test_a_cpu_pod_reads_its_flavour_vcpus_and_memory_and_no_gpu() -> None:
    pod = Pod.model_validate(
        {
            "id": "p1",
            "status": "RUNNING",
            "cpu": {"id": "cpu3c", "vcpuCount": 4, "memory": 8},
            "cudaVersion": None,
        }
    )
    assert pod.gpu is None and pod.cpu is not None
    assert (pod.cpu.id, pod.cpu.vcpu_count, pod.cpu.memory) == ("cpu3c", 4, 8)
    lenient = Pod.model_validate({"id": "p2", "cpu": {"id": "cpu5c", "vcpuCount": "four", "memory": None}})
    assert lenient.cpu is not None and (lenient.cpu.vcpu_count, lenient.cpu.memory) == (0, None)
    assert Pod.model_validate({"id": "p3", "cpu": "garbage"}).cpu is None


def test_a_cpu_create_body_carries_cpu_and_no_gpu() -> None:
    from runpod_api import CreateCpuConfig

    body = CreatePodRequest(name="x", image="busybox", cpu=CreateCpuConfig(id="cpu3c", vcpu_count=2)).body()
    assert body == {"name": "x", "image": "busybox", "cpu": {"id": "cpu3c", "vcpuCount": 2}}
    with pytest.raises(pydantic.ValidationError):
        CreateCpuConfig(id="cpu3c", vcpu_count=1)


def test_a_gpu_create_body_carries_the_cuda_requirement_under_gpu() -> None:
    body = CreatePodRequest(name="x", gpu=CreateGpuConfig(id="NVIDIA A40", min_cuda_version="12.4")).body()
    assert body["gpu"] == {"id": "NVIDIA A40", "count": 1, "minCudaVersion": "12.4"}
