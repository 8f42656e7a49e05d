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
    PLAN_KEYS,
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


def test_the_required_plan_keys_are_exactly_those_the_plan_parser_cannot_do_without() -> None:
    policy, _ = _policy()
    plan = _plan(registry_auth_id="clx1", template_id="tpl")
    optional = [k for k in PLAN_KEYS if k not in REQUIRED_PLAN_KEYS and k != PLAN_VERSION]

    assert _quoted(_variable(policy, "missingPlanKeys").split("]")[0]) == list(REQUIRED_PLAN_KEYS)
    for key in REQUIRED_PLAN_KEYS:
        with pytest.raises(PlanError):
            plan_from_annotations({k: v for k, v in plan.items() if k != key})
    for key in optional:
        plan_from_annotations({k: v for k, v in plan.items() if k != key})


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
    plan = _plan(**overrides)

    for key, pattern in _formats(policy).items():
        assert re.fullmatch(pattern, plan[key]), (key, plan[key])


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
    ],
)
def test_values_the_plan_parser_refuses_do_not_have_the_policys_format(key: str, value: str) -> None:
    policy, _ = _policy()

    with pytest.raises(PlanError):
        plan_from_annotations({**_plan(), key: value})
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
