"""The outage tolerations the webhook gives new pods: pure decisions, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from webhook_samples import apply_patch, gpu_pod, review_bytes, sample_catalog

from contract.policy import NodePolicy
from webhook.admission import mutate
from webhook.cli import load_webhook_settings
from webhook.reviews import parse_review
from webhook.tolerations import DEFAULT_OUTAGE_TOLERATION_SECONDS, OutageTolerations, outage_toleration_patch

NOT_READY, UNREACHABLE = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"
PROVIDER = {
    "key": "virtual-kubelet.io/provider",
    "operator": "Equal",
    "value": "runpod",
    "effect": "NoSchedule",
}


def plugin_default(key: str, seconds: int = 300) -> dict[str, Any]:
    """What the apiserver's DefaultTolerationSeconds plugin adds before any webhook runs."""
    return {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}


def ours(key: str, seconds: int | None = 86400) -> dict[str, Any]:
    toleration: dict[str, Any] = {"key": key, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        toleration["tolerationSeconds"] = seconds
    return toleration


def tolerations_after(
    tolerations: list[dict[str, Any]] | None, seconds: int | None, *, apiserver_default: int = 300
) -> list[dict[str, Any]]:
    pod: dict[str, Any] = {"spec": {} if tolerations is None else {"tolerations": tolerations}}
    outage = OutageTolerations(seconds=seconds, apiserver_default_seconds=apiserver_default)
    patched = apply_patch(pod, outage_toleration_patch(pod["spec"].get("tolerations"), outage))
    return list(patched["spec"].get("tolerations", []))


def test_the_default_grace_is_one_day() -> None:
    assert DEFAULT_OUTAGE_TOLERATION_SECONDS == 86400


def test_the_clusters_300_second_defaults_are_raised_in_place() -> None:
    before = [PROVIDER, plugin_default(NOT_READY), plugin_default(UNREACHABLE)]

    assert tolerations_after(before, 86400) == [PROVIDER, ours(NOT_READY), ours(UNREACHABLE)]


def test_unlimited_means_tolerations_without_seconds() -> None:
    before = [PROVIDER, plugin_default(NOT_READY), plugin_default(UNREACHABLE)]

    assert tolerations_after(before, None) == [PROVIDER, ours(NOT_READY, None), ours(UNREACHABLE, None)]


def test_without_the_plugins_defaults_both_tolerations_are_appended() -> None:
    assert tolerations_after([PROVIDER], 3600) == [PROVIDER, ours(NOT_READY, 3600), ours(UNREACHABLE, 3600)]


def test_a_pod_without_any_tolerations_gets_the_list() -> None:
    assert tolerations_after(None, 3600) == [ours(NOT_READY, 3600), ours(UNREACHABLE, 3600)]


def test_a_grace_equal_to_the_clusters_default_changes_nothing() -> None:
    before = [PROVIDER, plugin_default(NOT_READY), plugin_default(UNREACHABLE)]

    assert outage_toleration_patch(before, OutageTolerations(seconds=300)) == []


def test_an_apiserver_with_other_defaults_has_its_tolerations_replaced_when_told_its_value() -> None:
    before = [PROVIDER, plugin_default(NOT_READY, 30), plugin_default(UNREACHABLE, 30)]

    assert tolerations_after(before, 86400, apiserver_default=30) == [
        PROVIDER,
        ours(NOT_READY),
        ours(UNREACHABLE),
    ]
    # Not told, they look like a pod's own 30 s choice, and are kept.
    assert tolerations_after(before, 86400) == before


@pytest.mark.parametrize(
    "own",
    [
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
        {"key": NOT_READY, "operator": "Exists"},
        {"key": NOT_READY, "effect": "NoExecute", "tolerationSeconds": 600},
    ],
    ids=["shorter grace", "forever", "every effect", "Equal with no value"],
)
def test_a_toleration_the_user_set_for_a_key_is_kept_and_the_other_key_still_gets_ours(
    own: dict[str, Any],
) -> None:
    before = [PROVIDER, own, plugin_default(UNREACHABLE)]

    assert tolerations_after(before, 86400) == [PROVIDER, own, ours(UNREACHABLE)]


def test_a_wildcard_toleration_tolerates_both_taints_so_nothing_is_added() -> None:
    before = [{"operator": "Exists"}]

    assert outage_toleration_patch(before, OutageTolerations(seconds=86400)) == []


def test_a_user_toleration_ahead_of_the_default_decides_and_the_default_behind_it_stays() -> None:
    # The taint manager uses the first toleration that matches each taint.
    mine = {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
    before = [mine, plugin_default(NOT_READY), plugin_default(UNREACHABLE)]

    assert tolerations_after(before, 86400) == [mine, plugin_default(NOT_READY), ours(UNREACHABLE)]


def test_no_schedule_tolerations_do_not_count_and_none_is_ever_added() -> None:
    # New pods must keep waiting Pending while the node is NotReady (its NoSchedule taint).
    no_schedule = {"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}

    after = tolerations_after([PROVIDER, no_schedule], 86400)

    assert after == [PROVIDER, no_schedule, ours(NOT_READY), ours(UNREACHABLE)]
    assert [t for t in after if t.get("key") == NOT_READY and t.get("effect") != "NoExecute"] == [no_schedule]


def _mutated(pod: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    verdict = mutate(
        parse_review(review_bytes(pod)),
        catalog=sample_catalog(),
        policy=NodePolicy(max_gpu_price=2.0),
        jobs=None,
        **kwargs,
    )
    assert verdict.allowed, verdict.message
    return apply_patch(pod, list(verdict.patch))


def test_a_planned_pod_leaves_mutate_with_the_outage_tolerations_of_the_setting() -> None:
    pod = gpu_pod()
    pod["spec"]["tolerations"] += [plugin_default(NOT_READY), plugin_default(UNREACHABLE)]

    default = _mutated(pod)["spec"]["tolerations"]
    unlimited = _mutated(pod, outage=OutageTolerations(seconds=None))["spec"]["tolerations"]

    assert default[1:] == [ours(NOT_READY), ours(UNREACHABLE)]
    assert unlimited[1:] == [ours(NOT_READY, None), ours(UNREACHABLE, None)]


def test_pods_not_aimed_at_the_node_and_refused_pods_get_no_tolerations() -> None:
    unrelated = gpu_pod(aimed=False)
    refused = gpu_pod(annotations={"runpod.io/gpu-memory": "80"})
    policy = NodePolicy(max_gpu_price=2.0)

    for pod in (unrelated, refused):
        verdict = mutate(parse_review(review_bytes(pod)), catalog=sample_catalog(), policy=policy, jobs=None)
        assert not [op for op in verdict.patch if op["path"].startswith("/spec/tolerations")]


@pytest.mark.parametrize(
    ("flag", "seconds"), [("3600", 3600), ("0", 0), ("unlimited", None), ("Unlimited", None)]
)
def test_the_setting_takes_seconds_or_unlimited(flag: str, seconds: int | None) -> None:
    settings = load_webhook_settings(
        ["--tls-cert-file=c", "--tls-key-file=k", f"--outage-toleration-seconds={flag}"]
    )

    assert settings.outage_toleration_seconds == seconds


def test_the_apiserver_default_is_300_unless_set() -> None:
    base = ["--tls-cert-file=c", "--tls-key-file=k"]

    assert load_webhook_settings(base).outage_tolerations() == OutageTolerations(86400, 300)
    told = load_webhook_settings([*base, "--apiserver-default-toleration-seconds=30"])
    assert told.outage_tolerations() == OutageTolerations(86400, 30)


@pytest.mark.parametrize("flag", ["-1", "forever"])
def test_a_negative_or_unknown_setting_is_refused(flag: str) -> None:
    with pytest.raises(ValidationError):
        load_webhook_settings(
            ["--tls-cert-file=c", "--tls-key-file=k", f"--outage-toleration-seconds={flag}"]
        )
