"""The Mutating- and ValidatingWebhookConfiguration the webhook is installed with (canonical shape).

The Helm chart (`charts/runpod-kubelet/templates/webhook-configurations.yaml`) renders the same
objects; the cluster tests install these, so what is tested is what ships. Keep both in step.

Scope, so that a webhook outage can never block the rest of the cluster:
- `matchConditions` (CEL) admit only pods aimed at the virtual node: tolerating its taint key,
  selecting it by `type=virtual-kubelet` or hostname, or naming it (mirrors
  `contract.policy.pod_targets_node`, which the code re-checks);
- `namespaceSelector` skips the webhook's own namespace and kube-system (no self-hosting
  deadlock), plus any extra names; `namespace_labels` narrows further (tests use it so a shared
  control plane sends only their namespaces);
- mutate on CREATE only; validate on CREATE only by default, `pods` only (subresources such as
  `pods/status` are not matched, so status writes never call us). UPDATEs are guarded inside
  the apiserver by the ValidatingAdmissionPolicy (`admission_policy`), so a webhook outage never
  blocks the binder's state writes, a user's `kubectl label` or the Job controller;
  `validate_updates=True` (chart: `webhook.validateUpdates`) sends UPDATEs to `/validate` as well,
  for clusters that want the webhook's own check too, at the price of that coupling.

`caBundle` is set only when given: in the chart `runpod-kubelet certs` patches it in.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from contract.policy import DEFAULT_NODE_NAME, NODE_TYPE_LABEL, NODE_TYPE_VALUE, TAINT_KEY

MUTATING_WEBHOOK_NAME: Final = "mutate.runpod-kubelet.io"
VALIDATING_WEBHOOK_NAME: Final = "validate.runpod-kubelet.io"
MATCH_CONDITION_NAME: Final = "targets-virtual-node"

FailurePolicy = Literal["Fail", "Ignore"]


def targets_node_expression(node_name: str = DEFAULT_NODE_NAME) -> str:
    """CEL: is `object` (a Pod) aimed at the virtual node?"""
    return (
        f"(has(object.spec.tolerations) && object.spec.tolerations.exists(t, has(t.key) && t.key == '{TAINT_KEY}')) ||\n"
        f"(has(object.spec.nodeSelector) && (('{NODE_TYPE_LABEL}' in object.spec.nodeSelector && "
        f"object.spec.nodeSelector['{NODE_TYPE_LABEL}'] == '{NODE_TYPE_VALUE}') || "
        f"('kubernetes.io/hostname' in object.spec.nodeSelector && "
        f"object.spec.nodeSelector['kubernetes.io/hostname'] == '{node_name}'))) ||\n"
        f"(has(object.spec.nodeName) && object.spec.nodeName == '{node_name}')"
    )


def namespace_selector(
    *,
    service_namespace: str,
    excluded_namespaces: Sequence[str] = (),
    namespace_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Namespaces the guard applies to: all but the webhook's own, kube-system and `excluded`;
    only those carrying every label of `namespace_labels` when given."""
    excluded = list(dict.fromkeys([service_namespace, "kube-system", *excluded_namespaces]))
    selector: dict[str, Any] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}]
    }
    if namespace_labels:
        selector["matchLabels"] = dict(namespace_labels)
    return selector


def render_webhook_configurations(
    *,
    name: str,
    service_name: str,
    service_namespace: str,
    service_port: int = 443,
    node_name: str = DEFAULT_NODE_NAME,
    excluded_namespaces: Sequence[str] = (),
    namespace_labels: Mapping[str, str] | None = None,
    failure_policy: FailurePolicy = "Fail",
    timeout_seconds: int = 10,
    ca_bundle: bytes | None = None,
    validate_updates: bool = False,
) -> list[dict[str, Any]]:
    """[MutatingWebhookConfiguration, ValidatingWebhookConfiguration], both called `name`."""
    selector = namespace_selector(
        service_namespace=service_namespace,
        excluded_namespaces=excluded_namespaces,
        namespace_labels=namespace_labels,
    )

    def webhook(webhook_name: str, path: str, operations: list[str]) -> dict[str, Any]:
        client: dict[str, Any] = {
            "service": {
                "name": service_name,
                "namespace": service_namespace,
                "port": service_port,
                "path": path,
            }
        }
        if ca_bundle is not None:
            client["caBundle"] = base64.b64encode(ca_bundle).decode()
        return {
            "name": webhook_name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "timeoutSeconds": timeout_seconds,
            "matchPolicy": "Equivalent",
            "clientConfig": client,
            "rules": [
                {
                    "operations": operations,
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": selector,
            "matchConditions": [
                {"name": MATCH_CONDITION_NAME, "expression": targets_node_expression(node_name)}
            ],
        }

    mutating = webhook(MUTATING_WEBHOOK_NAME, "/mutate", ["CREATE"])
    # The plan is written once; a second call after other webhooks mutate would only re-plan.
    mutating["reinvocationPolicy"] = "Never"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [mutating],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                webhook(
                    VALIDATING_WEBHOOK_NAME,
                    "/validate",
                    ["CREATE", "UPDATE"] if validate_updates else ["CREATE"],
                )
            ],
        },
    ]
