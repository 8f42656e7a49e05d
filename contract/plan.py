"""The resolved plan: what the mutating webhook decides and the binder executes.

Encoded as `plan.runpod.io/*` annotations, one value per key so a person can read it in
`kubectl get pod -o yaml`, and parsed back by exactly one function, `plan_from_annotations`:

    plan.runpod.io/version: "1"
    plan.runpod.io/candidates: '[{"gpu":"NVIDIA A40","dc":"EU-RO-1","usdPerHour":0.44,"stock":"HIGH"}]'
    plan.runpod.io/gpu-count: "1"
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
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.annotations import PLAN_PREFIX
from contract.catalog import Availability
from contract.policy import CLOUDS, Cloud, parse_id_list

PLAN_FORMAT_VERSION: Final = "1"

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

PLAN_KEYS: Final[tuple[str, ...]] = (
    PLAN_VERSION,
    PLAN_CANDIDATES,
    PLAN_GPU_COUNT,
    PLAN_CLOUD,
    PLAN_DATACENTER_IDS,
    PLAN_PORTS,
    PLAN_DISK,
    PLAN_MAX_GPU_PRICE,
    PLAN_REGISTRY,
    PLAN_TEMPLATE,
    PLAN_CATALOG_REVISION,
    PLAN_DROP_CONTAINERS,
)

# What a plan cannot do without, besides its version (the admission policy checks them too).
REQUIRED_PLAN_KEYS: Final[tuple[str, ...]] = (
    PLAN_CANDIDATES,
    PLAN_GPU_COUNT,
    PLAN_CLOUD,
    PLAN_DISK,
    PLAN_MAX_GPU_PRICE,
    PLAN_CATALOG_REVISION,
)

Protocol = Literal["http", "tcp"]


class Port(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1, le=65535)
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


class Candidate(BaseModel):
    """One (GPU type, data center) pair to try, in order. `datacenter_id` None = any allowed."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    gpu_type_id: str = Field(alias="gpu", min_length=1)
    datacenter_id: str | None = Field(default=None, alias="dc")
    # Whole pod: per-GPU price x GPU count.
    usd_per_hour: float = Field(alias="usdPerHour", ge=0)
    stock: Availability | None = None


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    candidates: tuple[Candidate, ...] = Field(min_length=1)
    gpu_count: int = Field(ge=1)
    cloud: Cloud
    datacenter_ids: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    container_disk_gb: int = Field(ge=1, le=2000)
    max_gpu_price: float = Field(gt=0)
    registry_auth_id: str | None = None
    template_id: str | None = None
    catalog_revision: str
    # Container and init-container names RunPod may leave out (`runpod.io/drop-containers`).
    # The containers themselves are judged on the final pod (`contract.containers`).
    drop_containers: tuple[str, ...] = ()


class PlanError(ValueError):
    """Plan annotations that are missing or malformed; the message names the key."""


def plan_to_annotations(plan: Plan) -> dict[str, str]:
    annotations = {
        PLAN_VERSION: PLAN_FORMAT_VERSION,
        PLAN_CANDIDATES: json.dumps(
            [c.model_dump(by_alias=True, exclude_none=True) for c in plan.candidates], separators=(",", ":")
        ),
        PLAN_GPU_COUNT: str(plan.gpu_count),
        PLAN_CLOUD: plan.cloud,
        PLAN_DATACENTER_IDS: ",".join(plan.datacenter_ids),
        PLAN_PORTS: ",".join(str(p) for p in plan.ports),
        PLAN_DISK: str(plan.container_disk_gb),
        PLAN_MAX_GPU_PRICE: _format_price(plan.max_gpu_price),
        PLAN_CATALOG_REVISION: plan.catalog_revision,
    }
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
    if version != PLAN_FORMAT_VERSION:
        raise PlanError(f"{PLAN_VERSION}={version!r} not supported; expected {PLAN_FORMAT_VERSION!r}")
    for key in REQUIRED_PLAN_KEYS:
        if key not in annotations:
            raise PlanError(f"{key} missing")
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
            candidates=tuple(Candidate.model_validate(c) for c in raw_candidates),
            gpu_count=_int(annotations, PLAN_GPU_COUNT),
            cloud=cloud,
            datacenter_ids=tuple(x for x in annotations.get(PLAN_DATACENTER_IDS, "").split(",") if x),
            ports=tuple(_port(p) for p in annotations.get(PLAN_PORTS, "").split(",") if p),
            container_disk_gb=_int(annotations, PLAN_DISK),
            max_gpu_price=_float(annotations, PLAN_MAX_GPU_PRICE),
            registry_auth_id=annotations.get(PLAN_REGISTRY) or None,
            template_id=annotations.get(PLAN_TEMPLATE) or None,
            catalog_revision=annotations[PLAN_CATALOG_REVISION],
            drop_containers=parse_id_list(annotations.get(PLAN_DROP_CONTAINERS)),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"plan invalid at {where}: {first['msg']}") from exc


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
