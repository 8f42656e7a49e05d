"""Network volumes as PersistentVolumes: the vocabulary the binder's provisioner writes and the
webhook and binder read. Pure: no I/O.

    StorageClass runpod-network-volume     provisioner network-volume.runpod-kubelet.io
      parameters: dataCenterId (fixes the data center), volumeType (STANDARD | HIGH_PERFORMANCE),
                  nodeName (only that virtual node's binder provisions it; default: any)
    PVC annotation runpod.io/datacenter-id fixes the data center of one claim (wins)
    PV  spec.csi.driver = the provisioner, spec.csi.volumeHandle = the RunPod volume id,
        annotation runpod.io/network-volume-datacenter = its data center (the binder writes it,
        also on static PVs made by hand for existing volumes, once it looked the volume up)

The provisioner name doubles as the CSI driver name, which the apiserver wants to be a DNS
subdomain (no "/"), hence `network-volume.runpod-kubelet.io`. Nothing runs a CSI driver: the
binder is the node's kubelet and hands the volume to RunPod as `mounts.network`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from contract.quantities import parse_memory

__all__ = [
    "DATACENTER_ANNOTATION",
    "PROVISIONER",
    "STORAGE_CLASS",
    "NetworkVolumeRef",
    "claim_provisioner",
    "network_volume_of",
    "render_storage_class",
    "size_gb",
]

PROVISIONER: Final = "network-volume.runpod-kubelet.io"
STORAGE_CLASS: Final = "runpod-network-volume"
PARAM_DATACENTER: Final = "dataCenterId"
PARAM_VOLUME_TYPE: Final = "volumeType"
# With several virtual nodes (binders) in one cluster: the node whose binder provisions the class.
PARAM_NODE_NAME: Final = "nodeName"
PARAMETERS: Final = frozenset({PARAM_DATACENTER, PARAM_VOLUME_TYPE, PARAM_NODE_NAME})
VOLUME_TYPES: Final = ("STANDARD", "HIGH_PERFORMANCE")
CLAIM_DATACENTER_ANNOTATION: Final = "runpod.io/datacenter-id"
DATACENTER_ANNOTATION: Final = "runpod.io/network-volume-datacenter"
VOLUME_ATTRIBUTE_DATACENTER: Final = "dataCenterId"
FINALIZER: Final = "runpod-kubelet.io/network-volume"
PROVISIONED_BY: Final = "pv.kubernetes.io/provisioned-by"
_PROVISIONER_ANNOTATIONS: Final = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
# RunPod's bounds of a network volume, GB.
MIN_GB: Final = 10
MAX_GB: Final = 4096


@dataclass(frozen=True, slots=True)
class NetworkVolumeRef:
    """A RunPod network volume a PV stands for; `datacenter_id` None = not looked up yet."""

    volume_id: str
    datacenter_id: str | None
    pv_name: str


def network_volume_of(pv: Mapping[str, Any]) -> NetworkVolumeRef | None:
    """The network volume behind a PV of ours (by its CSI driver), else None."""
    csi = (pv.get("spec") or {}).get("csi") or {}
    if csi.get("driver") != PROVISIONER or not csi.get("volumeHandle"):
        return None
    metadata = pv.get("metadata") or {}
    dc = (metadata.get("annotations") or {}).get(DATACENTER_ANNOTATION) or (
        csi.get("volumeAttributes") or {}
    ).get(VOLUME_ATTRIBUTE_DATACENTER)
    return NetworkVolumeRef(str(csi["volumeHandle"]), str(dc) if dc else None, str(metadata.get("name", "")))


def claim_provisioner(pvc: Mapping[str, Any]) -> str | None:
    """The provisioner the PV controller assigned the claim to (its class's), if any."""
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    for key in _PROVISIONER_ANNOTATIONS:
        if annotations.get(key):
            return str(annotations[key])
    return None


def size_gb(quantity: Any) -> int | None:
    """A storage request in whole GB (10^9 bytes, rounded up, at least RunPod's 10); None if
    unreadable."""
    value = parse_memory(quantity)
    if value is None:
        return None
    return max(MIN_GB, math.ceil(value / 1e9 - 1e-9))


def render_storage_class(
    *, name: str = STORAGE_CLASS, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The StorageClass the chart installs (the chart renders the same object)."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": metadata,
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }
