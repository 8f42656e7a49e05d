"""CPU pods: the flavour and vCPU count chosen from the catalog, cheapest fitting first, within
the price cap and the data centers allowed; each refusal names what excluded the nearest miss."""

from __future__ import annotations

import dataclasses

import pytest
from webhook_samples import sample_catalog

from contract.catalog import CpuTypeEntry
from webhook.problems import Denial
from webhook.resolving import CpuDemand, check_cpu_pins, known_datacenters, resolve_cpu_candidates

CATALOG = sample_catalog()
BASE = CpuDemand(
    cores=2,
    memory_gb=0,
    max_vcpu_price=0.1,
    cap_is_users=False,
    datacenter_ids=None,
    cpu_types=None,
    max_candidates=50,
)


def _triples(demand: CpuDemand) -> list[tuple[str | None, int | None, str | None, float]]:
    return [
        (c.cpu_type_id, c.vcpu_count, c.datacenter_id, c.usd_per_hour)
        for c in resolve_cpu_candidates(demand, CATALOG)
    ]


def _denial(demand: CpuDemand) -> str:
    with pytest.raises(Denial) as caught:
        resolve_cpu_candidates(demand, CATALOG)
    return caught.value.message


def test_candidates_are_the_cheapest_fitting_flavours_ordered_by_price_then_stock_then_ram() -> None:
    assert _triples(BASE) == [
        ("cpu3c", 2, "EU-RO-1", 0.06),  # HIGH before LOW at the same price
        ("cpu3c", 2, "US-TX-3", 0.06),
        ("cpu5c", 2, "EU-SE-1", 0.07),
        ("cpu3g", 2, "US-KS-2", 0.08),
        ("cpu3g", 2, "EU-RO-1", 0.08),
        ("cpu3m", 2, "US-KS-2", 0.12),
    ]


def test_no_gpu_is_in_any_candidate() -> None:
    for candidate in resolve_cpu_candidates(BASE, CATALOG):
        assert candidate.gpu_type_id is None and candidate.compute_type == "CPU"


@pytest.mark.parametrize(
    ("cores", "vcpus"),
    [(0, 2), (0.25, 2), (1, 2), (2, 2), (2.5, 4), (3, 4), (4, 4), (4.001, 8), (17, 32), (32, 32)],
)
def test_the_cpu_is_rounded_up_to_a_power_of_two_of_at_least_two_vcpus(cores: float, vcpus: int) -> None:
    first = resolve_cpu_candidates(dataclasses.replace(BASE, cores=cores), CATALOG)[0]
    assert (first.cpu_type_id, first.vcpu_count) == ("cpu3c", vcpus)
    assert first.usd_per_hour == pytest.approx(0.03 * vcpus)


def test_more_than_a_flavours_largest_count_falls_to_a_bigger_flavour() -> None:
    # 40 vCPUs: cpu3* stop at 32; cpu5c goes to 64.
    assert _triples(dataclasses.replace(BASE, cores=40)) == [("cpu5c", 64, "EU-SE-1", 2.24)]


def test_memory_is_met_with_the_vcpus_each_flavour_needs_for_it_and_the_cheapest_wins() -> None:
    # 16 GB: cpu3c (2 GB/vCPU) needs 8 vCPUs ($0.24), cpu3g (4 GB) 4 ($0.16), cpu3m (8 GB) 2 ($0.12).
    demand = dataclasses.replace(BASE, cores=1, memory_gb=16)
    assert [t[:2] for t in _triples(demand)] == [
        ("cpu3m", 2),
        ("cpu3g", 4),
        ("cpu3g", 4),
        ("cpu3c", 8),
        ("cpu3c", 8),
        ("cpu5c", 8),
    ]


def test_memory_above_a_flavour_step_takes_the_next_count() -> None:
    # 16.5 GB is more than 2 x 8 GB on cpu3m.
    demand = dataclasses.replace(BASE, cores=0, memory_gb=16.5, cpu_types=("cpu3m",))
    assert _triples(demand) == [("cpu3m", 4, "US-KS-2", 0.24)]


def test_equal_price_and_stock_prefers_more_ram_then_the_id() -> None:
    lean = CpuTypeEntry(
        id="b-lean", vcpu_min=2, vcpu_max=8, ram_gb_per_vcpu=2, price_per_vcpu=0.05, stock={"X": "HIGH"}
    )
    roomy = lean.model_copy(update={"id": "c-roomy", "ram_gb_per_vcpu": 4})
    twin = lean.model_copy(update={"id": "a-lean"})
    catalog = CATALOG.model_copy(update={"cpu_types": (lean, roomy, twin)})
    assert [c.cpu_type_id for c in resolve_cpu_candidates(BASE, catalog)] == ["c-roomy", "a-lean", "b-lean"]


def test_a_flavour_whose_range_starts_above_two_sells_from_its_minimum() -> None:
    big = CpuTypeEntry(
        id="big", vcpu_min=8, vcpu_max=32, ram_gb_per_vcpu=2, price_per_vcpu=0.01, stock={"X": "LOW"}
    )
    catalog = CATALOG.model_copy(update={"cpu_types": (big,)})
    (only,) = resolve_cpu_candidates(BASE, catalog)
    assert (only.cpu_type_id, only.vcpu_count, only.usd_per_hour) == ("big", 8, 0.08)
    assert big.vcpu_counts() == [8, 16, 32]


def test_the_per_vcpu_price_cap_excludes_dearer_flavours() -> None:
    demand = dataclasses.replace(BASE, max_vcpu_price=0.035)
    assert {t[0] for t in _triples(demand)} == {"cpu3c", "cpu5c"}


def test_a_cap_below_every_fitting_flavour_names_the_cheapest_and_whose_cap_it_is() -> None:
    users = _denial(dataclasses.replace(BASE, max_vcpu_price=0.02, cap_is_users=True))
    assert "cheapest fitting cpu 2 in stock is cpu3c x2 vCPU at $0.03/vCPU-hour" in users
    assert "above your cap $0.02 (runpod.io/max-vcpu-price)" in users
    node = _denial(dataclasses.replace(BASE, max_vcpu_price=0.02))
    assert "above the node cap $0.02" in node


def test_data_centers_narrow_the_candidates_and_a_miss_names_where_stock_is() -> None:
    assert _triples(dataclasses.replace(BASE, datacenter_ids=("US-KS-2",))) == [
        ("cpu3g", 2, "US-KS-2", 0.08),
        ("cpu3m", 2, "US-KS-2", 0.12),
    ]
    message = _denial(dataclasses.replace(BASE, datacenter_ids=("CA-MTL-1",)))
    assert "no CPU flavour fitting cpu 2 is in stock in CA-MTL-1 in the SECURE cloud" in message
    assert "nearest: cpu3c x2 vCPU at $0.06/h; in stock in EU-RO-1, US-TX-3" in message
    assert "runpod.io/datacenter-ids" in message


def test_pins_keep_only_the_named_flavours() -> None:
    assert {t[0] for t in _triples(dataclasses.replace(BASE, cpu_types=("cpu3g", "cpu3m")))} == {
        "cpu3g",
        "cpu3m",
    }


def test_unknown_pins_are_refused_with_a_suggestion_and_the_known_flavours() -> None:
    with pytest.raises(Denial) as caught:
        check_cpu_pins(("cpu5",), origin="the pod", catalog=CATALOG)
    message = caught.value.message
    assert 'runpod.io/cpu-types="cpu5" on the pod: unknown CPU flavour; did you mean cpu5c?' in message
    assert "allowed: CPU flavour ids from the RunPod catalog: cpu3c, cpu3g, cpu3m, cpu5c" in message
    check_cpu_pins(("cpu3c",), origin="the pod", catalog=CATALOG)  # known: fine


def test_a_pod_too_big_for_every_flavour_is_told_the_largest() -> None:
    message = _denial(dataclasses.replace(BASE, cores=2, memory_gb=600))
    assert "no CPU flavour fits cpu 2 and 600 GB memory" in message
    assert "the largest is cpu3m (Memory-Optimized) with up to 32 vCPUs and 256 GB" in message
    assert "power-of-two vCPU count >= 2" in message


def test_a_catalog_without_cpu_flavours_says_so_and_how_to_ask_for_a_gpu() -> None:
    catalog = CATALOG.model_copy(update={"cpu_types": ()})
    with pytest.raises(Denial) as caught:
        resolve_cpu_candidates(BASE, catalog)
    assert (
        "no RunPod CPU flavour is in the catalog (is the binder older than the webhook?)"
        in caught.value.message
    )
    assert "runpod.io/compute-type: GPU" in caught.value.message


def test_a_flavour_out_of_stock_everywhere_is_named_as_such() -> None:
    gone = CATALOG.model_copy(
        update={"cpu_types": tuple(c.model_copy(update={"stock": {}}) for c in CATALOG.cpu_types)}
    )
    with pytest.raises(Denial) as caught:
        resolve_cpu_candidates(BASE, gone)
    assert "nearest: cpu3c x2 vCPU at $0.06/h; it is out of stock everywhere" in caught.value.message


def test_the_candidate_list_is_capped_and_deterministic() -> None:
    demand = dataclasses.replace(BASE, max_candidates=2)
    assert _triples(demand) == _triples(demand) == _triples(BASE)[:2]


def test_cpu_stock_counts_as_a_known_data_center() -> None:
    assert "EU-SE-1" in known_datacenters(CATALOG)
