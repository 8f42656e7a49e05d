"""GPU candidates and data-center compliance follow node policy and the catalog, deterministically."""

from __future__ import annotations

import dataclasses

import pytest
from webhook_samples import sample_catalog

from contract.policy import NodePolicy
from webhook.problems import Denial
from webhook.resolving import Demand, check_pins, comply_datacenters, resolve_candidates

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


def _pairs(demand: Demand) -> list[tuple[str, str | None]]:
    return [(c.gpu_type_id, c.datacenter_id) for c in resolve_candidates(demand, CATALOG)]


def test_candidates_are_ordered_by_price_then_stock_then_memory_then_id() -> None:
    assert _pairs(BASE) == [
        ("NVIDIA L4", "US-KS-2"),
        ("NVIDIA A40", "US-KS-2"),  # HIGH before LOW at the same price
        ("NVIDIA A40", "EU-SE-1"),
        ("NVIDIA RTX A6000", "CA-MTL-1"),
        ("NVIDIA RTX A6000", "EU-SE-1"),
        ("NVIDIA GeForce RTX 4090", "EU-RO-1"),
        ("NVIDIA GeForce RTX 4090", "US-TX-3"),
        ("NVIDIA A100 80GB PCIe", "US-KS-2"),
        ("NVIDIA A100 80GB PCIe", "EU-RO-1"),
        ("NVIDIA H100 80GB HBM3", "US-KS-2"),
    ]


def test_equal_price_and_stock_prefers_more_memory_then_the_id() -> None:
    base = CATALOG.gpu_types[0]
    small = base.model_copy(
        update={
            "id": "B-small",
            "memory_gb": 24,
            "price": {"SECURE": 1.0},
            "stock": {"SECURE": {"X": "HIGH"}},
        }
    )
    big = small.model_copy(update={"id": "C-big", "memory_gb": 48})
    twin = small.model_copy(update={"id": "A-small"})
    catalog = CATALOG.model_copy(update={"gpu_types": (small, big, twin)})
    assert [c.gpu_type_id for c in resolve_candidates(BASE, catalog)] == ["C-big", "A-small", "B-small"]


def test_the_whole_pod_price_is_per_gpu_price_times_count() -> None:
    first = resolve_candidates(dataclasses.replace(BASE, gpu_count=3), CATALOG)[0]
    assert (first.gpu_type_id, first.usd_per_hour, first.stock) == ("NVIDIA L4", 1.17, "HIGH")


def test_memory_price_cloud_datacenters_and_pins_all_filter() -> None:
    demand = dataclasses.replace(BASE, memory_gb=48, max_gpu_price=0.45)
    assert _pairs(demand) == [("NVIDIA A40", "US-KS-2"), ("NVIDIA A40", "EU-SE-1")]
    assert _pairs(dataclasses.replace(demand, cloud="COMMUNITY")) == [
        ("NVIDIA RTX A6000", "CA-MTL-1"),
        ("NVIDIA RTX A6000", "EU-SE-1"),
    ]
    assert _pairs(dataclasses.replace(demand, datacenter_ids=("EU-SE-1",))) == [("NVIDIA A40", "EU-SE-1")]
    pinned = dataclasses.replace(BASE, gpu_types=("NVIDIA A100 80GB PCIe",), datacenter_ids=("EU-RO-1",))
    assert _pairs(pinned) == [("NVIDIA A100 80GB PCIe", "EU-RO-1")]


def test_the_list_is_cut_to_max_candidates() -> None:
    assert len(_pairs(dataclasses.replace(BASE, max_candidates=3))) == 3


def test_the_same_inputs_always_give_the_same_plan() -> None:
    shuffled = CATALOG.model_copy(update={"gpu_types": tuple(reversed(CATALOG.gpu_types))})
    assert resolve_candidates(BASE, shuffled) == resolve_candidates(BASE, CATALOG)


def test_a_price_cap_names_the_cheapest_near_miss() -> None:
    demand = dataclasses.replace(
        BASE, memory_gb=80, max_gpu_price=1.0, cap_is_users=True, datacenter_ids=("US-KS-2",)
    )
    with pytest.raises(Denial) as info:
        resolve_candidates(demand, CATALOG)
    assert info.value.code == 422
    assert (
        "cheapest with >= 80 GB in stock in US-KS-2 is A100 PCIe (NVIDIA A100 80GB PCIe) at $1.64/h per GPU, "
        "above your cap $1.00" in info.value.message
    )


def test_the_node_cap_is_called_the_node_cap() -> None:
    demand = dataclasses.replace(BASE, memory_gb=80, max_gpu_price=0.5, gpu_types=("NVIDIA H100 80GB HBM3",))
    with pytest.raises(
        Denial, match=r"is H100 SXM \(NVIDIA H100 80GB HBM3\) at \$2.69/h per GPU, above the node cap \$0.50"
    ):
        resolve_candidates(demand, CATALOG)


def test_too_much_memory_names_the_largest_gpu() -> None:
    with pytest.raises(Denial, match=r"no GPU type has >= 500 GB .*the largest is H200 SXM with 141 GB"):
        resolve_candidates(dataclasses.replace(BASE, memory_gb=500), CATALOG)


def test_out_of_stock_everywhere_says_so() -> None:
    demand = dataclasses.replace(BASE, memory_gb=100)
    with pytest.raises(Denial, match=r"nearest: H200 SXM .* it is out of stock everywhere"):
        resolve_candidates(demand, CATALOG)


def test_out_of_stock_in_the_allowed_datacenters_says_where_it_is() -> None:
    demand = dataclasses.replace(BASE, memory_gb=80, datacenter_ids=("CA-MTL-1",))
    with pytest.raises(
        Denial, match=r"in stock in CA-MTL-1 .*nearest: A100 PCIe .*in stock in EU-RO-1, US-KS-2"
    ):
        resolve_candidates(demand, CATALOG)


def test_a_cloud_that_offers_nothing_big_enough_says_which_cloud() -> None:
    demand = dataclasses.replace(BASE, memory_gb=100, cloud="COMMUNITY")
    with pytest.raises(Denial, match="offered in the COMMUNITY cloud"):
        resolve_candidates(demand, CATALOG)


def test_an_unknown_pin_gets_a_did_you_mean_from_the_catalog() -> None:
    with pytest.raises(Denial) as info:
        check_pins(("NVIDIA A4O", "H100 SXM"), origin="Job train", catalog=CATALOG)
    message = info.value.message
    assert (
        'runpod.io/gpu-types="NVIDIA A4O" on Job train: unknown GPU type; did you mean NVIDIA A40?' in message
    )
    assert (
        'runpod.io/gpu-types="H100 SXM" on Job train: unknown GPU type; did you mean NVIDIA H100 80GB HBM3?'
        in message
    )


def test_a_fragment_of_a_gpu_name_points_at_the_matching_ids() -> None:
    with pytest.raises(Denial) as info:
        check_pins(("A100", "RTX"), origin="the pod", catalog=CATALOG)
    assert '"A100" on the pod: unknown GPU type; did you mean NVIDIA A100 80GB PCIe?' in info.value.message
    assert "did you mean one of NVIDIA GeForce RTX 4090, NVIDIA RTX A6000?" in info.value.message


def test_known_pins_pass() -> None:
    check_pins(("NVIDIA A40",), origin="the pod", catalog=CATALOG)


NODE = NodePolicy(allowed_datacenter_ids=("EU-RO-1", "US-KS-2"), max_gpu_price=2.0)


def test_no_pod_list_means_the_node_list() -> None:
    assert comply_datacenters(None, origin="the pod", policy=NODE, catalog=CATALOG) == (
        ("EU-RO-1", "US-KS-2"),
        (),
    )
    assert comply_datacenters(None, origin="the pod", policy=NodePolicy(), catalog=CATALOG) == (None, ())


def test_the_pod_list_is_intersected_with_the_node_list_and_drops_are_warnings() -> None:
    kept, warnings = comply_datacenters(
        ("US-TX-3", "US-KS-2", "CA-MTL-1"), origin="the pod", policy=NODE, catalog=CATALOG
    )
    assert kept == ("US-KS-2",)
    assert warnings == (
        "runpod.io/datacenter-ids: dropped US-TX-3: not allowed on node virtual-runpod",
        "runpod.io/datacenter-ids: dropped CA-MTL-1: not allowed on node virtual-runpod",
    )


def test_an_empty_intersection_is_forbidden_and_lists_the_allowed_ones() -> None:
    with pytest.raises(Denial) as info:
        comply_datacenters(("US-TX-3",), origin="Job train", policy=NODE, catalog=CATALOG)
    assert info.value.code == 403
    assert info.value.message == (
        'runpod.io/datacenter-ids="US-TX-3" on Job train: none of these data centers is allowed on node '
        "virtual-runpod; allowed: EU-RO-1, US-KS-2"
    )


def test_an_unknown_datacenter_gets_a_did_you_mean() -> None:
    with pytest.raises(Denial, match=r'"EU-RO-2" on the pod: unknown data center; did you mean EU-RO-1\?'):
        comply_datacenters(("EU-RO-2",), origin="the pod", policy=NodePolicy(), catalog=CATALOG)


def test_without_a_datacenter_list_in_the_catalog_ids_are_not_judged() -> None:
    bare = CATALOG.model_copy(update={"data_centers": ()})
    kept, _ = comply_datacenters(("XX-NEW-1",), origin="the pod", policy=NodePolicy(), catalog=bare)
    assert kept == ("XX-NEW-1",)


def test_a_pod_without_a_tcp_port_is_planned_where_it_gets_an_address_at_no_extra_cost() -> None:
    # Only EU-SE-1 has global networking: a pod with no public IP gets its address there.
    catalog = CATALOG.model_copy(
        update={
            "data_centers": tuple(
                dc.model_copy(update={"global_network": dc.id == "EU-SE-1"}) for dc in CATALOG.data_centers
            )
        }
    )
    addressless = dataclasses.replace(BASE, max_candidates=5, needs_private_address=True)
    pairs = [(c.gpu_type_id, c.datacenter_id) for c in resolve_candidates(addressless, catalog)]
    # The cheapest GPU is never given up for an address; at the A40's price, EU-SE-1 (low stock)
    # comes before US-KS-2 (high stock), and so for the A6000.
    assert pairs == [
        ("NVIDIA L4", "US-KS-2"),
        ("NVIDIA A40", "EU-SE-1"),
        ("NVIDIA A40", "US-KS-2"),
        ("NVIDIA RTX A6000", "EU-SE-1"),
        ("NVIDIA RTX A6000", "CA-MTL-1"),
    ]
    # A pod with a tcp port has a public IP anyway: stock decides, as before.
    with_public_ip = dataclasses.replace(addressless, needs_private_address=False)
    assert [c.datacenter_id for c in resolve_candidates(with_public_ip, catalog)][1:3] == [
        "US-KS-2",
        "EU-SE-1",
    ]
