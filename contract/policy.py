"""The virtual node's identity and the node-level policy both processes enforce.

The webhook enforces the policy when it resolves a plan; the binder re-checks the same policy
before it spends money (defence in depth), so both must read it from the same flags.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_NODE_NAME: Final = "virtual-runpod"
DEFAULT_NAMESPACE: Final = "kube-system"
DEFAULT_MAX_GPU_PRICE: Final = 0.5
# USD per vCPU-hour for CPU pods: above every RunPod CPU flavour's list price (about 0.03-0.08).
DEFAULT_MAX_VCPU_PRICE: Final = 0.1

TAINT_KEY: Final = "virtual-kubelet.io/provider"
TAINT_VALUE: Final = "runpod"
TAINT_EFFECT: Final = "NoSchedule"
NODE_TYPE_LABEL: Final = "type"
NODE_TYPE_VALUE: Final = "virtual-kubelet"
GPU_RESOURCE: Final = "nvidia.com/gpu"
CATALOG_CONFIGMAP: Final = "runpod-catalog"
CATALOG_CONFIGMAP_KEY: Final = "catalog.json"

Cloud = Literal["SECURE", "COMMUNITY"]
CLOUDS: Final[tuple[Cloud, ...]] = ("SECURE", "COMMUNITY")
DEFAULT_CLOUD: Final[Cloud] = "SECURE"
# What a pod buys on RunPod: GPUs (`gpu` in the create body) or vCPUs of a CPU flavour (`cpu`).
ComputeType = Literal["GPU", "CPU"]
COMPUTE_TYPES: Final[tuple[ComputeType, ...]] = ("GPU", "CPU")
# RunPod sells CPU pods in the SECURE cloud only (its CPU catalog prices no other).
CPU_CLOUD: Final[Cloud] = "SECURE"

DEFAULT_REQUIRED_GPU_MEMORY_GB: Final = 16
DEFAULT_CONTAINER_DISK_GB: Final = 50
DEFAULT_MAX_CANDIDATES: Final = 5


class NodePolicy(BaseModel):
    """What every pod on this node must respect, whatever its annotations say."""

    model_config = ConfigDict(frozen=True)

    node_name: str = DEFAULT_NODE_NAME
    # None = no node-level restriction: pods may name any data center.
    allowed_datacenter_ids: tuple[str, ...] | None = None
    # USD per GPU-hour; a pod's own cap may only be lower.
    max_gpu_price: float = Field(default=DEFAULT_MAX_GPU_PRICE, gt=0)
    # USD per vCPU-hour of a CPU pod; a pod's own cap may only be lower.
    max_vcpu_price: float = Field(default=DEFAULT_MAX_VCPU_PRICE, gt=0)
    # How many (GPU type, data center) candidates the plan carries.
    max_candidates: int = Field(default=DEFAULT_MAX_CANDIDATES, ge=1, le=50)
    # What a pod without an nvidia.com/gpu limit (and no `runpod.io/compute-type`) buys: a
    # RunPod CPU pod, or, as before CPU pods existed, one GPU.
    default_compute_type: ComputeType = "CPU"

    def allows_datacenter(self, datacenter_id: str) -> bool:
        return self.allowed_datacenter_ids is None or datacenter_id in self.allowed_datacenter_ids

    def max_unit_price(self, compute: ComputeType) -> float:
        """The node cap per unit a pod buys: per GPU-hour, or per vCPU-hour for a CPU pod."""
        return self.max_vcpu_price if compute == "CPU" else self.max_gpu_price


def parse_id_list(raw: str | None) -> tuple[str, ...]:
    """`"A, B,,A"` -> `("A", "B")`: trimmed, empties dropped, first occurrence kept."""
    if not raw:
        return ()
    seen: dict[str, None] = {}
    for part in raw.split(","):
        item = part.strip()
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def pod_targets_node(pod: dict[str, object], node_name: str = DEFAULT_NODE_NAME) -> bool:
    """Is this pod (a Kubernetes Pod as a dict) aimed at the virtual node?

    True when it tolerates the node's taint, selects the node by name or by the
    `type=virtual-kubelet` label, or is already bound to it. Mirrors the webhook
    configurations' matchConditions so the code re-checks what the apiserver filtered.
    """
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return False
    if spec.get("nodeName") == node_name:
        return True
    selector = spec.get("nodeSelector")
    if isinstance(selector, dict) and (
        selector.get(NODE_TYPE_LABEL) == NODE_TYPE_VALUE
        or selector.get("kubernetes.io/hostname") == node_name
    ):
        return True
    tolerations = spec.get("tolerations")
    if isinstance(tolerations, list):
        for tol in tolerations:
            if isinstance(tol, dict) and tol.get("key") == TAINT_KEY:
                return True
    return False
