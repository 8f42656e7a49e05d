"""The resolved plan: what the mutating webhook decides and the binder executes.

Encoded as `plan.runpod.io/*` annotations, one value per key so a person can read it in
`kubectl get pod -o yaml`, and parsed back by exactly one function, `plan_from_annotations`.
A GPU plan:

    plan.runpod.io/version: "1"                         ("2" with a CUDA requirement)
    plan.runpod.io/candidates: '[{"gpu":"NVIDIA A40","dc":"EU-RO-1","usdPerHour":0.44,"stock":"HIGH"}]'
    plan.runpod.io/gpu-count: "1"
    plan.runpod.io/min-cuda-version: "12.4"             (version 2, only when set; or
    plan.runpod.io/cuda-versions: 12.4,12.6              the exact set, never both)
    plan.runpod.io/cloud: SECURE
    plan.runpod.io/datacenter-ids: EU-RO-1,US-KS-2      (effective list; empty = any)
    plan.runpod.io/ports: 8888/http,22/tcp
    plan.runpod.io/container-disk-gb: "50"
    plan.runpod.io/max-gpu-price: "0.5"                 (effective per-GPU cap)
    plan.runpod.io/container-registry-auth-id: abc      (only when set)
    plan.runpod.io/template-id: tpl                     (only when set)
    plan.runpod.io/drop-containers: istio-proxy,setup   (only when set: runpod.io/drop-containers
                                                         of the pod, else of its Job)
    plan.runpod.io/catalog-revision: 3f2a9c1b7d00

A CPU plan (a pod without `nvidia.com/gpu`: a RunPod CPU pod, no GPU bought) is version 2:

    plan.runpod.io/version: "2"
    plan.runpod.io/compute-type: CPU
    plan.runpod.io/candidates: '[{"cpu":"cpu3c","vcpus":4,"dc":"EU-RO-1","usdPerHour":0.12,"stock":"HIGH"}]'
    plan.runpod.io/cloud: SECURE                        (CPU pods: SECURE only)
    plan.runpod.io/max-vcpu-price: "0.1"                (effective per-vCPU cap; no gpu-count,
                                                         no max-gpu-price)
    ... ports, disk, data centers, registry, template, drop-containers, catalog revision as above

Versions: "1" is a GPU plan without a CUDA requirement, exactly as before CPU pods existed, and
is still what the webhook writes for such a plan, so a binder of the previous release reads it
during an upgrade. Anything version 1 cannot say (a CPU plan, a CUDA requirement) is version 2,
which names its `compute-type`; a reader of version 1 refuses it ("not supported") rather than
buying a GPU without the floor, or a GPU for a CPU pod. Both versions are read.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.annotations import PLAN_PREFIX
from contract.catalog import Availability, CudaRequirement, parse_cuda_version
from contract.policy import CLOUDS, COMPUTE_TYPES, CPU_CLOUD, Cloud, ComputeType, parse_id_list

# Version 1: a GPU plan without a CUDA requirement. Version 2 adds the compute type (CPU
# plans) and CUDA requirements. The webhook writes the lowest version that says the plan.
PLAN_FORMAT_VERSION_GPU: Final = "1"
PLAN_FORMAT_VERSION: Final = "2"
PLAN_FORMAT_VERSIONS: Final[tuple[str, ...]] = (PLAN_FORMAT_VERSION_GPU, PLAN_FORMAT_VERSION)

PLAN_VERSION: Final = PLAN_PREFIX + "version"
PLAN_CANDIDATES: Final = PLAN_PREFIX + "candidates"
PLAN_GPU_COUNT: Final = PLAN_PREFIX + "gpu-count"
PLAN_CLOUD: Final = PLAN_PREFIX + "cloud"
PLAN_DATACENTER_IDS: Final = PLAN_PREFIX + "datacenter-ids"
PLAN_PORTS: Final = PLAN_PREFIX + "ports"
PLAN_DISK: Final = PLAN_PREFIX + "container-disk-gb"
PLAN_MAX_GPU_PRICE: Final = PLAN_PREFIX + "max-gpu-price"
PLAN_REGISTRY: Final = PLAN_PREFIX + "container-registry-auth-id"
PLAN_TEMPLATE: Final = PLAN_PREFIX + "template-id"
PLAN_CATALOG_REVISION: Final = PLAN_PREFIX + "catalog-revision"
PLAN_DROP_CONTAINERS: Final = PLAN_PREFIX + "drop-containers"
PLAN_COMPUTE_TYPE: Final = PLAN_PREFIX + "compute-type"
PLAN_MAX_VCPU_PRICE: Final = PLAN_PREFIX + "max-vcpu-price"
PLAN_MIN_CUDA_VERSION: Final = PLAN_PREFIX + "min-cuda-version"
PLAN_CUDA_VERSIONS: Final = PLAN_PREFIX + "cuda-versions"

PLAN_KEYS: Final[tuple[str, ...]] = (
    PLAN_VERSION,
    PLAN_COMPUTE_TYPE,
    PLAN_CANDIDATES,
    PLAN_GPU_COUNT,
    PLAN_MIN_CUDA_VERSION,
    PLAN_CUDA_VERSIONS,
    PLAN_CLOUD,
    PLAN_DATACENTER_IDS,
    PLAN_PORTS,
    PLAN_DISK,
    PLAN_MAX_GPU_PRICE,
    PLAN_MAX_VCPU_PRICE,
    PLAN_REGISTRY,
    PLAN_TEMPLATE,
    PLAN_CATALOG_REVISION,
    PLAN_DROP_CONTAINERS,
)

# What a plan cannot do without, besides its version, by what it buys (the admission policy
# checks them too). A version 2 plan also names its compute type (`PLAN_COMPUTE_TYPE`).
REQUIRED_PLAN_KEYS: Final[Mapping[ComputeType, tuple[str, ...]]] = {
    "GPU": (
        PLAN_CANDIDATES,
        PLAN_GPU_COUNT,
        PLAN_CLOUD,
        PLAN_DISK,
        PLAN_MAX_GPU_PRICE,
        PLAN_CATALOG_REVISION,
    ),
    "CPU": (PLAN_CANDIDATES, PLAN_CLOUD, PLAN_DISK, PLAN_MAX_VCPU_PRICE, PLAN_CATALOG_REVISION),
}
# Keys that say nothing for the other compute type: a plan carrying one is refused, not half-read.
FOREIGN_PLAN_KEYS: Final[Mapping[ComputeType, tuple[str, ...]]] = {
    "GPU": (PLAN_MAX_VCPU_PRICE,),
    "CPU": (PLAN_GPU_COUNT, PLAN_MAX_GPU_PRICE, PLAN_MIN_CUDA_VERSION, PLAN_CUDA_VERSIONS),
}
# Keys version 1 does not have: a version 1 plan carrying one is refused, not half-read.
VERSION_2_KEYS: Final[tuple[str, ...]] = (
    PLAN_COMPUTE_TYPE,
    PLAN_MIN_CUDA_VERSION,
    PLAN_CUDA_VERSIONS,
    PLAN_MAX_VCPU_PRICE,
)

Protocol = Literal["http", "tcp"]


class Port(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1, le=65535)
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


class Candidate(BaseModel):
    """One thing to try, in order: a (GPU type, data center) pair, or a (CPU flavour, vCPU
    count, data center) triple for a CPU plan. `datacenter_id` None = any allowed."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    gpu_type_id: str | None = Field(default=None, alias="gpu", min_length=1)
    cpu_type_id: str | None = Field(default=None, alias="cpu", min_length=1)
    # A CPU candidate's vCPUs: a power of two >= 2 the flavour sells (RunPod's rule).
    vcpu_count: int | None = Field(default=None, alias="vcpus", ge=2)
    datacenter_id: str | None = Field(default=None, alias="dc")
    # Whole pod: per-GPU price x GPU count, or per-vCPU price x vCPU count.
    usd_per_hour: float = Field(alias="usdPerHour", ge=0)
    stock: Availability | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Candidate:
        if (self.gpu_type_id is None) == (self.cpu_type_id is None):
            raise ValueError("a candidate names exactly one of gpu or cpu")
        if (self.cpu_type_id is None) != (self.vcpu_count is None):
            raise ValueError("a CPU candidate names its vcpus, and only a CPU candidate does")
        if self.vcpu_count is not None and self.vcpu_count & (self.vcpu_count - 1):
            raise ValueError("vcpus must be a power of two")
        return self

    @property
    def compute_type(self) -> ComputeType:
        return "CPU" if self.cpu_type_id is not None else "GPU"

    @property
    def label(self) -> str:
        """What it buys, for people: `NVIDIA A40`, `cpu3c x4 vCPU`."""
        if self.cpu_type_id is not None:
            return f"{self.cpu_type_id} x{self.vcpu_count} vCPU"
        return self.gpu_type_id or ""


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    compute_type: ComputeType = "GPU"
    candidates: tuple[Candidate, ...] = Field(min_length=1)
    # GPUs per pod; 0 for a CPU plan.
    gpu_count: int = Field(default=1, ge=0)
    cloud: Cloud
    datacenter_ids: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    container_disk_gb: int = Field(ge=1, le=2000)
    # The effective cap per unit: per GPU-hour (GPU plans), per vCPU-hour (CPU plans).
    max_gpu_price: float | None = Field(default=None, gt=0)
    max_vcpu_price: float | None = Field(default=None, gt=0)
    # A GPU plan's CUDA requirement: a floor or an exact set (never both).
    min_cuda_version: str | None = None
    cuda_versions: tuple[str, ...] = ()
    registry_auth_id: str | None = None
    template_id: str | None = None
    catalog_revision: str
    # Container and init-container names RunPod may leave out (`runpod.io/drop-containers`).
    # The containers themselves are judged on the final pod (`contract.containers`).
    drop_containers: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        for version in (*self.cuda_versions, *([self.min_cuda_version] if self.min_cuda_version else [])):
            parse_cuda_version(version)
        if self.min_cuda_version and self.cuda_versions:
            raise ValueError("min_cuda_version and cuda_versions are mutually exclusive")
        if any(c.compute_type != self.compute_type for c in self.candidates):
            raise ValueError(
                f"every candidate of a {self.compute_type} plan must be a {self.compute_type} one"
            )
        if self.compute_type == "GPU":
            if self.gpu_count < 1:
                raise ValueError("gpu_count must be at least 1 in a GPU plan")
            if self.max_gpu_price is None or self.max_vcpu_price is not None:
                raise ValueError("a GPU plan has max_gpu_price and no max_vcpu_price")
        else:
            if self.gpu_count != 0 or self.max_vcpu_price is None or self.max_gpu_price is not None:
                raise ValueError("a CPU plan has no GPUs, a max_vcpu_price and no max_gpu_price")
            if self.cloud != CPU_CLOUD:
                raise ValueError(f"CPU pods run in the {CPU_CLOUD} cloud only")
            if self.cuda is not None:
                raise ValueError("a CPU plan has no CUDA requirement")
        return self

    @property
    def cuda(self) -> CudaRequirement | None:
        if self.min_cuda_version is None and not self.cuda_versions:
            return None
        return CudaRequirement(minimum=self.min_cuda_version, versions=self.cuda_versions)

    @property
    def version(self) -> str:
        """The lowest format version that says this plan."""
        if self.compute_type == "GPU" and self.cuda is None:
            return PLAN_FORMAT_VERSION_GPU
        return PLAN_FORMAT_VERSION

    def max_unit_price(self) -> float:
        """The plan's cap per unit it buys: per GPU-hour, or per vCPU-hour."""
        cap = self.max_vcpu_price if self.compute_type == "CPU" else self.max_gpu_price
        return cap if cap is not None else 0.0

    def units(self, candidate: Candidate) -> int:
        """What the candidate buys, counted in the cap's unit: GPUs, or vCPUs."""
        if candidate.vcpu_count is not None:
            return candidate.vcpu_count
        return max(self.gpu_count, 1)

    def unit_price(self, candidate: Candidate) -> float:
        """USD per GPU-hour, or per vCPU-hour, of the candidate."""
        return candidate.usd_per_hour / self.units(candidate)


class PlanError(ValueError):
    """Plan annotations that are missing or malformed; the message names the key."""


def plan_to_annotations(plan: Plan) -> dict[str, str]:
    annotations = {PLAN_VERSION: plan.version}
    if plan.version != PLAN_FORMAT_VERSION_GPU:
        annotations[PLAN_COMPUTE_TYPE] = plan.compute_type
    annotations[PLAN_CANDIDATES] = json.dumps(
        [c.model_dump(by_alias=True, exclude_none=True) for c in plan.candidates], separators=(",", ":")
    )
    if plan.compute_type == "GPU":
        annotations[PLAN_GPU_COUNT] = str(plan.gpu_count)
    if plan.min_cuda_version:
        annotations[PLAN_MIN_CUDA_VERSION] = plan.min_cuda_version
    if plan.cuda_versions:
        annotations[PLAN_CUDA_VERSIONS] = ",".join(plan.cuda_versions)
    annotations |= {
        PLAN_CLOUD: plan.cloud,
        PLAN_DATACENTER_IDS: ",".join(plan.datacenter_ids),
        PLAN_PORTS: ",".join(str(p) for p in plan.ports),
        PLAN_DISK: str(plan.container_disk_gb),
        PLAN_CATALOG_REVISION: plan.catalog_revision,
    }
    if plan.max_gpu_price is not None:
        annotations[PLAN_MAX_GPU_PRICE] = _format_price(plan.max_gpu_price)
    if plan.max_vcpu_price is not None:
        annotations[PLAN_MAX_VCPU_PRICE] = _format_price(plan.max_vcpu_price)
    if plan.registry_auth_id:
        annotations[PLAN_REGISTRY] = plan.registry_auth_id
    if plan.template_id:
        annotations[PLAN_TEMPLATE] = plan.template_id
    if plan.drop_containers:
        annotations[PLAN_DROP_CONTAINERS] = ",".join(plan.drop_containers)
    return annotations


def plan_from_annotations(annotations: Mapping[str, str]) -> Plan:
    """The one parser of plan annotations. Raises PlanError naming the offending key.

    Memoised by the plan's values: a plan never changes after admission, and the binder reads
    it for every pod on every sync tick. `Plan` is frozen, so sharing one instance is safe."""
    return _parse_plan(tuple(annotations.get(key) for key in PLAN_KEYS))


def plan_or_none(annotations: Mapping[str, str]) -> Plan | None:
    """The plan, or None when the pod has no valid plan."""
    try:
        return plan_from_annotations(annotations)
    except PlanError:
        return None


def plan_ports(annotations: Mapping[str, str]) -> tuple[Port, ...]:
    """The plan's ports; none when the pod has no valid plan."""
    plan = plan_or_none(annotations)
    return plan.ports if plan is not None else ()


def plan_drop_containers(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The containers the plan lets RunPod leave out; none when the pod has no valid plan."""
    plan = plan_or_none(annotations)
    return plan.drop_containers if plan is not None else ()


@functools.lru_cache(maxsize=4096)
def _parse_plan(values: tuple[str | None, ...]) -> Plan:
    annotations = {key: value for key, value in zip(PLAN_KEYS, values, strict=True) if value is not None}
    version = annotations.get(PLAN_VERSION)
    if version is None:
        raise PlanError(f"{PLAN_VERSION} missing: the pod has no plan (was it admitted by the webhook?)")
    if version not in PLAN_FORMAT_VERSIONS:
        expected = " or ".join(repr(v) for v in PLAN_FORMAT_VERSIONS)
        raise PlanError(f"{PLAN_VERSION}={version!r} not supported; expected {expected}")
    compute = _compute_type(annotations, version)
    for key in REQUIRED_PLAN_KEYS[compute]:
        if key not in annotations:
            raise PlanError(f"{key} missing")
    foreign = [key for key in FOREIGN_PLAN_KEYS[compute] if key in annotations]
    if foreign:
        raise PlanError(f"{', '.join(foreign)}: not part of a {compute} plan")
    try:
        raw_candidates = json.loads(annotations[PLAN_CANDIDATES])
    except json.JSONDecodeError as exc:
        raise PlanError(f"{PLAN_CANDIDATES} is not JSON: {exc.msg}") from exc
    if not isinstance(raw_candidates, list) or not raw_candidates:
        raise PlanError(f"{PLAN_CANDIDATES} must be a non-empty JSON list")
    cloud = annotations[PLAN_CLOUD]
    if cloud not in CLOUDS:
        raise PlanError(f"{PLAN_CLOUD}={cloud!r}; allowed: {', '.join(CLOUDS)}")
    try:
        return Plan(
            compute_type=compute,
            candidates=tuple(Candidate.model_validate(c) for c in raw_candidates),
            gpu_count=_int(annotations, PLAN_GPU_COUNT) if compute == "GPU" else 0,
            cloud=cloud,
            datacenter_ids=tuple(x for x in annotations.get(PLAN_DATACENTER_IDS, "").split(",") if x),
            ports=tuple(_port(p) for p in annotations.get(PLAN_PORTS, "").split(",") if p),
            container_disk_gb=_int(annotations, PLAN_DISK),
            max_gpu_price=_float(annotations, PLAN_MAX_GPU_PRICE) if compute == "GPU" else None,
            max_vcpu_price=_float(annotations, PLAN_MAX_VCPU_PRICE) if compute == "CPU" else None,
            min_cuda_version=annotations.get(PLAN_MIN_CUDA_VERSION) or None,
            cuda_versions=_cuda_list(annotations.get(PLAN_CUDA_VERSIONS)),
            registry_auth_id=annotations.get(PLAN_REGISTRY) or None,
            template_id=annotations.get(PLAN_TEMPLATE) or None,
            catalog_revision=annotations[PLAN_CATALOG_REVISION],
            drop_containers=parse_id_list(annotations.get(PLAN_DROP_CONTAINERS)),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"plan invalid at {where}: {first['msg']}") from exc


def _cuda_list(raw: str | None) -> tuple[str, ...]:
    """`12.4,12.8` -> ("12.4", "12.8"); every entry is checked (an empty one too) by `Plan`."""
    return tuple(raw.split(",")) if raw else ()


def _compute_type(annotations: Mapping[str, str], version: str) -> ComputeType:
    """What the plan buys: named by a version 2 plan, always GPUs in a version 1 plan."""
    if version == PLAN_FORMAT_VERSION_GPU:
        newer = [key for key in VERSION_2_KEYS if key in annotations]
        if newer:
            raise PlanError(f"{', '.join(newer)}: not part of a {PLAN_VERSION}={version!r} plan")
        return "GPU"
    raw = annotations.get(PLAN_COMPUTE_TYPE)
    if raw is None:
        raise PlanError(f"{PLAN_COMPUTE_TYPE} missing")
    for compute in COMPUTE_TYPES:
        if raw == compute:
            return compute
    raise PlanError(f"{PLAN_COMPUTE_TYPE}={raw!r}; allowed: {', '.join(COMPUTE_TYPES)}")


def parse_port(text: str) -> Port:
    """`"8080/http"` -> Port. Raises ValueError with what is allowed."""
    number, sep, protocol = text.strip().partition("/")
    if not sep or protocol not in ("http", "tcp") or not number.isdigit():
        raise ValueError(f"{text!r} is not PORT/http or PORT/tcp")
    value = int(number)
    if not 1 <= value <= 65535:
        raise ValueError(f"{text!r}: port must be 1..65535")
    return Port(number=value, protocol=protocol)


def _port(text: str) -> Port:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise PlanError(f"{PLAN_PORTS}: {exc}") from exc


def _int(annotations: Mapping[str, str], key: str) -> int:
    try:
        return int(annotations[key])
    except ValueError as exc:
        raise PlanError(f"{key}={annotations[key]!r} is not an integer") from exc


def _float(annotations: Mapping[str, str], key: str) -> float:
    try:
        return float(annotations[key])
    except ValueError as exc:
        raise PlanError(f"{key}={annotations[key]!r} is not a number") from exc


def _format_price(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")
