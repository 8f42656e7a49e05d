"""The virtual node's object and conditions, as pure functions (no cluster, no RunPod)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binder.node import (
    HEALTHY,
    adoption_patch,
    build_node,
    build_node_status,
    classify_probe,
    next_conditions,
)
from binder.settings import BinderSettings
from runpod_api.errors import (
    RunPodAuthError,
    RunPodForbidden,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
)

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def _settings(**overrides: object) -> BinderSettings:
    values: dict[str, object] = {"runpod_api_key": "rp_key_abcdef", "node_name": "virtual-runpod"}
    values.update(overrides)
    return BinderSettings.model_validate(values)


def _by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conditions}


def test_node_carries_the_labels_taint_and_provider_id_the_scheduler_and_autoscaler_rely_on() -> None:
    node = build_node(settings=_settings(node_name="gpu-a"), cluster_id="c0ffee")
    labels = node["metadata"]["labels"]
    assert labels["type"] == "virtual-kubelet"
    assert labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64"
    assert labels["kubernetes.io/hostname"] == "gpu-a"
    assert "node.kubernetes.io/exclude-from-external-load-balancers" in labels
    assert node["spec"]["taints"] == [
        {"key": "virtual-kubelet.io/provider", "value": "runpod", "effect": "NoSchedule"}
    ]
    assert node["spec"]["providerID"] == "runpod://c0ffee/gpu-a"


def test_status_advertises_capacity_address_and_kubelet_endpoint_from_settings() -> None:
    # The CPU budget is the node's cpu capacity, as the GPU budget is its nvidia.com/gpu.
    settings = _settings(gpu_budget=8, cpu_budget=500, memory_capacity="2Ti", pods_capacity=300,
                         node_address="10.0.0.7", kubelet_port=10443)  # fmt: skip
    status = build_node_status(settings=settings, conditions=[])
    expected = {"nvidia.com/gpu": "8", "cpu": "500", "memory": "2Ti", "pods": "300"}
    assert status["capacity"] == expected
    assert status["allocatable"] == expected
    assert {"type": "InternalIP", "address": "10.0.0.7"} in status["addresses"]
    assert {"type": "Hostname", "address": "virtual-runpod"} in status["addresses"]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10443}}
    assert status["nodeInfo"]["operatingSystem"] == "linux"


def test_all_five_conditions_are_reported_and_ready_follows_runpod_health() -> None:
    conditions = _by_type(next_conditions(previous=[], health=HEALTHY, now=T0))
    assert set(conditions) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"}
    assert conditions["Ready"]["status"] == "True"
    assert all(c["status"] == "False" for t, c in conditions.items() if t != "Ready")
    unhealthy = classify_probe(RunPodAuthError("bad key", status=401))
    ready = _by_type(next_conditions(previous=[], health=unhealthy, now=T0))["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "RunPodUnauthorized"
    assert ready["message"] == "RunPod rejected the API key (401)"


def test_transition_time_moves_only_when_the_status_really_changes() -> None:
    first = next_conditions(previous=[], health=HEALTHY, now=T0)
    later = T0 + timedelta(seconds=10)
    second = _by_type(next_conditions(previous=first, health=HEALTHY, now=later))
    assert second["Ready"]["lastTransitionTime"] == "2026-11-27T10:00:00Z"
    assert second["Ready"]["lastHeartbeatTime"] == "2026-11-27T10:00:10Z"

    broken = classify_probe(RunPodTimeout("timed out", status=None))
    third = next_conditions(previous=list(second.values()), health=broken, now=T0 + timedelta(seconds=20))
    assert _by_type(third)["Ready"]["lastTransitionTime"] == "2026-11-27T10:00:20Z"
    # The pressure conditions did not change, so their transition time stays.
    assert _by_type(third)["DiskPressure"]["lastTransitionTime"] == "2026-11-27T10:00:00Z"


@pytest.mark.parametrize(
    ("error", "ok", "reason"),
    [
        (None, True, "KubeletReady"),
        (RunPodAuthError("expired", status=401), False, "RunPodUnauthorized"),
        (RunPodForbidden("access denied"), False, "RunPodForbidden"),
        (RunPodServerError("bad gateway", status=502), False, "RunPodUnreachable"),
        (RunPodTimeout("connect timeout", status=None), False, "RunPodUnreachable"),
        (TimeoutError(), False, "RunPodUnreachable"),
        (RunPodRateLimited("slow down", retry_after=3.0), True, "KubeletReady"),
    ],
)
def test_probe_outcomes_map_to_honest_readiness(error: BaseException | None, ok: bool, reason: str) -> None:
    health = classify_probe(error)
    assert (health.ok, health.reason) == (ok, reason)


def test_readiness_message_says_what_runpod_answered_in_one_short_line() -> None:
    health = classify_probe(RunPodServerError("upstream\n" + "x" * 1000, status=503))
    assert health.message.startswith("RunPod answered 503: upstream x")
    assert "\n" not in health.message
    assert len(health.message) < 260


def test_adopting_an_existing_node_adds_ours_and_keeps_what_an_operator_set() -> None:
    desired = build_node(settings=_settings(), cluster_id="c1")
    existing = {
        "metadata": {"name": "virtual-runpod", "labels": {"team": "ml", "type": "virtual-kubelet"}},
        "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
    }
    patch = adoption_patch(existing=existing, desired=desired)
    assert patch is not None
    assert "team" not in patch["metadata"]["labels"]  # untouched, merge patch keeps it
    assert patch["metadata"]["labels"]["kubernetes.io/role"] == "agent"
    assert patch["spec"]["taints"] == [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "virtual-kubelet.io/provider", "value": "runpod", "effect": "NoSchedule"},
    ]
    assert patch["spec"]["providerID"] == "runpod://c1/virtual-runpod"


def test_adopting_a_node_that_is_already_ours_changes_nothing() -> None:
    desired = build_node(settings=_settings(), cluster_id="c1")
    assert adoption_patch(existing=desired, desired=desired) is None
