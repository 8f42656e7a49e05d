"""Admission messages stay readable whatever the input: bounded, naming the field and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_samples import gpu_pod, review_bytes, sample_catalog

from contract.policy import NodePolicy
from webhook.admission import mutate, validate
from webhook.problems import (
    MAX_MESSAGE_CHARS,
    Denial,
    Problem,
    bound_message,
    name_items,
    quote,
    quote_items,
)
from webhook.reviews import Verdict, parse_review

CATALOG = sample_catalog()
OPEN_NODE = NodePolicy(max_gpu_price=2.0)
FENCED_NODE = NodePolicy(allowed_datacenter_ids=("EU-RO-1", "US-KS-2"), max_gpu_price=2.0)
# What a person can still read in one kubectl error line.
READABLE = 600


def _denied(pod: dict[str, Any], policy: NodePolicy = OPEN_NODE) -> str:
    verdict = mutate(parse_review(review_bytes(pod)), catalog=CATALOG, policy=policy, jobs=None)
    assert not verdict.allowed
    return verdict.message or ""


def _ids(count: int, prefix: str = "XX-DC-") -> str:
    return ",".join(f"{prefix}{i}" for i in range(count))


def test_500_unknown_datacenter_ids_are_refused_in_a_few_hundred_characters() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/datacenter-ids": _ids(500)}))
    assert len(message) < READABLE
    assert message.startswith('runpod.io/datacenter-ids="XX-DC-0", "XX-DC-1"')
    assert "and 495 more on the pod: 500 unknown data centers" in message
    assert "allowed: data-center ids from the RunPod catalog" in message


def test_500_datacenter_ids_outside_the_node_list_name_the_allowed_ones_briefly() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/datacenter-ids": _ids(500)}), FENCED_NODE)
    assert len(message) < READABLE
    assert "and 495 more on the pod: none of these data centers is allowed" in message
    assert message.endswith("allowed: EU-RO-1, US-KS-2")


def test_many_dropped_datacenters_share_one_warning() -> None:
    ids = "EU-RO-1," + _ids(300)
    verdict = mutate(
        parse_review(review_bytes(gpu_pod(annotations={"runpod.io/datacenter-ids": ids}))),
        catalog=CATALOG,
        policy=FENCED_NODE,
        jobs=None,
    )
    assert verdict.allowed
    assert verdict.warnings == (
        "runpod.io/datacenter-ids: dropped XX-DC-0, XX-DC-1, XX-DC-2, XX-DC-3, XX-DC-4 and 295 more: "
        "not allowed on node virtual-runpod",
    )


def test_a_few_unknown_ids_keep_a_did_you_mean_each() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/datacenter-ids": "EU-RO1,US-KS2"}))
    assert '"EU-RO1" on the pod: unknown data center; did you mean EU-RO-1?' in message
    assert '"US-KS2" on the pod: unknown data center; did you mean US-KS-2?' in message


def test_hundreds_of_unknown_gpu_types_are_listed_by_their_first_few() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/gpu-types": _ids(400, "NVIDIA X")}))
    assert len(message) < READABLE
    assert 'runpod.io/gpu-types="NVIDIA X0"' in message
    assert (
        "and 395 more on the pod: 400 unknown GPU types; allowed: GPU type ids from the RunPod catalog"
        in message
    )


def test_a_10000_character_value_is_quoted_by_its_start_and_length() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/templateId": "t" * 10_000}))
    assert len(message) < READABLE
    assert "(10,000 characters) on the pod: not a RunPod id; allowed: a non-empty RunPod id" in message
    assert message.startswith('runpod.io/templateId="ttt')


def test_a_huge_port_in_the_ports_list_is_not_repeated_in_the_reason() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/ports": "8888/http," + "9" * 20_000 + "/tcp"}))
    assert len(message) < READABLE
    assert message.startswith('runpod.io/ports="8888/http,999')
    assert "allowed: a comma-separated list of PORT/http or PORT/tcp" in message


def test_a_thousand_unknown_annotations_are_listed_by_their_first_few_and_counted() -> None:
    annotations = {f"runpod.io/typo-{i}": "x" * 500 for i in range(1000)}
    message = _denied(gpu_pod(annotations=annotations))
    assert len(message) < READABLE
    assert message.startswith('metadata.annotations="runpod.io/typo-0", "runpod.io/typo-1"')
    assert "and 995 more on the pod: 1,000 unknown runpod.io/ annotations" in message
    assert "allowed: the runpod.io/ annotations required-gpu-memory, gpu-types" in message


def test_an_unknown_annotation_with_a_huge_key_is_cut() -> None:
    message = _denied(gpu_pod(annotations={"runpod.io/" + "k" * 5000: "1"}))
    assert len(message) < READABLE
    assert "unknown annotation" in message and "allowed: the runpod.io/ annotations" in message


def test_a_huge_drop_list_is_refused_briefly() -> None:
    message = _denied(
        gpu_pod(annotations={"runpod.io/drop-containers": ",".join(["Bad_Name"] * 3 + ["x"] * 3000)})
    )
    assert len(message) < READABLE
    assert message.startswith("runpod.io/drop-containers=")
    assert "allowed: a comma-separated list of container names" in message


def test_a_forged_plan_with_thousands_of_candidates_is_refused_briefly() -> None:
    from contract.plan import Candidate, Plan, plan_to_annotations

    plan = Plan(
        candidates=tuple(
            Candidate(gpu_type_id=f"GPU {i}", datacenter_id="US-TX-3", usd_per_hour=99.0) for i in range(3000)
        ),
        gpu_count=1,
        cloud="SECURE",
        container_disk_gb=50,
        max_gpu_price=99.0,
        catalog_revision="x",
    )
    verdict: Verdict = validate(
        parse_review(review_bytes(gpu_pod(annotations=plan_to_annotations(plan)))), policy=FENCED_NODE
    )
    assert not verdict.allowed
    message = verdict.message or ""
    assert len(message) < 2 * READABLE
    assert message.startswith("plan.runpod.io/* inconsistent with node policy: max-gpu-price 99 above")
    assert "more; recreate the pod so the webhook plans it again" in message


@pytest.mark.parametrize("count", [1, 5, 6, 500])
def test_every_denial_is_bounded_and_counts_what_it_leaves_out(count: int) -> None:
    problems = [
        Problem(field=f"runpod.io/k{i}", value="v" * 1000, reason="r" * 1000, allowed="a" * 1000)
        for i in range(count)
    ]
    message = Denial.of(problems).message
    assert len(message) <= MAX_MESSAGE_CHARS
    assert message.startswith('runpod.io/k0="vvv')
    assert "allowed: aaa" in message
    # However long each problem is, the count of what is left out survives the bound.
    assert message.endswith(" more problems") == (count > 1)


def test_a_message_built_elsewhere_is_cut_at_the_bound_saying_so() -> None:
    message = Denial("x" * 100_000).message
    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("... (98,000 more characters not shown)")
    assert bound_message("short") == "short"


def test_quoting_helpers_show_a_prefix_and_count_the_rest() -> None:
    assert quote("EU-RO-1") == '"EU-RO-1"'
    assert quote("a" * 100) == '"' + "a" * 77 + '..." (100 characters)'
    assert quote_items(["a", "b"]) == '"a", "b"'
    assert quote_items([str(i) for i in range(8)]) == '"0", "1", "2", "3", "4" and 3 more'
    assert name_items(["a"]) == "a"
    assert name_items([str(i) for i in range(500)]) == "0, 1, 2, 3, 4 and 495 more"
    assert name_items(["x" * 100]) == "x" * 61 + "..."


def test_a_validate_denial_is_bounded_too() -> None:
    verdict = validate(
        parse_review(review_bytes(gpu_pod(annotations={"plan.runpod.io/version": "9" * 50_000}))),
        policy=OPEN_NODE,
    )
    assert not verdict.allowed
    assert len(verdict.message or "") <= MAX_MESSAGE_CHARS
    assert "no valid plan" in (verdict.message or "")
