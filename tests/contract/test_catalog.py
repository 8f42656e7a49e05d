"""RunPod catalog answers become the catalog the webhook resolves against."""

from __future__ import annotations

import json

import pytest

from contract.catalog import CatalogError, build_catalog, parse_catalog_document


def _gpu(
    gpu_id: str, *, memory: int, secure: float, community: float, dcs: dict[str, str]
) -> dict[str, object]:
    return {
        "id": gpu_id,
        "name": gpu_id.split()[-1],
        "pool": None,
        "manufacturer": "NVIDIA",
        "memory": memory,
        "secure": secure > 0,
        "community": community > 0,
        "price": {"secure": secure, "community": community},
        "maxCount": {"secure": 8, "community": 8},
        "availability": "HIGH",
        "dataCenters": [{"id": dc, "name": dc, "availability": band} for dc, band in dcs.items()],
    }


def test_availability_is_kept_per_cloud_and_none_bands_are_dropped() -> None:
    secure = {
        "gpus": [
            _gpu(
                "NVIDIA A40", memory=48, secure=0.44, community=0, dcs={"EU-RO-1": "HIGH", "US-KS-2": "NONE"}
            )
        ]
    }
    community = {"gpus": [_gpu("NVIDIA A40", memory=48, secure=0.44, community=0, dcs={"EU-RO-1": "LOW"})]}
    catalog = build_catalog(gpus_by_cloud={"SECURE": secure, "COMMUNITY": community})
    a40 = catalog.gpu("NVIDIA A40")
    assert a40 is not None
    assert a40.stock_in("SECURE") == {"EU-RO-1": "HIGH"}
    assert a40.price_in("SECURE") == 0.44
    assert a40.price_in("COMMUNITY") is None  # not offered there, whatever the stock says


def test_sentinel_and_priceless_gpu_types_are_dropped() -> None:
    answer = {
        "gpus": [
            _gpu("unknown", memory=0, secure=1, community=1, dcs={}),
            _gpu("NVIDIA Free", memory=8, secure=0, community=0, dcs={"EU-RO-1": "HIGH"}),
            _gpu("NVIDIA L4", memory=24, secure=0.39, community=0, dcs={}),
        ]
    }
    catalog = build_catalog(gpus_by_cloud={"SECURE": answer})
    assert [g.id for g in catalog.gpu_types] == ["NVIDIA L4"]


def test_revision_changes_with_content_and_only_with_content() -> None:
    answer = {"gpus": [_gpu("NVIDIA L4", memory=24, secure=0.39, community=0, dcs={"EU-RO-1": "HIGH"})]}
    first = build_catalog(gpus_by_cloud={"SECURE": answer})
    again = build_catalog(gpus_by_cloud={"SECURE": json.loads(json.dumps(answer))})
    answer["gpus"][0]["dataCenters"][0]["availability"] = "LOW"  # type: ignore[index]
    changed = build_catalog(gpus_by_cloud={"SECURE": answer})
    assert first.revision == again.revision
    assert first.revision != changed.revision


def test_our_document_and_a_raw_runpod_answer_both_parse() -> None:
    answer = {"gpus": [_gpu("NVIDIA L4", memory=24, secure=0.39, community=0.2, dcs={"EU-RO-1": "MEDIUM"})]}
    from_raw = parse_catalog_document(json.dumps(answer))
    assert from_raw.gpu("NVIDIA L4") is not None
    assert parse_catalog_document(from_raw.to_json()) == from_raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"pods": []}', "'gpuTypes'"),
        ('{"version": 2, "gpuTypes": []}', "version"),
    ],
)
def test_an_unreadable_catalog_says_why(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog_document(text)


def _cpu(
    cpu_id: str, *, low: int = 2, high: int = 32, ram: float = 2.0, price: object = 0.03
) -> dict[str, object]:
    return {
        "id": cpu_id,
        "name": "Compute-Optimized",
        "group": "Gen 3",
        "vcpu": {"min": low, "max": high},
        "ramGbPerVcpu": ram,
        "price": {"securePerVcpu": price, "serverlessPerVcpu": 0.02},
        "availability": "HIGH",
        "dataCenters": [
            {"id": "EU-RO-1", "name": "EU Romania 1", "availability": "HIGH"},
            {"id": "US-KS-2", "name": "US Kansas 2", "availability": "NONE"},
        ],
    }


L4 = {"gpus": [_gpu("NVIDIA L4", memory=24, secure=0.39, community=0, dcs={"EU-RO-1": "HIGH"})]}


def test_cpu_flavours_are_read_with_their_range_ram_price_and_stock_above_none() -> None:
    catalog = build_catalog(gpus_by_cloud={"SECURE": L4}, cpus={"cpus": [_cpu("cpu3c")]})
    cpu = catalog.cpu("cpu3c")
    assert cpu is not None
    assert (cpu.vcpu_min, cpu.vcpu_max, cpu.ram_gb_per_vcpu, cpu.price_per_vcpu) == (2, 32, 2.0, 0.03)
    assert cpu.stock_in() == {"EU-RO-1": "HIGH"}
    assert cpu.vcpu_counts() == [2, 4, 8, 16, 32]
    assert cpu.vcpus_for(cores=3, memory_gb=0) == 4
    assert cpu.vcpus_for(cores=1, memory_gb=20) == 16  # RAM comes with vCPUs
    assert cpu.vcpus_for(cores=33, memory_gb=0) is None


@pytest.mark.parametrize(
    "bad",
    [
        _cpu("cpu-free", price=0),
        _cpu("cpu-null", price=None),
        _cpu("cpu-upside-down", low=16, high=8),
        _cpu("cpu-one", low=1, high=1),
        {"id": "cpu-partial", "name": "x"},
        {"id": "", "vcpu": {"min": 2, "max": 4}},
        "not an object",
    ],
)
def test_cpu_flavours_runpod_cannot_sell_are_dropped(bad: object) -> None:
    catalog = build_catalog(gpus_by_cloud={"SECURE": L4}, cpus={"cpus": [bad, _cpu("cpu3c")]})
    assert [c.id for c in catalog.cpu_types] == ["cpu3c"]


def test_the_revision_covers_cpu_flavours_and_cuda_stock() -> None:
    plain = build_catalog(gpus_by_cloud={"SECURE": L4})
    with_cpus = build_catalog(gpus_by_cloud={"SECURE": L4}, cpus={"cpus": [_cpu("cpu3c")]})
    dearer = build_catalog(gpus_by_cloud={"SECURE": L4}, cpus={"cpus": [_cpu("cpu3c", price=0.04)]})
    cuda = json.loads(json.dumps(L4))
    cuda["gpus"][0]["cudaVersions"] = [{"version": "12.8", "available": True}]
    with_cuda = build_catalog(gpus_by_cloud={"SECURE": cuda})
    assert len({plain.revision, with_cpus.revision, dearer.revision, with_cuda.revision}) == 4


def test_per_version_answers_say_where_each_cuda_version_is_in_stock() -> None:
    base = json.loads(json.dumps(L4))
    base["gpus"][0]["dataCenters"].append({"id": "US-KS-2", "availability": "LOW"})
    base["gpus"][0]["cudaVersions"] = [
        {"version": "12.4", "available": True},
        {"version": "12.8", "available": True},
        {"version": "13.0", "available": False},
        {"version": "13", "available": True},  # malformed: left out
    ]
    only_ro = json.loads(json.dumps(L4))
    catalog = build_catalog(
        gpus_by_cloud={"SECURE": base},
        cuda_by_cloud={"SECURE": {"12.4": {"gpus": []}, "12.8": only_ro}},
    )
    l4 = catalog.gpu("NVIDIA L4")
    assert l4 is not None
    assert l4.cuda["SECURE"] == {"12.4": {}, "12.8": {"EU-RO-1": "HIGH"}, "13.0": {}}
    assert catalog.cuda_versions() == ("12.4", "12.8", "13.0")


def test_offered_cuda_versions_are_those_with_capacity_somewhere_oldest_first() -> None:
    from contract.catalog import offered_cuda_versions

    answer = {
        "gpus": [
            {
                "id": "a",
                "cudaVersions": [
                    {"version": "12.10", "available": True},
                    {"version": "12.8", "available": False},
                ],
            },
            {
                "id": "b",
                "cudaVersions": [
                    {"version": "12.9", "available": True},
                    {"version": "12.10", "available": True},
                ],
            },
            {"id": "c"},
        ]
    }
    assert offered_cuda_versions(answer) == ["12.9", "12.10"]


def test_a_catalog_of_an_older_binder_without_cpu_flavours_still_reads() -> None:
    older = json.loads(build_catalog(gpus_by_cloud={"SECURE": L4}).to_json())
    older.pop("cpuTypes")
    for gpu in older["gpuTypes"]:
        gpu.pop("cuda")
    catalog = parse_catalog_document(json.dumps(older))
    assert catalog.cpu_types == () and catalog.cuda_versions() == ()
    assert catalog.gpu("NVIDIA L4") is not None


def test_a_raw_runpod_answer_may_carry_the_cpu_list_beside_the_gpus() -> None:
    catalog = parse_catalog_document(json.dumps({**L4, "cpus": [_cpu("cpu5c")]}))
    assert [c.id for c in catalog.cpu_types] == ["cpu5c"]
    assert parse_catalog_document(catalog.to_json()) == catalog
