"""A pod's volumes at admission: its network volume pins the plan, emptyDir sizes the disk. Pure.

- `persistentVolumeClaim` of a network volume (a claim Bound to a PV of ours, see
  `contract.volumes`): the pod's data centers narrow to the volume's. Refused with a clear
  message: a claim the webhook does not know, one of ours not bound yet, a volume whose data
  center is not known yet or outside the node's allowed data centers (or the pod's own list),
  and a second network volume (RunPod mounts one per pod).
- `emptyDir`: a directory on RunPod's container disk; its `sizeLimit` is added to the disk.
- anything else (configMap, secret, hostPath, other claims, ...): not mounted on RunPod, one
  admission warning each, as before (`containers.volume_warnings`).

Claims and PVs come from the webhook's watch caches (`caches.VolumeIndex`), so nothing blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from contract.policy import NodePolicy
from contract.quantities import parse_memory
from contract.volumes import PROVISIONER, STORAGE_CLASS, claim_provisioner, network_volume_of
from webhook.containers import volume_warnings
from webhook.problems import FORBIDDEN, INVALID, UNAVAILABLE, Denial, name_items

__all__ = ["PodVolumes", "VolumeLookups", "pin_datacenters", "read_volumes"]

# (namespace, claim name) -> the claim; PV name -> the PV; None when not (yet) in the cache.
ClaimLookup = Callable[[str, str], Mapping[str, Any] | None]
PvLookup = Callable[[str], Mapping[str, Any] | None]
_GB: Final = 1e9


@dataclass(frozen=True)
class VolumeLookups:
    claims: ClaimLookup
    volumes: PvLookup


@dataclass(frozen=True, slots=True)
class PodVolumes:
    datacenter_id: str | None = None  # the network volume's: the plan is pinned to it
    volume_id: str | None = None
    disk_gb: int = 0  # emptyDir sizeLimits, added to the container disk
    warnings: tuple[str, ...] = ()


def read_volumes(
    spec: Mapping[str, Any], *, namespace: str, lookups: VolumeLookups | None, policy: NodePolicy
) -> PodVolumes:
    volumes = [v for v in spec.get("volumes") or [] if isinstance(v, Mapping)]
    others: list[Mapping[str, Any]] = []
    found: list[tuple[str, str, str | None]] = []  # (claim, volume id, data center)
    disk_bytes = 0.0
    for volume in volumes:
        if "emptyDir" in volume:
            disk_bytes += parse_memory((volume.get("emptyDir") or {}).get("sizeLimit")) or 0.0
            continue
        claim_name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if lookups is None or not isinstance(claim_name, str):
            others.append(volume)
            continue
        ref = _network_volume(claim_name, namespace=namespace, lookups=lookups)
        if ref is None:
            others.append(volume)
        else:
            found.append((claim_name, *ref))
    if len(found) > 1:
        raise Denial(
            "spec.volumes: a RunPod pod mounts at most one network volume, and this pod mounts "
            + name_items([f"{c} ({v})" for c, v, _ in found])
            + "; put the data on one volume, or use a pod per volume",
            code=INVALID,
        )
    pinned = found[0] if found else None
    if pinned is not None:
        claim, volume_id, dc = pinned
        if dc is None:
            raise Denial(
                f"persistentvolumeclaim {claim}: the data center of network volume {volume_id} is not known yet "
                "(the binder records it once it looked the volume up); retry in a moment",
                code=UNAVAILABLE,
            )
        if not policy.allows_datacenter(dc):
            raise Denial(
                f"persistentvolumeclaim {claim}: network volume {volume_id} is in {dc}, which node "
                f"{policy.node_name} does not allow (allowed: {name_items(policy.allowed_datacenter_ids or ())}); "
                "a pod runs in its network volume's data center",
                code=FORBIDDEN,
            )
    return PodVolumes(
        datacenter_id=pinned[2] if pinned else None,
        volume_id=pinned[1] if pinned else None,
        disk_gb=math.ceil(disk_bytes / _GB - 1e-9) if disk_bytes else 0,
        warnings=volume_warnings({"volumes": others}),
    )


def _network_volume(
    claim_name: str, *, namespace: str, lookups: VolumeLookups
) -> tuple[str, str | None] | None:
    """(volume id, data center) when the claim is a network volume of ours; None for other
    storage; a Denial when it is ours but not usable yet, or unknown."""
    claim = lookups.claims(namespace, claim_name)
    if claim is None:
        raise Denial(
            f'spec.volumes: persistentvolumeclaim "{claim_name}" not found; create it (storageClassName: '
            f"{STORAGE_CLASS} for a RunPod network volume) before the pod",
            code=UNAVAILABLE,
        )
    spec = claim.get("spec") or {}
    pv_name = spec.get("volumeName")
    bound = (claim.get("status") or {}).get("phase") == "Bound"
    pv = lookups.volumes(str(pv_name)) if pv_name else None
    ref = network_volume_of(pv) if pv is not None else None
    if ref is not None and bound:
        return ref.volume_id, ref.datacenter_id
    ours = (
        ref is not None
        or claim_provisioner(claim) == PROVISIONER
        or spec.get("storageClassName") == STORAGE_CLASS
    )
    if ours:
        raise Denial(
            f"persistentvolumeclaim {claim_name} is not bound yet: the binder provisions it as a RunPod network "
            "volume; create the pod once `kubectl get pvc` shows it Bound",
            code=UNAVAILABLE,
        )
    return None


def pin_datacenters(datacenters: Sequence[str] | None, volumes: PodVolumes) -> tuple[str, ...] | None:
    """The pod's effective data centers narrowed to its network volume's (unchanged without one)."""
    pin = volumes.datacenter_id
    if pin is None:
        return tuple(datacenters) if datacenters is not None else None
    if datacenters is not None and pin not in datacenters:
        raise Denial(
            f"runpod.io/datacenter-ids: network volume {volumes.volume_id} is in {pin}, not among the pod's "
            f"data centers {name_items(tuple(datacenters))}; a pod runs in its network volume's data center",
            code=FORBIDDEN,
        )
    return (pin,)
