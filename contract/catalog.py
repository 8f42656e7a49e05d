"""The GPU catalog: what the binder publishes to ConfigMap `runpod-catalog`, what the webhook reads.

Shape follows RunPod's own `GET /v2/catalog/gpus?include=AVAILABILITY&product=POD` answer, one
answer per cloud (availability differs by cloud), normalised into `Catalog`:

    {"version": 1, "revision": "<12 hex>", "fetchedAt": "2026-11-27T10:00:00Z",
     "gpuTypes": [{"id": "NVIDIA A40", "name": "A40", "memoryGb": 48, "manufacturer": "NVIDIA",
                   "price": {"SECURE": 0.44, "COMMUNITY": null},
                   "stock": {"SECURE": {"EU-RO-1": "HIGH"}, "COMMUNITY": {}}}],
     "dataCenters": [{"id": "EU-RO-1", "name": "EU Romania 1", "region": "EUROPE"}]}

`price` is USD per single GPU-hour (null = not offered in that cloud); `stock` maps data center
id -> availability band, only bands above NONE. RunPod's catalog is a hint, not a reservation:
the binder still walks the candidates when a create meets no capacity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.policy import CLOUDS, Cloud

CATALOG_FORMAT_VERSION: Final = 1

Availability = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
# Higher = more stock. Used to order candidates of equal price.
AVAILABILITY_RANK: Final[Mapping[str, int]] = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class GpuTypeEntry(_Model):
    id: str
    name: str
    memory_gb: int = Field(alias="memoryGb", ge=0)
    manufacturer: str = "UNKNOWN"
    price: dict[Cloud, float | None]
    stock: dict[Cloud, dict[str, Availability]] = Field(default_factory=dict)

    def price_in(self, cloud: Cloud) -> float | None:
        value = self.price.get(cloud)
        return value if value is not None and value > 0 else None

    def stock_in(self, cloud: Cloud) -> Mapping[str, Availability]:
        return {dc: band for dc, band in self.stock.get(cloud, {}).items() if band != "NONE"}


class DataCenterEntry(_Model):
    id: str
    name: str = ""
    region: str = "UNKNOWN"
    # Pods with an NVIDIA GPU here may join RunPod's global network (a private address).
    global_network: bool = Field(default=False, alias="globalNetwork")


class Catalog(_Model):
    version: int = CATALOG_FORMAT_VERSION
    revision: str
    fetched_at: datetime | None = Field(default=None, alias="fetchedAt")
    gpu_types: tuple[GpuTypeEntry, ...] = Field(alias="gpuTypes")
    data_centers: tuple[DataCenterEntry, ...] = Field(default=(), alias="dataCenters")

    # Lookups by id, built once per catalog: the resolver asks for every (GPU, data center)
    # pair on each admission.
    @cached_property
    def _gpus_by_id(self) -> Mapping[str, GpuTypeEntry]:
        return {gpu.id: gpu for gpu in self.gpu_types}

    @cached_property
    def _datacenters_by_id(self) -> Mapping[str, DataCenterEntry]:
        return {dc.id: dc for dc in self.data_centers}

    def datacenter(self, datacenter_id: str) -> DataCenterEntry | None:
        return self._datacenters_by_id.get(datacenter_id)

    def gpu(self, gpu_type_id: str) -> GpuTypeEntry | None:
        return self._gpus_by_id.get(gpu_type_id)

    def offers_global_network(self, gpu_type_id: str, datacenter_id: str | None) -> bool:
        """May a pod of this GPU type in this data center join RunPod's global network (and so
        get a private address)? Only NVIDIA GPUs, only where the data center has it."""
        gpu = self.gpu(gpu_type_id)
        dc = self.datacenter(datacenter_id) if datacenter_id else None
        return gpu is not None and gpu.manufacturer == "NVIDIA" and dc is not None and dc.global_network

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class CatalogError(ValueError):
    """A catalog document that cannot be read; the message says which part and why."""


def compute_revision(gpu_types: Sequence[GpuTypeEntry], data_centers: Sequence[DataCenterEntry]) -> str:
    """A content hash, so a plan can name the catalog it was resolved against."""
    canonical = json.dumps(
        {
            "gpuTypes": [g.model_dump(by_alias=True) for g in sorted(gpu_types, key=lambda g: g.id)],
            "dataCenters": [d.model_dump(by_alias=True) for d in sorted(data_centers, key=lambda d: d.id)],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def build_catalog(
    *,
    gpus_by_cloud: Mapping[Cloud, Mapping[str, Any]],
    datacenters: Mapping[str, Any] | None = None,
    fetched_at: datetime | None = None,
) -> Catalog:
    """Normalise RunPod answers (`{"gpus": [...]}` per cloud, `{"dataCenters": [...]}`) into a Catalog.

    Drops what RunPod's notes say to drop: the sentinel id `unknown` and GPU types with no
    positive price in any cloud.
    """
    merged: dict[str, dict[str, Any]] = {}
    for cloud, answer in gpus_by_cloud.items():
        if cloud not in CLOUDS:
            raise CatalogError(f"unknown cloud {cloud!r}; allowed: {', '.join(CLOUDS)}")
        gpus = answer.get("gpus") if isinstance(answer, Mapping) else None
        if not isinstance(gpus, list):
            raise CatalogError(f"catalog answer for {cloud} has no 'gpus' list")
        for raw in gpus:
            if not isinstance(raw, Mapping):
                continue
            gpu_id = raw.get("id")
            if not isinstance(gpu_id, str) or not gpu_id or gpu_id == "unknown":
                continue
            raw_price = raw.get("price")
            price: Mapping[str, Any] = raw_price if isinstance(raw_price, Mapping) else {}
            entry = merged.setdefault(
                gpu_id,
                {
                    "id": gpu_id,
                    "name": str(raw.get("name") or gpu_id),
                    "memoryGb": int(raw.get("memory") or 0),
                    "manufacturer": str(raw.get("manufacturer") or "UNKNOWN"),
                    "price": {
                        "SECURE": _positive(price.get("secure")) if raw.get("secure", True) else None,
                        "COMMUNITY": _positive(price.get("community"))
                        if raw.get("community", True)
                        else None,
                    },
                    "stock": {},
                },
            )
            stock: dict[str, str] = {}
            for dc in raw.get("dataCenters") or []:
                if isinstance(dc, Mapping) and isinstance(dc.get("id"), str):
                    band = dc.get("availability")
                    if isinstance(band, str) and band in AVAILABILITY_RANK and band != "NONE":
                        stock[str(dc["id"])] = band
            entry["stock"][cloud] = stock
    gpu_types = [
        GpuTypeEntry.model_validate(e) for e in merged.values() if any(p for p in e["price"].values())
    ]
    dcs: list[DataCenterEntry] = []
    if datacenters is not None:
        for raw in datacenters.get("dataCenters") or []:
            if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
                dcs.append(
                    DataCenterEntry(
                        id=raw["id"],
                        name=str(raw.get("name") or ""),
                        region=str(raw.get("region") or "UNKNOWN"),
                        globalNetwork=bool(raw.get("globalNetwork")),
                    )
                )
    gpu_types.sort(key=lambda g: g.id)
    dcs.sort(key=lambda d: d.id)
    return Catalog(
        revision=compute_revision(gpu_types, dcs),
        fetched_at=fetched_at,
        gpu_types=tuple(gpu_types),
        data_centers=tuple(dcs),
    )


def parse_catalog_document(text: str) -> Catalog:
    """Read a catalog from JSON text: our own format, or one raw RunPod catalog answer.

    A raw RunPod answer (`{"gpus": [...]}`, as `--catalog-file` accepts for development) carries
    the availability of a single cloud; it is applied to both clouds, each GPU type still
    offered only where its `secure`/`community` flags and prices say so.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"catalog is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(doc, dict):
        raise CatalogError("catalog must be a JSON object")
    if "gpuTypes" in doc:
        version = doc.get("version", CATALOG_FORMAT_VERSION)
        if version != CATALOG_FORMAT_VERSION:
            raise CatalogError(
                f"catalog format version {version!r} not supported; expected {CATALOG_FORMAT_VERSION}"
            )
        try:
            return Catalog.model_validate(doc)
        except ValueError as exc:
            raise CatalogError(f"catalog document invalid: {exc}") from exc
    if "gpus" in doc:
        return build_catalog(gpus_by_cloud={"SECURE": doc, "COMMUNITY": doc}, datacenters=None)
    raise CatalogError("catalog must have 'gpuTypes' (runpod-kubelet format) or 'gpus' (RunPod answer)")


def _positive(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
