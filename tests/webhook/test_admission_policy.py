"""The ValidatingAdmissionPolicy as rendered: in step with the contract and the webhooks' scope.

What each rule admits and refuses is asserted through the real kube-apiserver in
`test_admission_policy_cluster.py`; here, without a cluster, that the policy's key lists and
value formats are the ones `contract.plan` writes and reads.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from contract.annotations import STATE_KEYS
from contract.plan import (
    PLAN_VERSION,
    REQUIRED_PLAN_KEYS,
    Candidate,
    Plan,
    PlanError,
    Port,
    plan_from_annotations,
    plan_to_annotations,
)
from webhook.admission_policy import render_admission_policy
from webhook.configurations import render_webhook_configurations

BINDER = "system:serviceaccount:runpod:rk-runpod-kubelet-binder"


def _policy(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    policy, binding = render_admission_policy(
        name="rk", service_namespace="runpod", state_writers=[BINDER], **kwargs
    )
    return policy, binding


def _variable(policy: dict[str, Any], name: str) -> str:
    (expression,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == name]
    return str(expression)


def _quoted(expression: str) -> list[str]:
    return re.findall(r"'([^']*)'", expression)


def _plan(**overrides: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "candidates": (Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.88),),
        "gpu_count": 2,
        "cloud": "COMMUNITY",
        "datacenter_ids": ("EU-RO-1",),
        "ports": (Port(number=8888, protocol="http"), Port(number=22, protocol="tcp")),
        "container_disk_gb": 2000,
        "max_gpu_price": 0.45,
        "catalog_revision": "3f2a9c1b7d00",
    }
    fields.update(overrides)
    return plan_to_annotations(Plan(**fields))


def _formats(policy: dict[str, Any]) -> dict[str, str]:
    return dict(re.findall(r"'([^']+)': r'([^']+)'", _variable(policy, "planFormats")))


def test_the_policy_knows_every_binder_state_key_and_the_binder_as_the_only_writer() -> None:
    policy, _ = _policy()

    assert _quoted(_variable(policy, "stateKeys")) == list(STATE_KEYS)
    assert _quoted(_variable(policy, "stateWriters")) == [BINDER]


def test_without_a_state_writer_nobody_could_record_state_so_it_is_refused() -> None:
    with pytest.raises(ValueError, match="state_writers"):
        render_admission_policy(name="rk", service_namespace="runpod", state_writers=[])


def _cpu_plan(**overrides: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "compute_type": "CPU",
        "candidates": (
            Candidate(cpu_type_id="cpu3c", vcpu_count=4, datacenter_id="EU-RO-1", usd_per_hour=0.12),
            Candidate(cpu_type_id="cpu5c", vcpu_count=32, usd_per_hour=1.12),
        ),
        "gpu_count": 0,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1",),
        "container_disk_gb": 20,
        "max_vcpu_price": 0.05,
        "catalog_revision": "3f2a9c1b7d00",
    }
    fields.update(overrides)
    return plan_to_annotations(Plan(**fields))


def _required_lists(policy: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The CPU and the GPU key lists of `missingPlanKeys`, in that order."""
    cpu, gpu = _variable(policy, "missingPlanKeys").split("]")[:2]
    return _quoted(cpu.partition("?")[2]), _quoted(gpu)


@pytest.mark.parametrize(
    ("compute", "plan"),
    [
        ("GPU", lambda: _plan(registry_auth_id="clx1", template_id="tpl")),
        ("GPU", lambda: _plan(min_cuda_version="12.4")),
        ("CPU", lambda: _cpu_plan(registry_auth_id="clx1", template_id="tpl")),
    ],
    ids=["gpu version 1", "gpu version 2 (CUDA)", "cpu version 2"],
)
def test_the_required_plan_keys_are_exactly_those_the_plan_parser_cannot_do_without(
    compute: str, plan: Any
) -> None:
    policy, _ = _policy()
    annotations = plan()
    required = list(REQUIRED_PLAN_KEYS[compute])  # type: ignore[index]
    if annotations[PLAN_VERSION] == "2":
        required.append("plan.runpod.io/compute-type")
    optional = [k for k in annotations if k not in required and k != PLAN_VERSION]

    cpu_list, gpu_list = _required_lists(policy)
    assert (cpu_list, gpu_list) == (list(REQUIRED_PLAN_KEYS["CPU"]), list(REQUIRED_PLAN_KEYS["GPU"]))
    assert "'plan.runpod.io/compute-type'" in _variable(policy, "missingPlanKeys")  # for version 2
    for key in required:
        with pytest.raises(PlanError):
            plan_from_annotations({k: v for k, v in annotations.items() if k != key})
    for key in optional:
        if key in ("plan.runpod.io/min-cuda-version",):
            continue  # optional to the parser, but dropping it leaves a version 2 GPU plan
        plan_from_annotations({k: v for k, v in annotations.items() if k != key})


def test_a_cpu_plan_is_version_2_with_no_gpu_keys_and_a_gpu_plan_without_cuda_stays_version_1() -> None:
    cpu = _cpu_plan()
    assert cpu[PLAN_VERSION] == "2" and cpu["plan.runpod.io/compute-type"] == "CPU"
    assert "plan.runpod.io/gpu-count" not in cpu and "plan.runpod.io/max-gpu-price" not in cpu
    assert '"cpu":"cpu3c","vcpus":4' in cpu["plan.runpod.io/candidates"]
    gpu = _plan()
    assert gpu[PLAN_VERSION] == "1" and "plan.runpod.io/compute-type" not in gpu
    assert _plan(cuda_versions=("12.4", "12.8"))[PLAN_VERSION] == "2"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"gpu_count": 1, "cloud": "SECURE", "ports": (), "container_disk_gb": 1, "max_gpu_price": 2},
        {"max_gpu_price": 0.0001, "container_disk_gb": 999},
        {"candidates": tuple(Candidate(gpu=f"G{i}", usdPerHour=i) for i in range(5))},
    ],
)
def test_every_plan_the_webhook_writes_has_the_formats_the_policy_checks(overrides: dict[str, Any]) -> None:
    policy, _ = _policy()

    for plan in (
        _plan(**overrides),
        _cpu_plan(),
        _plan(min_cuda_version="12.10"),
        _plan(cuda_versions=("12.4", "13.0")),
    ):
        checked = [key for key in _formats(policy) if key in plan]
        assert set(checked) >= set(plan) - {PLAN_VERSION, "plan.runpod.io/datacenter-ids", "plan.runpod.io/catalog-revision",
                                           "plan.runpod.io/container-registry-auth-id", "plan.runpod.io/template-id",
                                           "plan.runpod.io/drop-containers"}  # fmt: skip
        for key in checked:
            assert re.fullmatch(_formats(policy)[key], plan[key]), (key, plan[key])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plan.runpod.io/gpu-count", "0"),
        ("plan.runpod.io/gpu-count", "two"),
        ("plan.runpod.io/cloud", "secure"),
        ("plan.runpod.io/container-disk-gb", "2001"),
        ("plan.runpod.io/container-disk-gb", "0"),
        ("plan.runpod.io/max-gpu-price", "0"),
        ("plan.runpod.io/max-gpu-price", "cheap"),
        ("plan.runpod.io/ports", "8888/udp"),
        ("plan.runpod.io/candidates", "[]"),
        ("plan.runpod.io/candidates", "NVIDIA A40"),
        ("plan.runpod.io/min-cuda-version", "12"),
        ("plan.runpod.io/min-cuda-version", "v12.4"),
        ("plan.runpod.io/cuda-versions", "12.4,,12.8"),
        ("plan.runpod.io/cuda-versions", "12.x"),
    ],
)
def test_values_the_plan_parser_refuses_do_not_have_the_policys_format(key: str, value: str) -> None:
    policy, _ = _policy()

    base = _plan(min_cuda_version="12.4") if "cuda" in key else _plan()
    if key == "plan.runpod.io/cuda-versions":
        base = _plan(cuda_versions=("12.4",))
    with pytest.raises(PlanError):
        plan_from_annotations({**base, key: value})
    assert not re.fullmatch(_formats(policy)[key], value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plan.runpod.io/compute-type", "cpu"),
        ("plan.runpod.io/compute-type", "TPU"),
        ("plan.runpod.io/max-vcpu-price", "0"),
        ("plan.runpod.io/max-vcpu-price", "free"),
    ],
)
def test_cpu_plan_values_the_parser_refuses_do_not_have_the_policys_format(key: str, value: str) -> None:
    policy, _ = _policy()

    with pytest.raises(PlanError):
        plan_from_annotations({**_cpu_plan(), key: value})
    assert not re.fullmatch(_formats(policy)[key], value)


def test_the_policy_is_scoped_exactly_like_the_webhooks() -> None:
    scope: dict[str, Any] = {
        "node_name": "gpu-cloud",
        "excluded_namespaces": ["monitoring"],
        "namespace_labels": {"team": "ml"},
    }
    policy, binding = _policy(**scope)
    mutating, _ = render_webhook_configurations(
        name="rk", service_name="rk-webhook", service_namespace="runpod", **scope
    )
    (webhook,) = mutating["webhooks"]

    assert policy["spec"]["matchConditions"] == webhook["matchConditions"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == webhook["namespaceSelector"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["pods"], ["CREATE", "UPDATE"])
