"""The sandbox's GPU catalogue and stock: what exists, what it costs, where it is free right now.

Owns: loading the seed data (`data/catalog.json`), the mutable stock per (GPU type, data center,
cloud), availability bands, rendering `GET /v2/catalog/...` answers (including the 400/422 rules
of their query parameters) and placing a pod (`place`). It does not own pods or billing.

Placement follows RunPod v2: exactly `gpu.id` x `count` on one machine in one allowed data
center, no substitution. The catalogue is rendered from live stock, so a test that empties a
data center sees `NONE` in the next catalogue read (and a create racing that read gets a 400).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal

from sandbox.problems import ApiError
from sandbox.scenario import Bands, StockSetting

__all__ = [
    "CatalogQuery",
    "DataCenter",
    "GpuType",
    "Inventory",
    "Placement",
    "StockEntry",
    "band",
    "country_of",
    "load_inventory",
    "parse_catalog_query",
    "parse_datacenter_query",
]

Cloud = Literal["SECURE", "COMMUNITY"]
CLOUDS: Final[tuple[Cloud, ...]] = ("SECURE", "COMMUNITY")
PRODUCTS: Final = ("POD", "CLUSTER", "SERVERLESS")
REGIONS: Final = (
    "NORTH_AMERICA",
    "SOUTH_AMERICA",
    "EUROPE",
    "ASIA",
    "MIDDLE_EAST",
    "AFRICA",
    "OCEANIA",
    "ANTARCTICA",
    "UNKNOWN",
)
_CUDA: Final = re.compile(r"^\d+\.\d+$")
_CUDA_FLOOR: Final = re.compile(r"^\d+(\.\d+)?$")
_COUNTRY: Final = re.compile(r"^[A-Z]{2}$")
# Data-center id prefix -> ISO country (notes A.2); no country field exists in the API.
_COUNTRY_PREFIXES: Final = (
    ("US-", "US"),
    ("CA-", "CA"),
    ("EU-RO-", "RO"),
    ("EU-CZ-", "CZ"),
    ("EU-FR-", "FR"),
    ("EU-NL-", "NL"),
    ("EU-SE-", "SE"),
    ("EU-DK-", "DK"),
    ("EUR-IS-", "IS"),
    ("EUR-NO-", "NO"),
    ("OC-AU-", "AU"),
    ("AP-JP-", "JP"),
    ("AP-IN-", "IN"),
    ("SEA-SG-", "SG"),
)


@dataclass(frozen=True)
class GpuType:
    id: str
    name: str
    pool: str | None
    manufacturer: str
    memory: int
    secure: bool
    community: bool
    price: Mapping[Cloud, float]
    max_count: Mapping[Cloud, int]

    def offered_in(self, cloud: Cloud) -> bool:
        return self.secure if cloud == "SECURE" else self.community


@dataclass(frozen=True)
class DataCenter:
    id: str
    name: str
    region: str
    global_network: bool
    network_volume_types: tuple[str, ...]
    compliance: tuple[str, ...]


@dataclass
class StockEntry:
    gpu_id: str
    dc_id: str
    cloud: Cloud
    free: int
    cuda_version: str | None


@dataclass(frozen=True)
class Placement:
    dc_id: str
    cuda_version: str | None


@dataclass(frozen=True)
class CatalogQuery:
    """Parsed `GET /v2/catalog/gpus` parameters; `availability` False = plain listing."""

    availability: bool = False
    count: int = 1
    cloud: Cloud = "SECURE"
    countries: frozenset[str] | None = None
    cuda_versions: frozenset[str] | None = None
    min_cuda: tuple[int, int] | None = None


def country_of(dc_id: str) -> str | None:
    for prefix, country in _COUNTRY_PREFIXES:
        if dc_id.startswith(prefix):
            return country
    return None


def band(free: int, count: int, bands: Bands) -> str:
    """Availability band of `free` GPUs for pods of `count` GPUs."""
    units = free // max(count, 1)
    if units <= 0:
        return "NONE"
    if units <= bands.low:
        return "LOW"
    if units <= bands.medium:
        return "MEDIUM"
    return "HIGH"


def _cuda_key(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def cuda_matches(host: str | None, *, allowed: frozenset[str] | None, floor: tuple[int, int] | None) -> bool:
    """Whether a host's CUDA satisfies an exact set and/or a numeric floor (12.11 > 12.2)."""
    if allowed is None and floor is None:
        return True
    if host is None:
        return False
    if allowed is not None and host not in allowed:
        return False
    # A bare-major floor is stored with minor -1, so tuple order covers both forms.
    return floor is None or _cuda_key(host) >= floor


@dataclass
class Inventory:
    gpus: dict[str, GpuType]
    dcs: dict[str, DataCenter]
    stock: dict[tuple[str, str, Cloud], StockEntry] = field(default_factory=dict)
    bands: Bands = field(default_factory=Bands)

    # -- stock -------------------------------------------------------------------------------
    def set_stock(self, setting: StockSetting) -> None:
        """Set free GPUs at one (type, DC, cloud); unknown ids are an error, not a new type."""
        if setting.gpu_id not in self.gpus:
            raise ApiError(400, f"unknown GPU type {setting.gpu_id!r}")
        if setting.data_center_id not in self.dcs:
            raise ApiError(400, f"unknown data center {setting.data_center_id!r}")
        key = (setting.gpu_id, setting.data_center_id, setting.cloud)
        entry = self.stock.get(key)
        if entry is None:
            self.stock[key] = StockEntry(
                setting.gpu_id, setting.data_center_id, setting.cloud, setting.free, setting.cuda_version
            )
        else:
            entry.free = setting.free
            if setting.cuda_version is not None:
                entry.cuda_version = setting.cuda_version

    def entries_for(self, gpu_id: str, cloud: Cloud) -> list[StockEntry]:
        return [e for (g, _, c), e in self.stock.items() if g == gpu_id and c == cloud]

    def place(
        self,
        *,
        gpu_id: str,
        cloud: Cloud,
        count: int,
        dc_ids: Sequence[str],
        allowed_cuda: frozenset[str] | None = None,
        min_cuda: tuple[int, int] | None = None,
    ) -> Placement | None:
        """Reserve `count` GPUs in one allowed DC; None = no capacity. Pure over the stock table.

        Listed DCs are tried in the caller's order (they are preferences); with none listed,
        the DC with the most free GPUs wins (ties by id, so runs are reproducible).
        """
        gpu = self.gpus[gpu_id]
        if not gpu.offered_in(cloud) or count > gpu.max_count.get(cloud, 0):
            return None
        entries = [
            e
            for e in self.entries_for(gpu_id, cloud)
            if e.free >= count and cuda_matches(e.cuda_version, allowed=allowed_cuda, floor=min_cuda)
        ]
        if dc_ids:
            order = {dc: i for i, dc in enumerate(dc_ids)}
            entries = sorted((e for e in entries if e.dc_id in order), key=lambda e: order[e.dc_id])
        else:
            entries.sort(key=lambda e: (-e.free, e.dc_id))
        if not entries:
            return None
        chosen = entries[0]
        chosen.free -= count
        return Placement(chosen.dc_id, chosen.cuda_version)

    def reserve_at(self, *, gpu_id: str, cloud: Cloud, count: int, dc_id: str) -> bool:
        """Take `count` GPUs back at a known DC (a stopped pod restarting on its host)."""
        entry = self.stock.get((gpu_id, dc_id, cloud))
        if entry is None or entry.free < count:
            return False
        entry.free -= count
        return True

    def release(self, *, gpu_id: str, cloud: Cloud, count: int, dc_id: str) -> None:
        entry = self.stock.get((gpu_id, dc_id, cloud))
        if entry is not None:
            entry.free += count

    # -- rendering ---------------------------------------------------------------------------
    def render_gpu(self, gpu: GpuType, query: CatalogQuery, *, single: bool = False) -> dict[str, Any] | None:
        """One `GpuType` object; None when a country filter leaves nothing and this is the list.

        The single-type endpoint still answers (availability NONE) so 404 keeps meaning "no
        such type" (OpenAPI `countryCodes`).
        """
        doc: dict[str, Any] = {
            "id": gpu.id,
            "name": gpu.name,
            "pool": gpu.pool,
            "manufacturer": gpu.manufacturer,
            "memory": gpu.memory,
            "secure": gpu.secure,
            "community": gpu.community,
            "price": {"secure": gpu.price.get("SECURE", 0.0), "community": gpu.price.get("COMMUNITY", 0.0)},
            "maxCount": {
                "secure": gpu.max_count.get("SECURE", 0),
                "community": gpu.max_count.get("COMMUNITY", 0),
            },
        }
        if not query.availability:
            return doc
        entries = [
            e
            for e in self.entries_for(gpu.id, query.cloud)
            if query.countries is None or country_of(e.dc_id) in query.countries
        ]
        if query.countries is not None and not entries:
            if not single:
                return None
            doc["availability"] = "NONE"
            return doc
        too_big = query.count > gpu.max_count.get(query.cloud, 0) or not gpu.offered_in(query.cloud)
        by_dc: dict[str, int] = {}
        cudas: dict[str, bool] = {}
        for e in entries:
            fits = cuda_matches(e.cuda_version, allowed=query.cuda_versions, floor=query.min_cuda)
            if e.cuda_version is not None and fits:
                cudas[e.cuda_version] = cudas.get(e.cuda_version, False) or (
                    not too_big and e.free >= query.count
                )
            if fits and not too_big:
                by_dc[e.dc_id] = by_dc.get(e.dc_id, 0) + e.free
        dcs = [
            {"id": dc_id, "name": self.dcs[dc_id].name, "availability": band(free, query.count, self.bands)}
            for dc_id, free in sorted(by_dc.items())
        ]
        overall = max((d["availability"] for d in dcs), key=_BAND_RANK.__getitem__, default="NONE")
        doc["availability"] = overall
        if overall != "NONE":
            doc["dataCenters"] = dcs
        if cudas:
            doc["cudaVersions"] = [
                {"version": v, "available": ok}
                for v, ok in sorted(cudas.items(), key=lambda i: _cuda_key(i[0]))
            ]
        return doc

    def render_datacenter(self, dc: DataCenter, *, gpu_availability: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": dc.id,
            "name": dc.name,
            "region": dc.region,
            "globalNetwork": dc.global_network,
            "networkVolumeTypes": list(dc.network_volume_types),
            "compliance": list(dc.compliance),
        }
        if gpu_availability:
            # No count/cloud here (notes §6.2): 1-GPU pods, any cloud.
            free: dict[str, int] = {}
            for (gpu_id, dc_id, _), entry in self.stock.items():
                if dc_id == dc.id:
                    free[gpu_id] = free.get(gpu_id, 0) + entry.free
            if free:
                doc["gpuAvailability"] = [
                    {"id": g, "name": self.gpus[g].name, "availability": band(n, 1, self.bands)}
                    for g, n in sorted(free.items())
                ]
        return doc


_BAND_RANK: Final = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}


def load_inventory(doc: Mapping[str, Any] | None = None, *, bands: Bands | None = None) -> Inventory:
    """The seed catalogue (`data/catalog.json` unless `doc` is given)."""
    if doc is None:
        text = resources.files("sandbox").joinpath("data/catalog.json").read_text()
        doc = json.loads(text)
    gpus = {
        g["id"]: GpuType(
            id=g["id"],
            name=g["name"],
            pool=g.get("pool"),
            manufacturer=g["manufacturer"],
            memory=int(g["memory"]),
            secure=bool(g["secure"]),
            community=bool(g["community"]),
            price={"SECURE": float(g["price"]["secure"]), "COMMUNITY": float(g["price"]["community"])},
            max_count={"SECURE": int(g["maxCount"]["secure"]), "COMMUNITY": int(g["maxCount"]["community"])},
        )
        for g in doc["gpuTypes"]
    }
    dcs = {
        d["id"]: DataCenter(
            id=d["id"],
            name=d["name"],
            region=d["region"],
            global_network=bool(d["globalNetwork"]),
            network_volume_types=tuple(d["networkVolumeTypes"]),
            compliance=tuple(d["compliance"]),
        )
        for d in doc["dataCenters"]
    }
    inventory = Inventory(gpus=gpus, dcs=dcs, bands=bands or Bands())
    for raw in doc.get("stock", []):
        inventory.set_stock(StockSetting.model_validate(raw))
    return inventory


# -- query parameters ----------------------------------------------------------------------------
def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_catalog_query(params: Mapping[str, str]) -> CatalogQuery:
    """Apply RunPod's rules for `include`/`product`/`count`/`cloud`/filters (notes §6.1).

    Malformed values are 422 (schema); valid values in a forbidden combination are 400.
    """
    errors: list[str] = []
    include = _csv(params.get("include", "")) if "include" in params else None
    products = _csv(params.get("product", "")) if "product" in params else None
    if include is not None:
        errors += [
            f"query.include: value must be one of 'AVAILABILITY', got '{v}'"
            for v in include
            if v != "AVAILABILITY"
        ]
        if len(include) > 1:
            errors.append(f"query.include: maxItems: got {len(include)}, want 1")
    if products is not None:
        errors += [
            f"query.product: value must be one of 'POD', 'CLUSTER', 'SERVERLESS', got '{v}'"
            for v in products
            if v not in PRODUCTS
        ]
    count = 1
    if "count" in params:
        try:
            count = int(params["count"])
            if count < 1:
                errors.append("query.count: must be >= 1")
        except ValueError:
            errors.append(f"query.count: got string '{params['count']}', want integer")
    cloud = params.get("cloud", "SECURE")
    if cloud not in CLOUDS:
        errors.append(f"query.cloud: value must be one of 'SECURE', 'COMMUNITY', got '{cloud}'")
    countries = _csv(params["countryCodes"]) if "countryCodes" in params else None
    if countries is not None:
        errors += [
            f"query.countryCodes: '{c}' does not match pattern '^[A-Z]{{2}}$'"
            for c in countries
            if not _COUNTRY.match(c)
        ]
    cudas = _csv(params["cudaVersions"]) if "cudaVersions" in params else None
    if cudas is not None:
        errors += [
            f"query.cudaVersions: '{v}' does not match pattern '^\\d+\\.\\d+$'"
            for v in cudas
            if not _CUDA.match(v)
        ]
    min_cuda_raw = params.get("minCudaVersion")
    if min_cuda_raw is not None and not _CUDA_FLOOR.match(min_cuda_raw):
        errors.append(f"query.minCudaVersion: '{min_cuda_raw}' does not match pattern '^\\d+(\\.\\d+)?$'")
    if errors:
        raise ApiError(422, "Request validation failed.", errors=errors)
    wants = bool(include)
    if wants and not products:
        raise ApiError(400, "product is required when include=AVAILABILITY")
    if not wants:
        for name in ("product", "count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion"):
            if name in params:
                raise ApiError(400, f"{name} is only valid with include=AVAILABILITY")
        return CatalogQuery()
    if cudas and min_cuda_raw is not None:
        raise ApiError(400, "cudaVersions and minCudaVersion are mutually exclusive")
    min_cuda: tuple[int, int] | None = None
    if min_cuda_raw is not None:
        major, _, minor = min_cuda_raw.partition(".")
        # A bare major means "any release of that major" (minor -1 marks it).
        min_cuda = (int(major), int(minor)) if minor else (int(major), -1)
    return CatalogQuery(
        availability=True,
        count=count,
        cloud="COMMUNITY" if cloud == "COMMUNITY" else "SECURE",
        countries=frozenset(countries) if countries is not None else None,
        cuda_versions=frozenset(cudas) if cudas else None,
        min_cuda=min_cuda,
    )


@dataclass(frozen=True)
class DataCenterQuery:
    gpu_availability: bool
    regions: frozenset[str] | None
    global_network: bool | None
    compliance: frozenset[str]
    volume_types: frozenset[str]

    def admits(self, dc: DataCenter) -> bool:
        return (
            (self.regions is None or dc.region in self.regions)
            and (self.global_network is None or dc.global_network == self.global_network)
            and self.compliance <= set(dc.compliance)
            and self.volume_types <= set(dc.network_volume_types)
        )


def parse_datacenter_query(params: Mapping[str, str]) -> DataCenterQuery:
    errors: list[str] = []
    include = _csv(params.get("include", ""))
    errors += [
        f"query.include: value must be one of 'GPU_AVAILABILITY', 'CPU_AVAILABILITY', got '{v}'"
        for v in include
        if v not in ("GPU_AVAILABILITY", "CPU_AVAILABILITY")
    ]
    regions = _csv(params["regions"]) if "regions" in params else None
    errors += [f"query.regions: invalid region '{r}'" for r in regions or () if r not in REGIONS]
    global_network: bool | None = None
    if "globalNetwork" in params:
        raw = params["globalNetwork"].lower()
        if raw not in ("true", "false"):
            errors.append(f"query.globalNetwork: got string '{params['globalNetwork']}', want boolean")
        global_network = raw == "true"
    if errors:
        raise ApiError(422, "Request validation failed.", errors=errors)
    return DataCenterQuery(
        gpu_availability="GPU_AVAILABILITY" in include,
        regions=frozenset(regions) if regions is not None else None,
        global_network=global_network,
        compliance=frozenset(_csv(params.get("compliance", ""))),
        volume_types=frozenset(_csv(params.get("networkVolumeTypes", ""))),
    )


def filter_datacenters(inventory: Inventory, query: DataCenterQuery) -> Iterable[DataCenter]:
    return (dc for _, dc in sorted(inventory.dcs.items()) if query.admits(dc))
