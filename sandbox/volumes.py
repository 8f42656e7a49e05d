"""Network volumes (`/v2/network-volumes`) and the same-data-center rule of `mounts.network`.

A volume lives in one data center (immutable), is 10..4096 GB and only grows: a PATCH with a
smaller size is a 400, as RunPod documents. It can be created only where the catalog lists
network-volume types for the data center (the requested `type`, else the data center's first).
A pod create with `mounts.network` must name an existing volume (404 otherwise); the pod is
placed in the volume's data center, and a `dataCenterIds` list that leaves it out is refused
(400): RunPod mounts a network volume only into pods of its own data center.

Not owned here: placement of GPUs (`catalog`), the pod state machine (`account`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sandbox.catalog import Inventory
from sandbox.problems import ApiError
from sandbox.validation import validate_body

__all__ = ["VolumeBook"]

VOLUME_NOT_FOUND: Final = "network volume not found"
_ALPHABET: Final = string.ascii_lowercase + string.digits


@dataclass
class Volume:
    id: str
    name: str
    size: int
    data_center: str
    type: str

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "dataCenter": self.data_center,
            "type": self.type,
        }


class VolumeBook:
    def __init__(self, *, rng: random.Random, inventory: Inventory) -> None:
        self._rng = rng
        self._inventory = inventory
        self.volumes: dict[str, Volume] = {}

    def create(self, body: object) -> dict[str, Any]:
        validate_body("CreateNetworkVolumeRequest", body)
        if not isinstance(body, dict):
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        dc = self._inventory.dcs.get(body["dataCenter"])
        if dc is None:
            raise ApiError(400, f"unknown data center id {body['dataCenter']!r}")
        if not dc.network_volume_types:
            raise ApiError(400, f"network volumes are not available in {dc.id}")
        kind = body.get("type") or dc.network_volume_types[0]
        if kind not in dc.network_volume_types:
            raise ApiError(400, f"{kind} network volumes are not available in {dc.id}")
        volume = Volume(self._new_id(), body["name"], body["size"], dc.id, kind)
        self.volumes[volume.id] = volume
        return volume.render()

    def listing(self) -> list[dict[str, Any]]:
        return [v.render() for v in self.volumes.values()]

    def get(self, volume_id: str) -> dict[str, Any]:
        return self._find(volume_id).render()

    def update(self, volume_id: str, body: object) -> dict[str, Any]:
        volume = self._find(volume_id)
        validate_body("UpdateNetworkVolumeRequest", body)
        if not isinstance(body, dict):
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        if "size" in body and body["size"] < volume.size:
            raise ApiError(400, f"network volume size can only grow: {body['size']} < {volume.size} GB")
        volume.size = body.get("size", volume.size)
        volume.name = body.get("name", volume.name)
        return volume.render()

    def delete(self, volume_id: str) -> None:
        self._find(volume_id)
        del self.volumes[volume_id]

    def _find(self, volume_id: str) -> Volume:
        found = self.volumes.get(volume_id)
        if found is None:
            raise ApiError(404, VOLUME_NOT_FOUND)
        return found

    def _new_id(self) -> str:
        while True:
            new = "".join(self._rng.choice(_ALPHABET) for _ in range(10))
            if new not in self.volumes:
                return new

    def placement(self, body: Mapping[str, Any], dc_ids: Sequence[str]) -> list[str]:
        """The data centers a create may place its pod in, given its network mount (if any)."""
        network = (body.get("mounts") or {}).get("network") or []
        if not network:
            return list(dc_ids)
        volume = self._find(network[0]["volumeId"])
        if dc_ids and volume.data_center not in dc_ids:
            raise ApiError(
                400,
                f"network volume {volume.id} is in {volume.data_center}, not in the requested data centers "
                f"{', '.join(dc_ids)}: a pod mounts only network volumes of its own data center",
            )
        return [volume.data_center]

    def state(self, used_by: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        return [v.render() | {"usedBy": used_by.get(v.id, [])} for v in self.volumes.values()]
