"""CPU flavours and CPU pods, CUDA versions per data center, and every query parameter checked
as RunPod's OpenAPI document declares it; each answer checked against that document (`api`)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sandbox_helpers import POD_BODY, wait_status

from sandbox.testing import RunningSandbox

CPU_BODY: dict[str, Any] = {
    "name": "rpvk-c1a2-cpu-0",
    "image": "python:3.12-slim",
    "cpu": {"id": "cpu3c", "vcpuCount": 4},
    "cloud": "SECURE",
    "dataCenterIds": ["EU-RO-1"],
    "disk": 20,
    "ports": ["8080/http"],
    "env": {"RPVK_OWNER": "c1a2/ns1/cpu"},
}
AVAILABILITY = {"include": "AVAILABILITY", "product": "POD"}


# -- the CPU catalog ---------------------------------------------------------------------------


def test_the_cpu_catalog_lists_flavours_and_with_availability_their_data_centers(api: httpx.Client) -> None:
    plain = api.get("/v2/catalog/cpus").json()["cpus"]
    assert {"cpu3c", "cpu3g", "cpu3m", "cpu5c", "cpu5g", "cpu5m"} <= {c["id"] for c in plain}
    assert all("availability" not in c for c in plain)
    rich = {c["id"]: c for c in api.get("/v2/catalog/cpus", params=AVAILABILITY).json()["cpus"]}
    cpu3c = rich["cpu3c"]
    assert (cpu3c["vcpu"], cpu3c["ramGbPerVcpu"], cpu3c["price"]["securePerVcpu"]) == (
        {"min": 2, "max": 32},
        2.0,
        0.03,
    )
    assert cpu3c["availability"] == "HIGH"
    assert {dc["id"] for dc in cpu3c["dataCenters"]} == {
        "EU-RO-1",
        "US-TX-3",
        "EU-SE-1",
        "US-KS-2",
        "CA-MTL-1",
    }
    one = api.get("/v2/catalog/cpus/cpu5m", params=AVAILABILITY).json()
    assert one["id"] == "cpu5m" and one["availability"] in ("LOW", "MEDIUM", "HIGH")
    assert api.get("/v2/catalog/cpus/cpu9z").status_code == 404


def test_cpu_availability_is_for_pods_of_the_vcpu_count_asked(
    api: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.set_cpu_stock(cpu_id="cpu3m", datacenter_id="US-KS-2", free=8)
    sandbox.admin.set_cpu_stock(cpu_id="cpu3m", datacenter_id="EU-RO-1", free=0)
    sandbox.admin.set_cpu_stock(cpu_id="cpu3m", datacenter_id="US-TX-3", free=0)

    def bands(**extra: str) -> dict[str, str]:
        one = api.get("/v2/catalog/cpus/cpu3m", params={**AVAILABILITY, **extra}).json()
        return {dc["id"]: dc["availability"] for dc in one.get("dataCenters", [])}

    assert bands()["US-KS-2"] == "MEDIUM"  # room for 4 pods of 2 vCPUs
    assert bands(vcpuCount="8")["US-KS-2"] == "LOW"  # room for 1
    assert bands(vcpuCount="16") == {}  # no room for one 16-vCPU pod anywhere: omitted
    assert (
        api.get("/v2/catalog/cpus/cpu3m", params={**AVAILABILITY, "vcpuCount": "16"}).json()["availability"]
        == "NONE"
    )


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"include": "AVAILABILITY"}, 400),  # product required with include
        ({"product": "POD"}, 400),  # product only with include
        ({"vcpuCount": "4"}, 400),  # vcpuCount only with include
        ({**AVAILABILITY, "vcpuCount": "6"}, 400),  # not a power of two
        ({**AVAILABILITY, "vcpuCount": "1"}, 422),  # below the minimum
        ({**AVAILABILITY, "vcpuCount": "four"}, 422),
        ({"include": "AVAILABILITY", "product": "CLUSTER"}, 422),  # no CLUSTER context for CPUs
        ({"include": "AVAILABILITY,AVAILABILITY", "product": "POD"}, 422),  # maxItems 1
    ],
)
def test_cpu_catalog_parameters_follow_the_document(
    api: httpx.Client, params: dict[str, str], status: int
) -> None:
    assert api.get("/v2/catalog/cpus", params=params).status_code == status


def test_data_centers_report_cpu_availability_when_asked(api: httpx.Client) -> None:
    dcs = {
        d["id"]: d
        for d in api.get("/v2/catalog/datacenters", params={"include": "CPU_AVAILABILITY"}).json()[
            "dataCenters"
        ]
    }
    assert {c["id"] for c in dcs["EU-RO-1"]["cpuAvailability"]} == {
        "cpu3c",
        "cpu3g",
        "cpu3m",
        "cpu5c",
        "cpu5g",
        "cpu5m",
    }
    assert "gpuAvailability" not in dcs["EU-RO-1"]
    assert "cpuAvailability" not in dcs["AP-JP-1"]  # offers no CPU flavour


# -- CPU pods --------------------------------------------------------------------------------


def test_a_cpu_pod_is_created_runs_bills_per_vcpu_and_holds_its_vcpus(
    api: httpx.Client, sandbox: RunningSandbox
) -> None:
    created = api.post("/v2/pods", json=CPU_BODY)
    assert created.status_code == 201
    pod = created.json()
    assert pod["cpu"] == {"id": "cpu3c", "vcpuCount": 4, "memory": 8}
    assert "gpu" not in pod and pod["cudaVersion"] is None
    assert (pod["cost"], pod["dataCenterId"], pod["cloud"]) == (0.12, "EU-RO-1", "SECURE")
    running = wait_status(api, pod["id"], "RUNNING")
    assert running["runtime"]["gpus"] == [] and running["runtime"]["cpu"]["util"] >= 0
    state = sandbox.admin.state()
    (listed,) = state["pods"]
    assert listed["createBody"] == CPU_BODY  # the sandbox shows what the create sent
    before = api.get("/v2/catalog/cpus/cpu3c", params={**AVAILABILITY, "vcpuCount": "32"}).json()
    stopped = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "stop"}).json()
    assert (stopped["status"], stopped["cost"]) == ("EXITED", 0.0)
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"}).status_code == 200
    assert wait_status(api, pod["id"], "RUNNING")["cost"] == 0.12
    assert api.delete(f"/v2/pods/{pod['id']}").status_code == 204
    assert sandbox.admin.state()["spendUsd"] > 0
    after = api.get("/v2/catalog/cpus/cpu3c", params={**AVAILABILITY, "vcpuCount": "32"}).json()
    assert before["dataCenters"] == after["dataCenters"]  # the vCPUs came back


def test_a_cpu_pod_sees_its_vcpu_count_and_no_gpu(api: httpx.Client, sandbox: RunningSandbox) -> None:
    body = {**CPU_BODY, "args": "sh -c 'echo cpus=$RUNPOD_CPU_COUNT gpus=$RUNPOD_GPU_COUNT; sleep infinity'"}
    pod = api.post("/v2/pods", json=body).json()
    wait_status(api, pod["id"], "RUNNING")
    with api.stream(
        "GET", f"/v2/pods/{pod['id']}/logs", params={"source": "container", "tail": "10"}
    ) as stream:
        for line in stream.iter_lines():
            if "cpus=" in line:
                assert "cpus=4 gpus=0" in line
                break


def test_a_cpu_pod_without_room_in_its_data_center_is_the_live_400(
    api: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.set_cpu_stock(cpu_id="cpu3c", datacenter_id="EU-RO-1", free=2)
    refused = api.post("/v2/pods", json=CPU_BODY)
    assert refused.status_code == 400 and refused.json()["detail"].startswith(
        "There are no longer any instances"
    )
    anywhere = api.post("/v2/pods", json={**CPU_BODY, "dataCenterIds": []}).json()
    assert anywhere["dataCenterId"] == "US-TX-3"  # the most free vCPUs


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"cpu": {"id": "cpu3c", "vcpuCount": 6}}, 400, "cpu.vcpuCount 6 is not a power of two"),
        (
            {"cpu": {"id": "cpu3c", "vcpuCount": 64}},
            400,
            "not offered for cpu3c (a power of two from 2 to 32)",
        ),
        ({"cpu": {"id": "cpu9z", "vcpuCount": 2}}, 400, "unknown CPU flavor 'cpu9z'"),
        ({"cloud": "COMMUNITY"}, 400, "CPU pods are offered in the SECURE cloud only"),
        ({"globalNetworking": True}, 400, "global networking requires an NVIDIA GPU"),
        ({"mounts": {"persistent": {"size": 10, "path": "/workspace"}}}, 400, "not supported on CPU pods"),
        ({"gpu": {"id": "NVIDIA A40", "count": 1}}, 400, "exactly one of gpu or cpu"),
        ({"cpu": {"id": "cpu3c", "vcpuCount": 1}}, 422, "Request validation failed."),
        ({"cpu": {"id": "cpu3c"}}, 422, "Request validation failed."),
        ({"cpu": {"id": "cpu3c", "vcpuCount": 2, "memory": 4}}, 422, "Request validation failed."),
    ],
)
def test_cpu_create_rules_answer_like_runpod(
    api: httpx.Client, change: dict[str, Any], status: int, detail: str
) -> None:
    answer = api.post("/v2/pods", json={**CPU_BODY, **change})
    assert answer.status_code == status
    assert detail in answer.json()["detail"]


def test_a_misplaced_memory_key_is_named_by_its_json_path(api: httpx.Client) -> None:
    answer = api.post("/v2/pods", json={**CPU_BODY, "cpu": {"id": "cpu3c", "vcpuCount": 2, "memory": 4}})
    assert answer.json()["errors"] == ["$.cpu: additional properties 'memory' not allowed"]


# -- CUDA versions per data center -------------------------------------------------------------


def test_a_gpu_pod_with_a_cuda_floor_lands_only_where_the_machines_satisfy_it(api: httpx.Client) -> None:
    # A40 machines run 13.0 in EU-RO-1, US-TX-3, EUR-IS-1, OC-AU-1 and 12.8 in US-CA-2, US-GA-1.
    anywhere = {**POD_BODY, "dataCenterIds": ["US-GA-1", "EU-RO-1"]}
    floor = api.post(
        "/v2/pods", json={**anywhere, "gpu": {"id": "NVIDIA A40", "count": 1, "minCudaVersion": "13.0"}}
    )
    assert floor.status_code == 201
    assert (floor.json()["dataCenterId"], floor.json()["cudaVersion"]) == ("EU-RO-1", "13.0")
    exact = api.post(
        "/v2/pods",
        json={**anywhere, "gpu": {"id": "NVIDIA A40", "count": 1, "allowedCudaVersions": ["12.8"]}},
    )
    assert (exact.json()["dataCenterId"], exact.json()["cudaVersion"]) == ("US-GA-1", "12.8")


def test_a_cuda_floor_no_machine_meets_is_the_live_capacity_400(api: httpx.Client) -> None:
    answer = api.post(
        "/v2/pods", json={**POD_BODY, "gpu": {"id": "NVIDIA A40", "count": 1, "minCudaVersion": "13.1"}}
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("There are no longer any instances available")
    set_miss = api.post(
        "/v2/pods",
        json={**POD_BODY, "gpu": {"id": "NVIDIA A40", "count": 1, "allowedCudaVersions": ["12.8"]}},
    )
    assert set_miss.status_code == 400  # EU-RO-1's A40s run 13.0


@pytest.mark.parametrize(
    ("gpu", "status"),
    [
        ({"id": "NVIDIA A40", "count": 1, "minCudaVersion": "12"}, 422),  # a bare major names no version
        ({"id": "NVIDIA A40", "count": 1, "allowedCudaVersions": ["12.x"]}, 422),
        ({"id": "NVIDIA A40", "count": 1, "allowedCudaVersions": ["12.8"], "minCudaVersion": "12.4"}, 400),
        ({"id": "NVIDIA A40", "count": 1, "allowedCudaVersions": [], "minCudaVersion": "12.4"}, 201),
    ],
)
def test_cuda_fields_of_a_create_are_checked_like_runpod(
    api: httpx.Client, gpu: dict[str, Any], status: int
) -> None:
    assert api.post("/v2/pods", json={**POD_BODY, "gpu": gpu}).status_code == status


def test_the_gpu_catalog_scopes_data_centers_and_versions_to_a_cuda_filter(api: httpx.Client) -> None:
    def a40(**extra: str) -> dict[str, Any]:
        found: dict[str, Any] = api.get(
            "/v2/catalog/gpus/NVIDIA A40", params={**AVAILABILITY, **extra}
        ).json()
        return found

    everything = a40()
    assert [v["version"] for v in everything["cudaVersions"]] == ["12.8", "13.0"]
    only_12_8 = a40(cudaVersions="12.8")
    assert {dc["id"] for dc in only_12_8["dataCenters"]} == {"US-CA-2", "US-GA-1"}
    assert [v["version"] for v in only_12_8["cudaVersions"]] == ["12.8"]
    assert {dc["id"] for dc in a40(minCudaVersion="13")["dataCenters"]} == {
        "EU-RO-1",
        "US-TX-3",
        "EUR-IS-1",
        "OC-AU-1",
    }
    v100 = api.get("/v2/catalog/gpus/Tesla V100-SXM2-32GB", params=AVAILABILITY).json()
    assert [v["version"] for v in v100["cudaVersions"]] == ["12.4"]


# -- query parameters, as the document declares them ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "error"),
    [
        (
            "/v2/pods",
            {"includeClusterPods": "yes"},
            "query.includeClusterPods: got string 'yes', want boolean",
        ),
        (
            "/v2/catalog/datacenters",
            {"compliance": "GDPR,SOC2"},
            "query.compliance: value must be one of 'GDPR', 'ISO_IEC_27001', 'ISO_14001', 'PCI_DSS', 'HITRUST', "
            "'SOC_1_TYPE_2', 'SOC_2_TYPE_2', 'SOC_3_TYPE_2', 'ITAR', 'FISMA_HIGH', 'HIPAA', 'RENEWABLE', got 'SOC2'",
        ),
        (
            "/v2/catalog/datacenters",
            {"networkVolumeTypes": "FAST"},
            "query.networkVolumeTypes: value must be one of 'STANDARD', 'HIGH_PERFORMANCE', got 'FAST'",
        ),
        (
            "/v2/catalog/datacenters",
            {"regions": "EUROPE,,ASIA"},
            "query.regions: empty entry in the comma-separated list 'EUROPE,,ASIA'",
        ),
        (
            "/v2/catalog/datacenters",
            {"include": ""},
            "query.include: empty entry in the comma-separated list ''",
        ),
        (
            "/v2/catalog/datacenters",
            {"globalNetwork": "maybe"},
            "query.globalNetwork: got string 'maybe', want boolean",
        ),
        (
            "/v2/catalog/gpus",
            {**AVAILABILITY, "countryCodes": "FR,"},
            "query.countryCodes: empty entry in the comma-separated list 'FR,'",
        ),
        (
            "/v2/catalog/gpus",
            {**AVAILABILITY, "cudaVersions": "12.8,,13.0"},
            "query.cudaVersions: empty entry",
        ),
        ("/v2/catalog/gpus", {"include": "AVAILABILITY", "product": "POD,"}, "query.product: empty entry"),
        ("/v2/catalog/gpus", {**AVAILABILITY, "count": "0"}, "query.count: must be >= 1"),
        ("/v2/catalog/cpus", {**AVAILABILITY, "vcpuCount": "1"}, "query.vcpuCount: must be >= 2"),
    ],
)
def test_malformed_query_parameters_answer_422_naming_each(
    api: httpx.Client, path: str, params: dict[str, str], error: str
) -> None:
    answer = api.get(path, params=params)
    assert answer.status_code == 422
    body = answer.json()
    assert (body["title"], body["status"], body["detail"]) == (
        "Unprocessable Entity",
        422,
        "Request validation failed.",
    )
    assert any(error in line for line in body["errors"]), body["errors"]


@pytest.mark.parametrize(
    "since", ["2026-06-01", "2026-06-01T12:00:00", "2026-06-01 12:00:00Z", "20260601T120000Z", "yesterday"]
)
def test_a_log_since_that_is_not_rfc_3339_answers_422(api: httpx.Client, since: str) -> None:
    pod = api.post("/v2/pods", json=POD_BODY).json()
    answer = api.get(f"/v2/pods/{pod['id']}/logs", params={"since": since})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [f"query.since: '{since}' is not a valid RFC 3339 date-time"]


def test_well_formed_parameters_are_accepted(api: httpx.Client) -> None:
    assert api.get("/v2/pods", params={"includeClusterPods": "true"}).status_code == 200
    assert api.get("/v2/pods", params={"includeClusterPods": "false", "unknownParam": "x"}).status_code == 200
    dcs = api.get(
        "/v2/catalog/datacenters",
        params={
            "compliance": "GDPR,ISO_IEC_27001",
            "networkVolumeTypes": "STANDARD",
            "globalNetwork": "true",
        },
    )
    assert dcs.status_code == 200
    for dc in dcs.json()["dataCenters"]:
        assert {"GDPR", "ISO_IEC_27001"} <= set(dc["compliance"]) and dc["globalNetwork"]
    pod = api.post("/v2/pods", json=POD_BODY).json()
    wait_status(api, pod["id"], "RUNNING")
    with api.stream(
        "GET", f"/v2/pods/{pod['id']}/logs", params={"since": "2020-01-01T00:00:00.5+02:00"}
    ) as stream:
        assert stream.status_code == 200
