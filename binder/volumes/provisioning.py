"""The network-volume provisioner's decisions: which claims to provision, where, the PV, what to
delete or grow. Pure: no I/O, no clock.

- A claim is ours when the PV controller assigned it to our provisioner (its StorageClass's
  `provisioner`); it is provisioned while Pending without a volume, once.
- The RunPod volume is named after the claim's UID (`volume_name`), so a crash between its
  create and the PV's finds it again in the next list instead of making a second one.
- Its data center: the claim's `runpod.io/datacenter-id`, else the class's `dataCenterId`, else
  the best data center that offers network volumes (of the class's `volumeType`), is allowed on
  the node and has the most GPU stock in the published catalog (ties by id). A fixed one outside
  the node's allowed data centers is refused.
- The PV (`build_pv`): CSI source with driver = provisioner and volumeHandle = the volume id, the
  data center as an annotation and a volume attribute, capacity the volume's size in GB, the
  class's reclaim policy, pre-bound to the claim (`claimRef`), node affinity to the virtual node,
  and our finalizer (the volume is deleted before the PV object goes, for `Delete`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.catalog import AVAILABILITY_RANK, Catalog
from contract.policy import NodePolicy
from contract.volumes import (
    CLAIM_DATACENTER_ANNOTATION,
    DATACENTER_ANNOTATION,
    FINALIZER,
    MAX_GB,
    PARAM_DATACENTER,
    PARAM_VOLUME_TYPE,
    PARAMETERS,
    PROVISIONED_BY,
    PROVISIONER,
    VOLUME_ATTRIBUTE_DATACENTER,
    VOLUME_TYPES,
    size_gb,
)

__all__ = ["ClaimPlan", "build_pv", "choose_datacenter", "pv_name", "requested_gb", "volume_name"]


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """What to create for a claim: a volume of `size_gb` in `datacenter_id`, or `problem`."""

    size_gb: int = 0
    datacenter_id: str | None = None
    volume_type: str | None = None
    problem: str | None = None


def volume_name(cluster_id: str, claim_uid: str) -> str:
    return f"rpvk-{hashlib.sha256(cluster_id.encode()).hexdigest()[:16]}-pvc-{claim_uid}"


def pv_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"


def requested_gb(claim: Mapping[str, Any]) -> int | None:
    return size_gb((((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))


def choose_datacenter(
    claim: Mapping[str, Any],
    storage_class: Mapping[str, Any],
    *,
    policy: NodePolicy,
    offering: Sequence[str] | None,
    catalog: Catalog | None,
) -> ClaimPlan:
    """`offering`: data centers offering network volumes of the class's type (None: unknown yet;
    only needed when neither the claim nor the class fixes one)."""
    parameters = dict(storage_class.get("parameters") or {})
    unknown = sorted(set(parameters) - PARAMETERS)
    if unknown:
        return ClaimPlan(
            problem=f"StorageClass parameters {', '.join(unknown)} are not known; allowed: {', '.join(sorted(PARAMETERS))}"
        )
    volume_type = parameters.get(PARAM_VOLUME_TYPE) or None
    if volume_type is not None and volume_type not in VOLUME_TYPES:
        return ClaimPlan(problem=f"volumeType {volume_type!r}; allowed: {', '.join(VOLUME_TYPES)}")
    size = requested_gb(claim)
    if size is None:
        return ClaimPlan(problem="the claim requests no readable storage size")
    if size > MAX_GB:
        return ClaimPlan(problem=f"{size} GB is above RunPod's largest network volume, {MAX_GB} GB")
    fixed = ((claim.get("metadata") or {}).get("annotations") or {}).get(
        CLAIM_DATACENTER_ANNOTATION
    ) or parameters.get(PARAM_DATACENTER)
    if fixed:
        if not policy.allows_datacenter(fixed):
            return ClaimPlan(problem=f"data center {fixed} is not allowed on node {policy.node_name}")
        return ClaimPlan(size_gb=size, datacenter_id=fixed, volume_type=volume_type)
    if offering is None:
        return ClaimPlan(size_gb=size, volume_type=volume_type)
    allowed = [dc for dc in offering if policy.allows_datacenter(dc)]
    if not allowed:
        return ClaimPlan(problem=f"no data center allowed on node {policy.node_name} offers network volumes")

    def stock(dc: str) -> int:
        if catalog is None:
            return 0
        return sum(AVAILABILITY_RANK.get(g.stock_in("SECURE").get(dc, "NONE"), 0) for g in catalog.gpu_types)

    best = sorted(allowed, key=lambda dc: (-stock(dc), dc))[0]
    return ClaimPlan(size_gb=size, datacenter_id=best, volume_type=volume_type)


def build_pv(
    *,
    claim: Mapping[str, Any],
    storage_class: Mapping[str, Any],
    volume_id: str,
    datacenter_id: str,
    size: int,
    node_name: str,
) -> dict[str, Any]:
    metadata = claim.get("metadata") or {}
    spec = claim.get("spec") or {}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name(str(metadata.get("uid"))),
            "annotations": {PROVISIONED_BY: PROVISIONER, DATACENTER_ANNOTATION: datacenter_id},
            "finalizers": [FINALIZER],
        },
        "spec": {
            "capacity": {"storage": f"{size}G"},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteMany"]),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": (storage_class.get("metadata") or {}).get("name"),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": metadata.get("namespace"),
                "name": metadata.get("name"),
                "uid": metadata.get("uid"),
            },
            "csi": {
                "driver": PROVISIONER,
                "volumeHandle": volume_id,
                "volumeAttributes": {VOLUME_ATTRIBUTE_DATACENTER: datacenter_id},
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def capacity_gb(pv: Mapping[str, Any]) -> int | None:
    return size_gb(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))
