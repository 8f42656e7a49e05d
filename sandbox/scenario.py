"""What a sandbox run is configured with: timings, quotas, knobs, seeded pods and faults.

A scenario is a JSON document (`--scenario FILE`, or a dict passed to `running_sandbox`). Keys are
camelCase like RunPod's own; unknown keys are an error, so a typo in a scenario fails loudly
instead of silently testing nothing. Everything has a default that makes a fast, generous,
well-behaved RunPod; tests opt into trouble. Example:

    {"timings": {"provisioningS": 0.1, "startingS": 0.1, "visibilityDelayS": 2},
     "rateLimits": [{"window": "minute", "quota": 60, "windowS": 60}],
     "balanceUsd": 5.0,
     "deniedGpuIds": ["NVIDIA H200"],
     "sshdlessImages": ["nginx:*", "*/no-sshd:*"],
     "stock": [{"gpuId": "NVIDIA A40", "dataCenterId": "EU-RO-1", "cloud": "SECURE", "free": 0}],
     "cpuStock": [{"cpuId": "cpu3c", "dataCenterId": "EU-RO-1", "free": 0}],
     "pods": [{"name": "someone-elses-notebook", "gpu": {"id": "NVIDIA A40", "count": 1}}],
     "faults": [{"route": "POST /v2/pods", "kind": "ambiguous_create", "count": 1}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "Bands",
    "CpuStockSetting",
    "FaultRule",
    "PrivateRegistry",
    "RateWindow",
    "Scenario",
    "SeedPod",
    "StockSetting",
    "Timings",
    "load_scenario",
]

Cloud = Literal["SECURE", "COMMUNITY"]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Timings(_Model):
    """Delays of the pod state machine, in seconds. Fast by default so tests stay fast."""

    provisioning_s: float = Field(default=0.3, ge=0)
    starting_s: float = Field(default=0.3, ge=0)
    # After a container's script ends, RunPod restarts it; this is the pause before it does.
    restart_delay_s: float = Field(default=0.5, ge=0)
    # A new pod may 404 and be missing from the list for a while (notes §10 #14).
    visibility_delay_s: float = Field(default=0.0, ge=0)
    # A deleted pod may still GET as TERMINATED for a while before it 404s.
    terminated_visible_s: float = Field(default=0.0, ge=0)
    keepalive_s: float = Field(default=15.0, gt=0)


class RateWindow(_Model):
    window: Literal["minute", "hour", "day"]
    quota: int = Field(ge=0)
    window_s: int = Field(gt=0)


def _generous_windows() -> list[RateWindow]:
    # Far above anything a test does, so nobody is throttled unless they ask.
    return [
        RateWindow(window="minute", quota=100_000, window_s=60),
        RateWindow(window="hour", quota=1_000_000, window_s=3600),
        RateWindow(window="day", quota=10_000_000, window_s=86400),
    ]


class Bands(_Model):
    """Availability bands by free units: 0 NONE, <= low LOW, <= medium MEDIUM, else HIGH."""

    low: int = Field(default=3, ge=1)
    medium: int = Field(default=15, ge=1)


class StockSetting(_Model):
    gpu_id: str
    data_center_id: str
    cloud: Cloud = "SECURE"
    free: int = Field(ge=0)
    cuda_version: str | None = None


class CpuStockSetting(_Model):
    """Free vCPUs of one CPU flavour in one data center (CPU pods: SECURE cloud only)."""

    cpu_id: str
    data_center_id: str
    free: int = Field(ge=0)


class PrivateRegistry(_Model):
    """A registry host whose images pull only with a credential of this username and password."""

    host: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)


class SeedGpu(_Model):
    id: str
    count: int = Field(default=1, ge=1)


class SeedPod(_Model):
    """A pod already in the account at start (e.g. a colleague's notebook: never ours to touch)."""

    name: str
    image: str = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
    gpu: SeedGpu = Field(default_factory=lambda: SeedGpu(id="NVIDIA GeForce RTX 4090"))
    cloud: Cloud = "SECURE"
    data_center_id: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    args: str = ""
    ports: list[str] = Field(default_factory=list)
    status: Literal["RUNNING", "EXITED"] = "RUNNING"


class FaultRule(_Model):
    """One scripted misbehaviour. `route` is `"METHOD /v2/path/{template}"`, `"* /v2/pods"` or `"*"`.

    kinds:
      status            answer `status` (problem+json, or an HTML page with `html`) without acting
      ambiguous_create  act normally (e.g. create the pod), then answer `status` (default 500)
      timeout           hang `delaySeconds` (default 60) and answer 504, without acting
      ambiguous_timeout act, then hang `delaySeconds`, then answer 504
      slow_logs         delay every log event by `delaySeconds`
    A 429 carries `Retry-After: retryAfter` and RateLimit headers unless `headers` is false.
    `skip` lets that many matching requests through first; `count` null = forever.
    """

    route: str = "*"
    kind: Literal["status", "ambiguous_create", "timeout", "ambiguous_timeout", "slow_logs"] = "status"
    status: int = Field(default=500, ge=400, le=599)
    detail: str | None = None
    count: int | None = Field(default=1, ge=0)
    skip: int = Field(default=0, ge=0)
    delay_s: float = Field(default=60.0, ge=0, alias="delaySeconds")
    retry_after: int = Field(default=1, ge=0)
    headers: bool = True
    html: bool = False


class Scenario(_Model):
    timings: Timings = Field(default_factory=Timings)
    rate_limits: list[RateWindow] = Field(default_factory=_generous_windows)
    bands: Bands = Field(default_factory=Bands)
    balance_usd: float | None = None
    denied_gpu_ids: list[str] = Field(default_factory=list)
    read_only_keys: list[str] = Field(default_factory=list)
    extra_keys: list[str] = Field(default_factory=list)
    failing_images: list[str] = Field(default_factory=list)
    # Images (shell-style patterns, `fnmatch`) that run no sshd: their 22/tcp refuses
    # connections and RunPod reports no `ssh.direct` for them (sandbox.sshd).
    sshdless_images: list[str] = Field(default_factory=list)
    private_registries: list[PrivateRegistry] = Field(default_factory=list)
    stock: list[StockSetting] = Field(default_factory=list)
    cpu_stock: list[CpuStockSetting] = Field(default_factory=list)
    pods: list[SeedPod] = Field(default_factory=list)
    faults: list[FaultRule] = Field(default_factory=list)
    # Flags reproducing live quirks (notes §10): off by default.
    count_omitted_bug: bool = False
    runtime_empty_object: bool = False


def load_scenario(source: Scenario | dict[str, Any] | str | Path | None) -> Scenario:
    """A Scenario from a model, a dict, a JSON file path, or None (all defaults)."""
    if source is None:
        return Scenario()
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return Scenario.model_validate(source)
    return Scenario.model_validate(json.loads(Path(source).read_text()))
