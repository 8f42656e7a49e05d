"""The catalog: what the binder publishes to ConfigMap `runpod-catalog`, what the webhook reads.

Shape follows RunPod's own answers, normalised into `Catalog`: `GET /v2/catalog/gpus?include=
AVAILABILITY&product=POD` once per cloud (availability differs by cloud), the same per CUDA
version offered (`&cudaVersions=<v>`: where machines of that version are in stock), and
`GET /v2/catalog/cpus?include=AVAILABILITY&product=POD` for CPU flavours:

    {"version": 1, "revision": "<12 hex>", "fetchedAt": "2026-11-27T10:00:00Z",
     "gpuTypes": [{"id": "NVIDIA A40", "name": "A40", "memoryGb": 48, "manufacturer": "NVIDIA",
                   "price": {"SECURE": 0.44, "COMMUNITY": null},
                   "stock": {"SECURE": {"EU-RO-1": "HIGH"}, "COMMUNITY": {}},
                   "cuda": {"SECURE": {"12.8": {"EU-RO-1": "HIGH"}, "13.0": {}}}}],
     "cpuTypes": [{"id": "cpu3c", "name": "Compute-Optimized", "group": "Gen 3", "vcpuMin": 2,
                   "vcpuMax": 32, "ramGbPerVcpu": 2.0, "pricePerVcpu": 0.03,
                   "stock": {"EU-RO-1": "HIGH"}}],
     "dataCenters": [{"id": "EU-RO-1", "name": "EU Romania 1", "region": "EUROPE"}]}

`price` is USD per single GPU-hour (null = not offered in that cloud); `stock` maps data center
id -> availability band, only bands above NONE. `cuda` maps, per cloud, each CUDA version the
GPU type's machines run to where that version is in stock ({} = offered, full now); a GPU type
without it (AMD, or an older binder) satisfies no CUDA requirement. CPU flavours are sold in the
SECURE cloud only, `pricePerVcpu` USD per vCPU-hour (a pod's cost is that x its vCPU count),
with vCPU counts RunPod accepts: powers of two from `vcpuMin` to `vcpuMax`, at least 2, each
with `ramGbPerVcpu` GB of RAM per vCPU. `cpuTypes` is absent from catalogs of older binders
(read as none). RunPod's catalog is a hint, not a reservation: the binder still walks the
candidates when a create meets no capacity.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.policy import CLOUDS, Cloud

CATALOG_FORMAT_VERSION: Final = 1

Availability = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
# Higher = more stock. Used to order candidates of equal price.
AVAILABILITY_RANK: Final[Mapping[str, int]] = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}
# RunPod's smallest CPU pod: `cpu.vcpuCount` is at least 2 and a power of two.
MIN_VCPUS: Final = 2
_CUDA_VERSION: Final = re.compile(r"^\d+\.\d+$")


def parse_cuda_version(text: str) -> tuple[int, int]:
    """`"12.4"` -> (12, 4): CUDA versions compare numerically (12.11 is above 12.2). Raises
    ValueError for anything but `major.minor` (RunPod's create body refuses a bare major)."""
    if not _CUDA_VERSION.match(text):
        raise ValueError(f"{text!r} is not a CUDA version major.minor")
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def sort_cuda_versions(versions: Iterable[str]) -> list[str]:
    """Distinct versions, oldest first, numerically; malformed ones are left out."""
    return sorted({v for v in versions if _CUDA_VERSION.match(v)}, key=parse_cuda_version)


@dataclass(frozen=True, slots=True)
class CudaRequirement:
    """What a GPU pod needs of its host's CUDA: a floor (`gpu.minCudaVersion`) or an exact set
    (`gpu.allowedCudaVersions`), never both (RunPod refuses both in one create). Hashable."""

    minimum: str | None = None
    versions: tuple[str, ...] = ()

    def admits(self, version: str) -> bool:
        try:
            key = parse_cuda_version(version)
        except ValueError:
            return False
        if self.versions and version not in self.versions:
            return False
        return self.minimum is None or key >= parse_cuda_version(self.minimum)

    def describe(self) -> str:
        """`CUDA >= 12.4`, `CUDA 12.4 or 12.6`."""
        if self.versions:
            return "CUDA " + " or ".join(self.versions)
        return f"CUDA >= {self.minimum}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class GpuTypeEntry(_Model):
    id: str
    name: str
    memory_gb: int = Field(alias="memoryGb", ge=0)
    manufacturer: str = "UNKNOWN"
    price: dict[Cloud, float | None]
    stock: dict[Cloud, dict[str, Availability]] = Field(default_factory=dict)
    # cloud -> CUDA version -> data center -> band (bands above NONE; {} = offered, full now).
    cuda: dict[Cloud, dict[str, dict[str, Availability]]] = Field(default_factory=dict)

    def price_in(self, cloud: Cloud) -> float | None:
        value = self.price.get(cloud)
        return value if value is not None and value > 0 else None

    def stock_in(self, cloud: Cloud) -> Mapping[str, Availability]:
        return {dc: band for dc, band in self.stock.get(cloud, {}).items() if band != "NONE"}

    def cuda_versions_in(self, cloud: Cloud) -> list[str]:
        """The CUDA versions this type's machines run in `cloud`, oldest first."""
        return sort_cuda_versions(self.cuda.get(cloud, {}))

    def stock_with(self, cloud: Cloud, cuda: CudaRequirement | None) -> Mapping[str, Availability]:
        """Where this type is in stock in `cloud` on machines whose CUDA satisfies `cuda` (all
        of its stock without a requirement), with the best band among those machines."""
        if cuda is None:
            return self.stock_in(cloud)
        best: dict[str, Availability] = {}
        for version, stock in self.cuda.get(cloud, {}).items():
            if not cuda.admits(version):
                continue
            for dc, band in stock.items():
                if band != "NONE" and AVAILABILITY_RANK[band] > AVAILABILITY_RANK[best.get(dc, "NONE")]:
                    best[dc] = band
        return best


class CpuTypeEntry(_Model):
    """A RunPod CPU flavour (`cpu.id` of a create), sold in the SECURE cloud only."""

    id: str
    name: str = ""
    group: str = ""
    vcpu_min: int = Field(alias="vcpuMin", ge=1)
    vcpu_max: int = Field(alias="vcpuMax", ge=1)
    ram_gb_per_vcpu: float = Field(alias="ramGbPerVcpu", gt=0)
    # USD per vCPU-hour in the SECURE cloud; a pod's cost is this x its vCPU count.
    price_per_vcpu: float = Field(alias="pricePerVcpu", gt=0)
    stock: dict[str, Availability] = Field(default_factory=dict)

    def stock_in(self) -> Mapping[str, Availability]:
        return {dc: band for dc, band in self.stock.items() if band != "NONE"}

    def vcpu_counts(self) -> list[int]:
        """The vCPU counts RunPod accepts for this flavour: powers of two >= 2 in its range."""
        counts: list[int] = []
        count = MIN_VCPUS
        while count <= self.vcpu_max:
            if count >= self.vcpu_min:
                counts.append(count)
            count *= 2
        return counts

    def vcpus_for(self, *, cores: float, memory_gb: float) -> int | None:
        """The fewest vCPUs of this flavour giving at least `cores` vCPUs and `memory_gb` GB of
        RAM (RAM comes with vCPUs: `ramGbPerVcpu` each); None when even its largest is short."""
        for count in self.vcpu_counts():
            if count >= cores - 1e-9 and count * self.ram_gb_per_vcpu >= memory_gb - 1e-9:
                return count
        return None

    def memory_gb(self, vcpus: int) -> float:
        return vcpus * self.ram_gb_per_vcpu


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
    cpu_types: tuple[CpuTypeEntry, ...] = Field(default=(), alias="cpuTypes")
    data_centers: tuple[DataCenterEntry, ...] = Field(default=(), alias="dataCenters")

    # Lookups by id, built once per catalog: the resolver asks for every (GPU, data center)
    # pair on each admission.
    @cached_property
    def _gpus_by_id(self) -> Mapping[str, GpuTypeEntry]:
        return {gpu.id: gpu for gpu in self.gpu_types}

    @cached_property
    def _datacenters_by_id(self) -> Mapping[str, DataCenterEntry]:
        return {dc.id: dc for dc in self.data_centers}

    @cached_property
    def _cpus_by_id(self) -> Mapping[str, CpuTypeEntry]:
        return {cpu.id: cpu for cpu in self.cpu_types}

    @cached_property
    def _cuda_versions(self) -> tuple[str, ...]:
        return tuple(
            sort_cuda_versions(
                v for gpu in self.gpu_types for versions in gpu.cuda.values() for v in versions
            )
        )

    def cpu(self, cpu_type_id: str) -> CpuTypeEntry | None:
        return self._cpus_by_id.get(cpu_type_id)

    def cuda_versions(self) -> tuple[str, ...]:
        """Every CUDA version some GPU type's machines run, in any cloud, oldest first."""
        return self._cuda_versions

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


def compute_revision(
    gpu_types: Sequence[GpuTypeEntry],
    data_centers: Sequence[DataCenterEntry],
    cpu_types: Sequence[CpuTypeEntry] = (),
) -> str:
    """A content hash, so a plan can name the catalog it was resolved against."""
    canonical = json.dumps(
        {
            "gpuTypes": [g.model_dump(by_alias=True) for g in sorted(gpu_types, key=lambda g: g.id)],
            "cpuTypes": [c.model_dump(by_alias=True) for c in sorted(cpu_types, key=lambda c: c.id)],
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
    cuda_by_cloud: Mapping[Cloud, Mapping[str, Mapping[str, Any]]] | None = None,
    cpus: Mapping[str, Any] | None = None,
) -> Catalog:
    """Normalise RunPod answers into a Catalog: `{"gpus": [...]}` per cloud, optionally the same
    answer per cloud and CUDA version (`cudaVersions=<v>`), `{"cpus": [...]}`, `{"dataCenters": [...]}`.

    Drops what RunPod's notes say to drop: the sentinel id `unknown` and GPU types with no
    positive price in any cloud; CPU flavours without a positive SECURE price or vCPU range.
    Without the per-version answers of a cloud, a CUDA version the GPU type marks `available`
    is taken to be wherever the type is in stock there (RunPod still enforces the version on
    create: a miss is a capacity refusal, and the binder tries the next candidate).
    """
    merged: dict[str, dict[str, Any]] = {}
    for cloud, answer in gpus_by_cloud.items():
        if cloud not in CLOUDS:
            raise CatalogError(f"unknown cloud {cloud!r}; allowed: {', '.join(CLOUDS)}")
        for raw in _gpu_list(answer, cloud):
            gpu_id = raw["id"]
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
                    "cuda": {},
                },
            )
            stock = _bands(raw.get("dataCenters"))
            entry["stock"][cloud] = stock
            detail = cuda_by_cloud.get(cloud) if cuda_by_cloud is not None else None
            cuda: dict[str, dict[str, str]] = {}
            for version, available in _cuda_list(raw.get("cudaVersions")):
                if detail is None:
                    cuda[version] = dict(stock) if available else {}
                else:
                    cuda[version] = _gpu_stock(detail.get(version), gpu_id, cloud)
            if cuda:
                entry["cuda"][cloud] = cuda
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
    cpu_types = _cpu_types(cpus) if cpus is not None else []
    gpu_types.sort(key=lambda g: g.id)
    cpu_types.sort(key=lambda c: c.id)
    dcs.sort(key=lambda d: d.id)
    return Catalog(
        revision=compute_revision(gpu_types, dcs, cpu_types),
        fetched_at=fetched_at,
        gpu_types=tuple(gpu_types),
        cpu_types=tuple(cpu_types),
        data_centers=tuple(dcs),
    )


def offered_cuda_versions(answer: Mapping[str, Any]) -> list[str]:
    """The CUDA versions some machine has free capacity for in one GPU catalog answer (the
    versions worth asking `cudaVersions=<v>` about), oldest first."""
    gpus = answer.get("gpus") if isinstance(answer, Mapping) else None
    versions = (
        version
        for raw in (gpus if isinstance(gpus, list) else [])
        if isinstance(raw, Mapping)
        for version, available in _cuda_list(raw.get("cudaVersions"))
        if available
    )
    return sort_cuda_versions(versions)


def _gpu_list(answer: Mapping[str, Any], cloud: str) -> list[Mapping[str, Any]]:
    """The usable GPU entries of one answer: a string id other than the sentinel `unknown`."""
    gpus = answer.get("gpus") if isinstance(answer, Mapping) else None
    if not isinstance(gpus, list):
        raise CatalogError(f"catalog answer for {cloud} has no 'gpus' list")
    return [
        raw
        for raw in gpus
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str) and raw["id"] not in ("", "unknown")
    ]


def _bands(data_centers: object) -> dict[str, str]:
    """`dataCenters[]` -> data center id -> band, bands above NONE only."""
    stock: dict[str, str] = {}
    for dc in data_centers if isinstance(data_centers, list) else []:
        if isinstance(dc, Mapping) and isinstance(dc.get("id"), str):
            band = dc.get("availability")
            if isinstance(band, str) and band in AVAILABILITY_RANK and band != "NONE":
                stock[str(dc["id"])] = band
    return stock


def _gpu_stock(answer: Mapping[str, Any] | None, gpu_id: str, cloud: str) -> dict[str, str]:
    """Where `gpu_id` is in stock according to one (CUDA-scoped) answer; {} when it is absent."""
    if answer is None:
        return {}
    for raw in _gpu_list(answer, cloud):
        if raw["id"] == gpu_id:
            return _bands(raw.get("dataCenters"))
    return {}


def _cuda_list(raw: object) -> list[tuple[str, bool]]:
    """`cudaVersions[]` -> (version, available); a missing list is an empty one (RunPod's rule)."""
    out: list[tuple[str, bool]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("version"), str):
            version = item["version"]
            if _CUDA_VERSION.match(version):
                out.append((version, bool(item.get("available"))))
    return out


def _cpu_types(answer: Mapping[str, Any]) -> list[CpuTypeEntry]:
    """`{"cpus": [CpuType]}` -> flavours with a SECURE price and a vCPU range RunPod can sell."""
    raw_cpus = answer.get("cpus") if isinstance(answer, Mapping) else None
    if not isinstance(raw_cpus, list):
        raise CatalogError("CPU catalog answer has no 'cpus' list")
    out: dict[str, CpuTypeEntry] = {}
    for raw in raw_cpus:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw["id"]:
            continue
        vcpu = _mapping(raw.get("vcpu"))
        price = _mapping(raw.get("price"))
        low, high = _count(vcpu.get("min")), _count(vcpu.get("max"))
        per_vcpu = _positive(price.get("securePerVcpu"))
        ram = _positive(raw.get("ramGbPerVcpu"))
        if low is None or high is None or per_vcpu is None or ram is None or high < max(low, MIN_VCPUS):
            continue
        out.setdefault(
            raw["id"],
            CpuTypeEntry(
                id=raw["id"],
                name=str(raw.get("name") or raw["id"]),
                group=str(raw.get("group") or ""),
                vcpu_min=low,
                vcpu_max=high,
                ram_gb_per_vcpu=ram,
                price_per_vcpu=per_vcpu,
                stock=_bands(raw.get("dataCenters")),
            ),
        )
    return list(out.values())


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_catalog_document(text: str) -> Catalog:
    """Read a catalog from JSON text: our own format, or one raw RunPod catalog answer.

    A raw RunPod answer (`{"gpus": [...]}`, as `--catalog-file` accepts for development, with
    RunPod's `{"cpus": [...]}` list beside it if you like) carries the availability of a single
    cloud; it is applied to both clouds, each GPU type still offered only where its
    `secure`/`community` flags and prices say so.
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
        cpus = {"cpus": doc["cpus"]} if "cpus" in doc else None
        return build_catalog(gpus_by_cloud={"SECURE": doc, "COMMUNITY": doc}, datacenters=None, cpus=cpus)
    raise CatalogError("catalog must have 'gpuTypes' (runpod-kubelet format) or 'gpus' (RunPod answer)")


def _positive(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
