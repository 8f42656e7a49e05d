"""Which RunPod network volume a pod mounts, and where: `mounts.network` of its create. Pure.

A pod volume `persistentVolumeClaim: {claimName}` whose claim is Bound to a PV of ours
(`contract.volumes.network_volume_of`) becomes `{volumeId, path}` with the running container's
`volumeMount.mountPath`. The binder re-checks what admission checked before it spends money: a
claim that is missing or not bound, a PV whose data center is unknown yet, or a second network
volume make the pod wait with the reason (RunPod takes one network volume per pod). Claims of
other storage are not mounted (admission warned about them). A network volume the running
container does not mount is not attached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.volumes import network_volume_of

__all__ = ["NetworkMountPlan", "claim_refs", "plan_network_mount"]


@dataclass(frozen=True, slots=True)
class NetworkMountPlan:
    volume_id: str
    datacenter_id: str
    path: str
    claim: str


def claim_refs(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(pod volume name, claim name) of every persistentVolumeClaim volume, in order."""
    refs: list[tuple[str, str]] = []
    for volume in spec.get("volumes") or []:
        claim = (
            (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if isinstance(volume, Mapping)
            else None
        )
        if isinstance(claim, str) and claim:
            refs.append((str(volume.get("name") or ""), claim))
    return refs


def _mount_path(container: Mapping[str, Any], volume_name: str) -> str | None:
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, Mapping) and mount.get("name") == volume_name and mount.get("mountPath"):
            return str(mount["mountPath"])
    return None


def plan_network_mount(
    *,
    spec: Mapping[str, Any],
    container: Mapping[str, Any],
    claims: Mapping[str, Mapping[str, Any] | None],
    volumes: Mapping[str, Mapping[str, Any] | None],
) -> tuple[NetworkMountPlan | None, str | None]:
    """(the mount, why the pod must wait instead). `claims` by claim name, `volumes` (PVs) by
    name, each None when it does not exist."""
    found: list[NetworkMountPlan] = []
    for volume_name, claim_name in claim_refs(spec):
        claim = claims.get(claim_name)
        if claim is None:
            return None, f'persistentvolumeclaim "{claim_name}" not found'
        pv_name = (claim.get("spec") or {}).get("volumeName")
        if (claim.get("status") or {}).get("phase") != "Bound" or not pv_name:
            return None, f'persistentvolumeclaim "{claim_name}" is not bound yet'
        pv = volumes.get(str(pv_name))
        ref = network_volume_of(pv) if pv is not None else None
        if ref is None:
            continue  # other storage: not mounted on RunPod
        if ref.datacenter_id is None:
            return None, f"the data center of network volume {ref.volume_id} (PV {pv_name}) is not known yet"
        path = _mount_path(container, volume_name)
        if path is not None:
            found.append(NetworkMountPlan(ref.volume_id, ref.datacenter_id, path, claim_name))
    if len({m.volume_id for m in found}) > 1:
        return None, "a RunPod pod mounts at most one network volume; this pod mounts " + ", ".join(
            f"{m.claim} ({m.volume_id})" for m in found
        )
    return (found[0] if found else None), None
