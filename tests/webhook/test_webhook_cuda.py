"""A CUDA floor or exact set keeps only GPU types, and data centers, whose machines run a
satisfying CUDA version; a requirement nothing meets is refused naming the versions offered."""

from __future__ import annotations

import dataclasses

import pytest
from webhook_samples import runpod_gpu_answer, sample_catalog

from contract.catalog import CudaRequirement, build_catalog
from webhook.problems import Denial
from webhook.resolving import Demand, check_cuda, resolve_candidates

CATALOG = sample_catalog()
BASE = Demand(
    memory_gb=16,
    gpu_count=1,
    cloud="SECURE",
    max_gpu_price=5.0,
    cap_is_users=False,
    datacenter_ids=None,
    gpu_types=None,
    max_candidates=50,
)


def _with(minimum: str | None = None, versions: tuple[str, ...] = (), **changes: object) -> Demand:
    return dataclasses.replace(BASE, cuda=CudaRequirement(minimum=minimum, versions=versions), **changes)  # type: ignore[arg-type]


def _pairs(demand: Demand) -> list[tuple[str | None, str | None, str | None]]:
    return [(c.gpu_type_id, c.datacenter_id, c.stock) for c in resolve_candidates(demand, CATALOG)]


def _denied(demand: Demand) -> str:
    with pytest.raises(Denial) as caught:
        resolve_candidates(demand, CATALOG)
    return caught.value.message


def test_a_floor_drops_gpu_types_and_data_centers_whose_machines_run_older_cuda() -> None:
    pairs = _pairs(_with("12.8"))
    assert ("NVIDIA L4", "US-KS-2", "HIGH") not in pairs  # its machines run 12.4
    assert ("NVIDIA A40", "EU-SE-1", "LOW") not in pairs  # A40 on 12.4 there
    assert ("NVIDIA A40", "US-KS-2", "HIGH") in pairs  # A40 on 12.8 there
    assert pairs[0] == ("NVIDIA A40", "US-KS-2", "HIGH")


def test_the_band_is_that_of_the_satisfying_machines() -> None:
    # H100 in US-KS-2: HIGH over all its machines, MEDIUM on the 13.0 ones.
    assert _pairs(_with("13.0")) == [("NVIDIA H100 80GB HBM3", "US-KS-2", "MEDIUM")]
    assert ("NVIDIA H100 80GB HBM3", "US-KS-2", "HIGH") in _pairs(BASE)


def test_the_floor_compares_numerically() -> None:
    # 12.10 is above 12.8 (not 12.1): no 12.x machine of the catalog satisfies it, 13.0 does.
    assert _pairs(_with("12.10")) == [("NVIDIA H100 80GB HBM3", "US-KS-2", "MEDIUM")]


def test_an_exact_set_keeps_only_those_versions() -> None:
    assert _pairs(_with(versions=("12.4",))) == [
        ("NVIDIA L4", "US-KS-2", "HIGH"),
        ("NVIDIA A40", "EU-SE-1", "LOW"),
    ]
    assert {p[0] for p in _pairs(_with(versions=("12.4", "13.0")))} == {
        "NVIDIA L4",
        "NVIDIA A40",
        "NVIDIA H100 80GB HBM3",
    }


def test_a_gpu_type_with_no_known_cuda_satisfies_no_requirement() -> None:
    amd = CATALOG.gpu_types[0].model_copy(update={"id": "AMD Instinct MI300X OAM", "cuda": {}})
    catalog = CATALOG.model_copy(update={"gpu_types": (amd,)})
    assert resolve_candidates(BASE, catalog)  # without a requirement it is a candidate
    with pytest.raises(Denial):
        resolve_candidates(_with("11.0"), catalog)


def test_a_floor_above_every_version_offered_is_refused_naming_the_newest_and_the_versions() -> None:
    with pytest.raises(Denial) as caught:
        check_cuda(CudaRequirement(minimum="13.1"), origin="Job train", catalog=CATALOG)
    message = caught.value.message
    assert message.startswith('runpod.io/min-cuda-version="13.1" on Job train: ')
    assert "no GPU type in the catalog runs CUDA >= 13.1; the newest is 13.0" in message
    assert "allowed: CUDA versions machines in the RunPod catalog run: 12.4, 12.8, 13.0" in message
    check_cuda(CudaRequirement(minimum="13.0"), origin="the pod", catalog=CATALOG)  # met: fine


def test_an_exact_set_naming_a_version_no_machine_runs_is_refused() -> None:
    with pytest.raises(Denial) as caught:
        check_cuda(CudaRequirement(versions=("12.4", "12.5")), origin="the pod", catalog=CATALOG)
    message = caught.value.message
    assert (
        'runpod.io/cuda-versions="12.5" on the pod: no GPU type in the catalog runs this CUDA version'
        in message
    )
    assert "12.4, 12.8, 13.0" in message


def test_a_catalog_without_cuda_versions_says_so() -> None:
    answer = runpod_gpu_answer()
    for gpu in answer["gpus"]:
        gpu.pop("cudaVersions", None)
    bare = build_catalog(gpus_by_cloud={"SECURE": answer})
    with pytest.raises(Denial) as caught:
        check_cuda(CudaRequirement(minimum="12.0"), origin="the pod", catalog=bare)
    assert (
        "the catalog lists no CUDA versions (is the binder older than the webhook?)" in caught.value.message
    )


def test_types_the_pins_allow_that_run_no_satisfying_cuda_are_named_with_what_they_run() -> None:
    message = _denied(_with("13.0", gpu_types=("NVIDIA L4", "NVIDIA A40")))
    assert (
        "no GPU type among runpod.io/gpu-types NVIDIA L4, NVIDIA A40 with >= 16 GB in the SECURE cloud runs "
        "CUDA >= 13.0 (runpod.io/min-cuda-version); they run CUDA 12.4, 12.8 (newest: 12.8); relax "
        "runpod.io/min-cuda-version"
    ) in message


def test_a_price_cap_miss_says_which_cuda_the_cheapest_satisfying_type_was_judged_on() -> None:
    message = _denied(_with("13.0", max_gpu_price=1.0))
    assert (
        "cheapest with >= 16 GB on CUDA >= 13.0 in stock is H100 SXM (NVIDIA H100 80GB HBM3) at $2.69/h"
        in message
    )


def test_a_stock_miss_names_where_the_satisfying_machines_are() -> None:
    message = _denied(_with("12.8", gpu_types=("NVIDIA A40",), datacenter_ids=("EU-SE-1",)))
    assert (
        "no GPU type with >= 16 GB on CUDA >= 12.8 among runpod.io/gpu-types NVIDIA A40 is in stock in EU-SE-1"
        in message
    )
    assert "nearest: A40 (NVIDIA A40) at $0.44/h per GPU; in stock in US-KS-2" in message


def test_without_the_per_version_answers_an_available_version_counts_wherever_the_type_is() -> None:
    answer = runpod_gpu_answer()
    coarse = build_catalog(gpus_by_cloud={"SECURE": answer})
    a40 = coarse.gpu("NVIDIA A40")
    assert a40 is not None
    assert a40.cuda["SECURE"] == {
        "12.4": {"EU-SE-1": "LOW", "US-KS-2": "HIGH"},
        "12.8": {"EU-SE-1": "LOW", "US-KS-2": "HIGH"},
    }
    # Offered, but with no capacity: an empty stock (not absent).
    h200 = coarse.gpu("NVIDIA H200")
    assert h200 is not None and h200.cuda["SECURE"] == {"12.8": {}}


@pytest.mark.parametrize(
    ("requirement", "version", "admits"),
    [
        (CudaRequirement(minimum="12.4"), "12.4", True),
        (CudaRequirement(minimum="12.4"), "12.11", True),
        (CudaRequirement(minimum="12.4"), "12.3", False),
        (CudaRequirement(minimum="12.4"), "13.0", True),
        (CudaRequirement(minimum="12.4"), "11.8", False),
        (CudaRequirement(versions=("12.4", "12.6")), "12.6", True),
        (CudaRequirement(versions=("12.4", "12.6")), "12.8", False),
        (CudaRequirement(minimum="12.4"), "garbage", False),
    ],
)
def test_cuda_requirements_admit_versions_numerically_or_exactly(
    requirement: CudaRequirement, version: str, admits: bool
) -> None:
    assert requirement.admits(version) is admits


def test_requirements_describe_themselves() -> None:
    assert CudaRequirement(minimum="12.4").describe() == "CUDA >= 12.4"
    assert CudaRequirement(versions=("12.4", "12.6")).describe() == "CUDA 12.4 or 12.6"
