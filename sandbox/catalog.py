"""The sandbox's catalogue and stock: what exists, what it costs, where it is free right now.

Owns: loading the seed data (`data/catalog.json`), the mutable stock per (GPU type, data center,
cloud), each with the CUDA version its machines run, and per (CPU flavour, data center) in free
vCPUs, availability bands, rendering `GET /v2/catalog/...` answers (including the 400 rules of
their query parameters; malformed values are 422 by `validation.validate_query`, against the
OpenAPI document) and placing a pod (`place`, `place_cpu`). It does not own pods or billing.

Placement follows RunPod v2: exactly `gpu.id` x `count` on one machine in one allowed data
center, no substitution, only where the machine's CUDA satisfies `gpu.minCudaVersion` /
`gpu.allowedCudaVersions`; a CPU pod takes `cpu.vcpuCount` vCPUs of `cpu.id` in one allowed data
center (SECURE cloud only). The catalogue is rendered from live stock, so a test that empties a
data center sees `NONE` in the next catalogue read (and a create racing that read gets a 400).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal

from sandbox.problems import ApiError
from sandbox.scenario import Bands, CpuStockSetting, StockSetting
from sandbox.validation import validate_query

__all__ = [
    "CatalogQuery",
    "CpuQuery",
    "CpuType",
    "DataCenter",
    "GpuType",
    "Inventory",
    "Placement",
    "StockEntry",
    "band",
    "country_of",
    "load_inventory",
    "parse_catalog_query",
    "parse_cpu_query",
    "parse_datacenter_query",
]

Cloud = Literal["SECURE", "COMMUNITY"]
CLOUDS: Final[tuple[Cloud, ...]] = ("SECURE", "COMMUNITY")
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
class CpuType:
    """A CPU flavour (`cpu.id`): vCPU range, RAM per vCPU, price per vCPU-hour (SECURE)."""

    id: str
    name: str
    group: str
    vcpu_min: int
    vcpu_max: int
    ram_gb_per_vcpu: float
    price_per_vcpu: float
    serverless_per_vcpu: float

    def sells(self, vcpus: int) -> bool:
        """A vCPU count RunPod accepts for this flavour: a power of two in its range."""
        return self.vcpu_min <= vcpus <= self.vcpu_max and vcpus >= 2 and not vcpus & (vcpus - 1)


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
class CpuQuery:
    """Parsed `GET /v2/catalog/cpus` parameters; `availability` False = plain listing."""

    availability: bool = False
    # Availability for pods of this many vCPUs; None = each flavour's smallest.
    vcpu_count: int | None = None


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
    cpus: dict[str, CpuType] = field(default_factory=dict)
    # Free vCPUs per (CPU flavour, data center).
    cpu_stock: dict[tuple[str, str], int] = field(default_factory=dict)

    # -- CPU stock ---------------------------------------------------------------------------
    def set_cpu_stock(self, setting: CpuStockSetting) -> None:
        if setting.cpu_id not in self.cpus:
            raise ApiError(400, f"unknown CPU flavor {setting.cpu_id!r}")
        if setting.data_center_id not in self.dcs:
            raise ApiError(400, f"unknown data center {setting.data_center_id!r}")
        self.cpu_stock[(setting.cpu_id, setting.data_center_id)] = setting.free

    def place_cpu(self, *, cpu_id: str, vcpus: int, dc_ids: Sequence[str]) -> str | None:
        """Reserve `vcpus` of flavour `cpu_id` in one allowed DC (listed order; else the DC with
        the most free vCPUs, ties by id); None = no capacity."""
        free = {dc: n for (c, dc), n in self.cpu_stock.items() if c == cpu_id and n >= vcpus}
        if dc_ids:
            order = [dc for dc in dc_ids if dc in free]
        else:
            order = sorted(free, key=lambda dc: (-free[dc], dc))
        if not order:
            return None
        self.cpu_stock[(cpu_id, order[0])] -= vcpus
        return order[0]

    def reserve_cpu_at(self, *, cpu_id: str, vcpus: int, dc_id: str) -> bool:
        """Take `vcpus` back at a known DC (a stopped CPU pod restarting on its host)."""
        free = self.cpu_stock.get((cpu_id, dc_id), 0)
        if free < vcpus:
            return False
        self.cpu_stock[(cpu_id, dc_id)] = free - vcpus
        return True

    def release_cpu(self, *, cpu_id: str, vcpus: int, dc_id: str) -> None:
        if (cpu_id, dc_id) in self.cpu_stock:
            self.cpu_stock[(cpu_id, dc_id)] += vcpus

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

    def render_cpu(self, cpu: CpuType, query: CpuQuery) -> dict[str, Any]:
        """One `CpuType` object; with availability, bands of free vCPUs in pods of
        `query.vcpu_count` (default: the flavour's smallest) per data center offering it."""
        doc: dict[str, Any] = {
            "id": cpu.id,
            "name": cpu.name,
            "group": cpu.group,
            "vcpu": {"min": cpu.vcpu_min, "max": cpu.vcpu_max},
            "ramGbPerVcpu": cpu.ram_gb_per_vcpu,
            "price": {"securePerVcpu": cpu.price_per_vcpu, "serverlessPerVcpu": cpu.serverless_per_vcpu},
        }
        if not query.availability:
            return doc
        size = query.vcpu_count or max(cpu.vcpu_min, 2)
        sold = cpu.vcpu_min <= size <= cpu.vcpu_max
        dcs = [
            {
                "id": dc_id,
                "name": self.dcs[dc_id].name,
                "availability": band(free if sold else 0, size, self.bands),
            }
            for (cpu_id, dc_id), free in sorted(self.cpu_stock.items())
            if cpu_id == cpu.id
        ]
        overall = max((d["availability"] for d in dcs), key=_BAND_RANK.__getitem__, default="NONE")
        doc["availability"] = overall
        if overall != "NONE":
            doc["dataCenters"] = dcs
        return doc

    def render_datacenter(
        self, dc: DataCenter, *, gpu_availability: bool, cpu_availability: bool = False
    ) -> dict[str, Any]:
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
        if cpu_availability:
            # Like GPUs here: pods of each flavour's smallest size.
            offered = sorted((c, n) for (c, dc_id), n in self.cpu_stock.items() if dc_id == dc.id)
            if offered:
                doc["cpuAvailability"] = [
                    {
                        "id": c,
                        "name": self.cpus[c].name,
                        "availability": band(n, max(self.cpus[c].vcpu_min, 2), self.bands),
                    }
                    for c, n in offered
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
    cpus = {
        c["id"]: CpuType(
            id=c["id"],
            name=c["name"],
            group=c["group"],
            vcpu_min=int(c["vcpu"]["min"]),
            vcpu_max=int(c["vcpu"]["max"]),
            ram_gb_per_vcpu=float(c["ramGbPerVcpu"]),
            price_per_vcpu=float(c["price"]["securePerVcpu"]),
            serverless_per_vcpu=float(c["price"]["serverlessPerVcpu"]),
        )
        for c in doc.get("cpuTypes", [])
    }
    inventory = Inventory(gpus=gpus, dcs=dcs, bands=bands or Bands(), cpus=cpus)
    for raw in doc.get("stock", []):
        inventory.set_stock(StockSetting.model_validate(raw))
    for raw in doc.get("cpuStock", []):
        inventory.set_cpu_stock(CpuStockSetting.model_validate(raw))
    return inventory


# -- query parameters ----------------------------------------------------------------------------
def _availability_rule(values: Mapping[str, Any], *, dependent: Sequence[str]) -> bool:
    """RunPod's `include`/`product` rule (400 either way): `product` is required with
    `include=AVAILABILITY` and, like the other availability filters, valid only with it."""
    wants = bool(values.get("include"))
    if wants and not values.get("product"):
        raise ApiError(400, "product is required when include=AVAILABILITY")
    if not wants:
        for name in ("product", *dependent):
            if name in values:
                raise ApiError(400, f"{name} is only valid with include=AVAILABILITY")
    return wants


def parse_catalog_query(params: Mapping[str, str]) -> CatalogQuery:
    """Apply RunPod's rules for `include`/`product`/`count`/`cloud`/filters (notes §6.1).

    Malformed values are 422 (schema, `validate_query`); valid values in a forbidden
    combination are 400.
    """
    values = validate_query("/v2/catalog/gpus", "get", params)
    dependent = ("count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion")
    if not _availability_rule(values, dependent=dependent):
        return CatalogQuery()
    cudas: list[str] = values.get("cudaVersions") or []
    min_cuda_raw: str | None = values.get("minCudaVersion")
    if cudas and min_cuda_raw is not None:
        raise ApiError(400, "cudaVersions and minCudaVersion are mutually exclusive")
    min_cuda: tuple[int, int] | None = None
    if min_cuda_raw is not None:
        major, _, minor = min_cuda_raw.partition(".")
        # A bare major means "any release of that major" (minor -1 marks it).
        min_cuda = (int(major), int(minor)) if minor else (int(major), -1)
    countries = values.get("countryCodes")
    return CatalogQuery(
        availability=True,
        count=values.get("count", 1),
        cloud="COMMUNITY" if values.get("cloud") == "COMMUNITY" else "SECURE",
        countries=frozenset(countries) if countries is not None else None,
        cuda_versions=frozenset(cudas) if cudas else None,
        min_cuda=min_cuda,
    )


def parse_cpu_query(params: Mapping[str, str]) -> CpuQuery:
    """`GET /v2/catalog/cpus[/{id}]`: `include`, `product` (POD or SERVERLESS) and `vcpuCount`
    (a power of two >= 2) by the same rules as the GPU catalog's."""
    values = validate_query("/v2/catalog/cpus", "get", params)
    if not _availability_rule(values, dependent=("vcpuCount",)):
        return CpuQuery()
    vcpus: int | None = values.get("vcpuCount")
    if vcpus is not None and vcpus & (vcpus - 1):
        raise ApiError(400, f"vcpuCount {vcpus} is not a power of two")
    return CpuQuery(availability=True, vcpu_count=vcpus)


@dataclass(frozen=True)
class DataCenterQuery:
    gpu_availability: bool
    regions: frozenset[str] | None
    global_network: bool | None
    compliance: frozenset[str]
    volume_types: frozenset[str]
    cpu_availability: bool = False

    def admits(self, dc: DataCenter) -> bool:
        return (
            (self.regions is None or dc.region in self.regions)
            and (self.global_network is None or dc.global_network == self.global_network)
            and self.compliance <= set(dc.compliance)
            and self.volume_types <= set(dc.network_volume_types)
        )


def parse_datacenter_query(params: Mapping[str, str]) -> DataCenterQuery:
    """`include`, `regions` (OR), `networkVolumeTypes` and `compliance` (AND), `globalNetwork`;
    every value checked against the document's enums (422 when malformed)."""
    values = validate_query("/v2/catalog/datacenters", "get", params)
    include: list[str] = values.get("include") or []
    regions = values.get("regions")
    return DataCenterQuery(
        gpu_availability="GPU_AVAILABILITY" in include,
        cpu_availability="CPU_AVAILABILITY" in include,
        regions=frozenset(regions) if regions is not None else None,
        global_network=values.get("globalNetwork"),
        compliance=frozenset(values.get("compliance") or ()),
        volume_types=frozenset(values.get("networkVolumeTypes") or ()),
    )


def filter_datacenters(inventory: Inventory, query: DataCenterQuery) -> Iterable[DataCenter]:
    return (dc for _, dc in sorted(inventory.dcs.items()) if query.admits(dc))
