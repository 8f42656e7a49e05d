"""The ValidatingAdmissionPolicy and its binding that guard the plan inside the apiserver.

Canonical shape: the chart (`charts/runpod-kubelet/templates/admission-policy.yaml`) renders the
same two objects (tests/chart compares them), the cluster tests and `runpod-kubelet demo` apply
these. CEL runs in-process in kube-apiserver: no network hop, nothing that can be down, so the
binder's state writes and every other update of a pod on the node never wait on the webhook.

Rules, each a validation with a message naming the annotation and what is allowed:
- CREATE of a pod aimed at the node: `plan.runpod.io/version` is a known format version (1: a
  GPU plan; 2: names its `plan.runpod.io/compute-type`, GPU or CPU); every plan key required for
  what it buys (`contract.plan.REQUIRED_PLAN_KEYS`: a CPU plan has `max-vcpu-price` and no
  `gpu-count`) is present and non-empty; the values CEL can check have the plan's format; no
  binder state key is set (a copied manifest must not adopt another pod's RunPod machine).
- UPDATE: `plan.runpod.io/*` and every `runpod.io/*` key that is not binder state are unchanged
  (added, removed or edited alike); binder state keys (`contract.annotations.STATE_KEYS`) change
  only in requests of one of the `state_writers` usernames: the binder's identity (in the chart
  its ServiceAccount, `system:serviceaccount:<release namespace>:<fullname>-binder`).

What stays with the webhook: the plan's candidates against node policy (price caps, data
centers, GPU count), since CEL cannot read the candidates' JSON; `/validate` keeps that check
on CREATE. The binder re-checks node policy before it spends money either way.

Scope is the webhooks' (`configurations`): the same matchCondition on `object` (a pod cannot
stop being aimed at the node by an update: tolerations only grow, `nodeSelector` and `nodeName`
are fixed) and the same namespace selector, in the binding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from contract.annotations import INPUT_PREFIX, PLAN_PREFIX, STATE_KEYS
from contract.plan import (
    PLAN_CANDIDATES,
    PLAN_CLOUD,
    PLAN_COMPUTE_TYPE,
    PLAN_CUDA_VERSIONS,
    PLAN_DISK,
    PLAN_FORMAT_VERSION,
    PLAN_FORMAT_VERSIONS,
    PLAN_GPU_COUNT,
    PLAN_MAX_GPU_PRICE,
    PLAN_MAX_VCPU_PRICE,
    PLAN_MIN_CUDA_VERSION,
    PLAN_PORTS,
    PLAN_VERSION,
    REQUIRED_PLAN_KEYS,
)
from contract.policy import DEFAULT_NODE_NAME
from webhook.configurations import (
    MATCH_CONDITION_NAME,
    MUTATING_WEBHOOK_NAME,
    namespace_selector,
    targets_node_expression,
)
from webhook.problems import FROZEN_AFTER_CREATE, STATE_ON_NEW_POD

__all__ = ["render_admission_policy"]

# The shape of each value `plan_to_annotations` writes, as far as a regular expression can say.
_PRICE: Final = r"^([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$"
_CUDA: Final = r"[0-9]+\.[0-9]+"
_PLAN_FORMATS: Final = {
    PLAN_COMPUTE_TYPE: r"^(GPU|CPU)$",
    PLAN_CANDIDATES: r"^\[\{.*\}\]$",
    PLAN_GPU_COUNT: r"^[1-9][0-9]{0,3}$",
    PLAN_MIN_CUDA_VERSION: f"^{_CUDA}$",
    PLAN_CUDA_VERSIONS: f"^{_CUDA}(,{_CUDA})*$",
    PLAN_CLOUD: r"^(SECURE|COMMUNITY)$",
    PLAN_DISK: r"^([1-9][0-9]{0,2}|1[0-9]{3}|2000)$",
    PLAN_MAX_GPU_PRICE: _PRICE,
    PLAN_MAX_VCPU_PRICE: _PRICE,
    PLAN_PORTS: r"^([0-9]{1,5}/(http|tcp)(,[0-9]{1,5}/(http|tcp))*)?$",
}


def _list(items: Sequence[str], *, one_a_line: bool = True) -> str:
    """A CEL list of string literals; one a line by default (the chart shows the same text)."""
    quoted = [f"'{item}'" for item in items]
    return "[\n  " + ",\n  ".join(quoted) + "\n]" if one_a_line else "[" + ", ".join(quoted) + "]"


def _string(text: str) -> str:
    """A CEL string literal (double-quoted; JSON's escapes are CEL's)."""
    return json.dumps(text)


def _variables(state_writers: Sequence[str]) -> list[dict[str, str]]:
    formats = ",\n  ".join(f"'{key}': r'{pattern}'" for key, pattern in _PLAN_FORMATS.items())
    frozen = (
        f"(k.startsWith('{PLAN_PREFIX}') || (k.startsWith('{INPUT_PREFIX}') && !(k in variables.stateKeys)))"
    )
    return [
        {
            "name": "annotations",
            "expression": "has(object.metadata.annotations) ? object.metadata.annotations : {}",
        },
        {
            "name": "oldAnnotations",
            "expression": "oldObject != null && has(oldObject.metadata.annotations) ? "
            "oldObject.metadata.annotations : {}",
        },
        {"name": "stateKeys", "expression": _list(STATE_KEYS)},
        {"name": "stateWriters", "expression": _list(state_writers, one_a_line=False)},
        {
            "name": "planVersion",
            "expression": f"'{PLAN_VERSION}' in variables.annotations ? "
            f"variables.annotations['{PLAN_VERSION}'] : ''",
        },
        {
            "name": "planCompute",
            "expression": f"'{PLAN_COMPUTE_TYPE}' in variables.annotations ? "
            f"variables.annotations['{PLAN_COMPUTE_TYPE}'] : 'GPU'",
        },
        {
            "name": "missingPlanKeys",
            # What the plan buys decides its keys; a version 2 plan also names what it buys.
            "expression": f"((variables.planCompute == 'CPU' ? {_list(REQUIRED_PLAN_KEYS['CPU'])} :\n"
            f"{_list(REQUIRED_PLAN_KEYS['GPU'])}) +\n"
            f"(variables.planVersion == '{PLAN_FORMAT_VERSION}' ? ['{PLAN_COMPUTE_TYPE}'] : []))\n"
            ".filter(k, !(k in variables.annotations) || variables.annotations[k] == '')",
        },
        {"name": "planFormats", "expression": "{\n  " + formats + "\n}"},
        {
            "name": "malformedPlanKeys",
            # A list, not the map's keys: lists keep their order, so the message does too.
            "expression": _list(tuple(_PLAN_FORMATS)) + "\n"
            ".filter(k, k in variables.annotations && !variables.annotations[k].matches(variables.planFormats[k]))",
        },
        {
            "name": "presentStateKeys",
            "expression": "variables.stateKeys.filter(k, k in variables.annotations)",
        },
        {
            "name": "changedFrozenKeys",
            "expression": "(variables.annotations.map(k, k) + "
            "variables.oldAnnotations.filter(k, !(k in variables.annotations)))\n"
            f".filter(k, {frozen} &&\n"
            "  (!(k in variables.annotations) || !(k in variables.oldAnnotations) ||"
            " variables.annotations[k] != variables.oldAnnotations[k]))",
        },
        {
            "name": "changedStateKeys",
            "expression": "variables.stateKeys.filter(k, (k in variables.annotations) != (k in variables.oldAnnotations) ||\n"
            "  (k in variables.annotations && variables.annotations[k] != variables.oldAnnotations[k]))",
        },
    ]


def _concat(*parts: str) -> str:
    """A CEL string concatenation, one operand a line; plain `str` parts become literals."""
    return " +\n".join(parts)


def _validations() -> list[dict[str, str]]:
    # In this order: the apiserver reports the first that fails.
    replan = "recreate the pod so the webhook plans it again"
    creating, updating = "request.operation != 'CREATE' || ", "request.operation != 'UPDATE' || "
    versions = _list(PLAN_FORMAT_VERSIONS, one_a_line=False)
    expected = " or ".join(PLAN_FORMAT_VERSIONS)
    planned = f"!(variables.planVersion in {versions}) || "
    no_plan = (
        f"{PLAN_VERSION} missing: the pod has no plan; the mutating webhook {MUTATING_WEBHOOK_NAME} "
        f"writes {PLAN_PREFIX}* (is its configuration installed?)"
    )
    return [
        {
            "expression": f"{creating}variables.planVersion in {versions}",
            "reason": "Forbidden",
            "message": f"{PLAN_VERSION} missing or not {expected}: the pod has no plan",
            "messageExpression": f"variables.planVersion == '' ? {_string(no_plan)} :\n"
            + _concat(
                _string(f"{PLAN_VERSION}="),
                "variables.planVersion",
                _string(f" not supported; expected {expected}: {replan}"),
            ),
        },
        {
            "expression": f"{creating}{planned}variables.missingPlanKeys.size() == 0",
            "reason": "Forbidden",
            "message": f"incomplete plan: a required {PLAN_PREFIX}* key is missing; {replan}",
            "messageExpression": _concat(
                _string("incomplete plan: "),
                "variables.missingPlanKeys.join(', ')",
                _string(f" missing; {replan}"),
            ),
        },
        {
            "expression": f"{creating}{planned}variables.malformedPlanKeys.size() == 0",
            "reason": "Forbidden",
            "message": f"malformed plan: a {PLAN_PREFIX}* value is not in the format the webhook writes; {replan}",
            "messageExpression": _concat(
                _string("malformed plan: "),
                "variables.malformedPlanKeys.join(', ')",
                _string(f" not in the format the webhook writes; {replan}"),
            ),
        },
        {
            "expression": f"{creating}variables.presentStateKeys.size() == 0",
            "reason": "Forbidden",
            "message": f"binder state annotations are {STATE_ON_NEW_POD}",
            "messageExpression": _concat(
                "variables.presentStateKeys.join(', ')", _string(f": {STATE_ON_NEW_POD}")
            ),
        },
        {
            "expression": f"{updating}variables.changedFrozenKeys.size() == 0",
            "reason": "Forbidden",
            "message": f"{PLAN_PREFIX}* and {INPUT_PREFIX}* input annotations {FROZEN_AFTER_CREATE}",
            "messageExpression": _concat(
                "variables.changedFrozenKeys.join(', ')", _string(f": {FROZEN_AFTER_CREATE}")
            ),
        },
        {
            "expression": f"{updating}request.userInfo.username in variables.stateWriters ||\n"
            "  variables.changedStateKeys.size() == 0",
            "reason": "Forbidden",
            "message": "binder state annotations are written only by the binder",
            "messageExpression": _concat(
                "variables.changedStateKeys.join(', ')",
                _string(": written only by the binder ("),
                "variables.stateWriters.join(', ')",
                _string("), not by "),
                "request.userInfo.username",
                _string("; they record what the binder did on RunPod"),
            ),
        },
    ]


def render_admission_policy(
    *,
    name: str,
    service_namespace: str,
    state_writers: Sequence[str],
    node_name: str = DEFAULT_NODE_NAME,
    excluded_namespaces: Sequence[str] = (),
    namespace_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """[ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding], both called `name`.

    `state_writers`: the usernames allowed to change binder state annotations (the binder's);
    the namespace arguments are `configurations.render_webhook_configurations`'s.
    """
    if not state_writers:
        raise ValueError("state_writers must name the binder's identity (else nobody could record state)")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
            },
            "matchConditions": [
                {"name": MATCH_CONDITION_NAME, "expression": targets_node_expression(node_name)}
            ],
            "variables": _variables(state_writers),
            "validations": _validations(),
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": namespace_selector(
                    service_namespace=service_namespace,
                    excluded_namespaces=excluded_namespaces,
                    namespace_labels=namespace_labels,
                )
            },
        },
    }
    return [policy, binding]
