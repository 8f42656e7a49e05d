"""RunPod v2 payloads the project reads and writes, as pydantic v2 models.

Reading is lenient (notes §9.3): unknown fields are ignored, unknown `status` values are kept as
strings, `runtime` may be null or `{}` (both read as "not running": None), `ssh.*` may be null,
missing or null numbers fall back to harmless defaults, and env values of any scalar type
become strings. Only a pod without an `id` is unreadable.

Writing is strict: `CreatePodRequest` forbids unknown fields (RunPod answers 422 to any unknown
key) and serialises by alias with None fields omitted; `gpu.count` is always sent, because
RunPod once failed every create that left it out (notes §10, #1). A create carries exactly one
of `gpu` (with its CUDA requirement, if any) and `cpu` (flavour and vCPU count), as RunPod
requires.

Field names are snake_case with RunPod's camelCase as aliases. This module does no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "CpuConfig",
    "CreateCpuConfig",
    "CreateGpuConfig",
    "CreateMounts",
    "CreateNetworkVolumeRequest",
    "CreatePodRequest",
    "CreateRegistryRequest",
    "GpuConfig",
    "GpuUtilization",
    "LogEvent",
    "NetworkMount",
    "NetworkVolume",
    "Pod",
    "PodRuntime",
    "PodSsh",
    "PodSshEndpoint",
    "Registry",
    "RuntimePort",
    "Utilization",
]

KNOWN_STATUSES = ("PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED")


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class GpuConfig(_Read):
    id: str
    count: int = 1

    @field_validator("count", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        return 1 if value is None else value


class CpuConfig(_Read):
    """A CPU pod's compute: flavour, vCPUs and the RAM RunPod derived from them (GB)."""

    id: str
    vcpu_count: int = Field(default=0, alias="vcpuCount")
    memory: int | None = None

    @field_validator("vcpu_count", mode="before")
    @classmethod
    def _vcpus(cls, value: Any) -> Any:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class RuntimePort(_Read):
    private: int
    public: int | None = None
    type: str = "tcp"
    ip: str | None = None


class Utilization(_Read):
    """A percentage, 0-100, of what the pod has (its vCPUs, its RAM)."""

    util: float | None = None


class GpuUtilization(_Read):
    util: float | None = None
    memory_util: float | None = Field(default=None, alias="memoryUtil")


class PodRuntime(_Read):
    uptime: int | None = None
    ports: list[RuntimePort] = Field(default_factory=list)
    cpu: Utilization | None = None
    memory: Utilization | None = None
    gpus: list[GpuUtilization] = Field(default_factory=list)

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _utilization(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        return [g for g in value if isinstance(g, dict)] if isinstance(value, list) else []

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return []
        return [p for p in value if isinstance(p, dict) and isinstance(p.get("private"), int)]


class PodGlobalNetworking(_Read):
    enabled: bool = False
    ip: str | None = None


class PodSshEndpoint(_Read):
    host: str
    port: int
    username: str = ""
    command: str = ""


class PodSsh(_Read):
    proxy: PodSshEndpoint | None = None
    direct: PodSshEndpoint | None = None


def _none_if_not_dict(value: Any) -> Any:
    return value if isinstance(value, dict) else None


class Pod(_Read):
    """A RunPod pod as GET/list/create answer it. `env` carries secrets: never log a Pod."""

    id: str
    name: str = ""
    status: str = "UNKNOWN"
    actions: list[str] = Field(default_factory=list)
    image: str = ""
    args: str = ""
    disk: int | None = None
    ports: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    registry: str | None = None
    gpu: GpuConfig | None = None
    cpu: CpuConfig | None = None
    cloud: str | None = None
    data_center_id: str | None = Field(default=None, alias="dataCenterId")
    cost: float = 0.0
    locked: bool = False
    runtime: PodRuntime | None = None
    ssh: PodSsh | None = None
    global_networking: PodGlobalNetworking | None = Field(default=None, alias="globalNetworking")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    started_at: datetime | None = Field(default=None, alias="startedAt")

    @field_validator("name", "image", "args", "status", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return "UNKNOWN" if info.field_name == "status" else ""
        return value

    @field_validator("actions", "ports", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return [str(v) for v in value if v is not None] if isinstance(value, list) else []

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {}
        return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items() if v is not None}

    @field_validator("cost", mode="before")
    @classmethod
    def _cost(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @field_validator("locked", mode="before")
    @classmethod
    def _locked(cls, value: Any) -> Any:
        return bool(value)

    @field_validator("gpu", "cpu", "ssh", "global_networking", mode="before")
    @classmethod
    def _objects(cls, value: Any) -> Any:
        return _none_if_not_dict(value)

    @field_validator("runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        # Documented null when not running; the create example shows {}: both mean "none yet".
        return value if isinstance(value, dict) and value else None

    @field_validator("disk", mode="before")
    @classmethod
    def _disk(cls, value: Any) -> Any:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @field_validator("created_at", "started_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None

    @property
    def is_known_status(self) -> bool:
        return self.status in KNOWN_STATUSES

    @property
    def pod_ip(self) -> str | None:
        """An address of this pod: its public IP, else its global-networking address."""
        if self.public_ip:
            return self.public_ip
        if self.global_networking is not None and self.global_networking.enabled:
            return self.global_networking.ip or None
        return None

    @property
    def public_ip(self) -> str | None:
        """The pod's public address, where RunPod reports one (ssh.direct or a runtime port)."""
        if self.ssh is not None and self.ssh.direct is not None:
            return self.ssh.direct.host
        if self.runtime is not None:
            for port in self.runtime.ports:
                if port.ip:
                    return port.ip
        return None


class _Write(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class CreateGpuConfig(_Write):
    id: str = Field(min_length=1)
    count: int = Field(default=1, ge=1)
    allowed_cuda_versions: list[str] | None = Field(default=None, alias="allowedCudaVersions")
    min_cuda_version: str | None = Field(default=None, alias="minCudaVersion")


class CreateCpuConfig(_Write):
    """`cpu` of a create: a flavour from `/v2/catalog/cpus` and a vCPU count RunPod sells for
    it (a power of two >= 2 within the flavour's range). RunPod derives the memory."""

    id: str = Field(min_length=1)
    vcpu_count: int = Field(alias="vcpuCount", ge=2)


class NetworkMount(_Write):
    """One entry of `mounts.network`: an existing network volume in the pod's data center."""

    volume_id: str = Field(min_length=1, alias="volumeId")
    path: str = Field(min_length=1)


class CreateMounts(_Write):
    # RunPod allows one network volume per pod today (`maxItems: 1`).
    network: list[NetworkMount] | None = Field(default=None, max_length=1)


class CreatePodRequest(_Write):
    """Body of `POST /v2/pods`. `body()` is what goes on the wire."""

    name: str = Field(min_length=1)
    image: str | None = None
    template_id: str | None = Field(default=None, alias="templateId")
    gpu: CreateGpuConfig | None = None
    cpu: CreateCpuConfig | None = None
    cloud: Literal["SECURE", "COMMUNITY"] | None = None
    data_center_ids: list[str] | None = Field(default=None, alias="dataCenterIds")
    disk: int | None = Field(default=None, ge=1)
    ports: list[str] | None = None
    env: dict[str, str] | None = Field(default=None, repr=False)
    args: str | None = None
    registry: str | None = None
    mounts: CreateMounts | None = None
    global_networking: bool | None = Field(default=None, alias="globalNetworking")

    def body(self) -> dict[str, Any]:
        # exclude_none keeps gpu.count: it always has a value.
        return self.model_dump(by_alias=True, exclude_none=True)


class CreateRegistryRequest(_Write):
    """Body of `POST /v2/registries`. The credential is write-only: RunPod never returns it, and
    neither does this model's repr."""

    name: str = Field(min_length=1)
    username: str = Field(min_length=1, repr=False)
    password: str = Field(min_length=1, repr=False)

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class Registry(_Read):
    """A registry credential as RunPod shows it: id and name, never the secret."""

    id: str
    name: str = ""


VolumeType = Literal["STANDARD", "HIGH_PERFORMANCE"]


class CreateNetworkVolumeRequest(_Write):
    """Body of `POST /v2/network-volumes`; `size` in GB, 10..4096."""

    name: str = Field(min_length=1)
    size: int = Field(ge=10, le=4096)
    data_center: str = Field(min_length=1, alias="dataCenter")
    type: VolumeType | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class NetworkVolume(_Read):
    id: str
    name: str = ""
    size: int = 0
    data_center: str | None = Field(default=None, alias="dataCenter")
    type: str | None = None


LogSource = Literal["container", "system"]


class LogEvent(_Read):
    """One log line. `id` is the SSE event id to resume after (None in the legacy shape)."""

    id: str | None = None
    ts: datetime
    source: LogSource = "container"
    line: str = ""
