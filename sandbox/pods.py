"""A sandbox pod: its record, how it renders as RunPod's `Pod` object, and which actions apply.

Pure data and functions over it, with the clock passed in (`now`, epoch seconds). The account
(`sandbox.account`) owns the records and drives the transitions; this module decides what a
pod looks like at a given moment:

    POST -> PROVISIONING -> STARTING -> RUNNING           (timers in the account)
    PROVISIONING|STARTING|RUNNING --stop--> EXITED          cost 0, GPUs released
    RUNNING --restart--> STARTING -> RUNNING                uptime resets
    EXITED|ERROR --start--> STARTING -> RUNNING             same DC; 400 when it filled up
    any --terminate/DELETE--> TERMINATED (optional window) -> 404

Billing: a pod accrues `cost` (price per GPU x count, or for a CPU pod price per vCPU x vCPU
count) while PROVISIONING, STARTING or RUNNING, i.e. for as long as it holds its GPUs or vCPUs;
`billed_usd` + the open segment is what it has spent. A CPU pod renders `cpu` (flavour, vCPUs,
memory) instead of `gpu`, `cudaVersion` null and no GPU utilisation.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

__all__ = [
    "ACTIONS",
    "BILLING_STATUSES",
    "PodRecord",
    "PodStatus",
    "format_time",
    "parse_ports",
    "render_pod",
    "spend_of",
]

PodStatus = Literal["PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED"]
ACTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "PROVISIONING": ("stop", "terminate"),
    "STARTING": ("stop", "terminate"),
    "RUNNING": ("stop", "restart", "terminate"),
    "EXITED": ("start", "terminate"),
    "ERROR": ("start", "terminate"),
    "TERMINATED": (),
}
BILLING_STATUSES: Final = frozenset({"PROVISIONING", "STARTING", "RUNNING"})
_SECONDS_PER_HOUR: Final = 3600.0


def format_time(epoch: float) -> str:
    """RFC 3339 UTC with a `Z`, second precision, as RunPod renders pod timestamps."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ports(ports: list[str]) -> list[tuple[int, str]]:
    """`["8888/http", "22/tcp"]` -> `[(8888, "http"), (22, "tcp")]`; malformed entries skipped."""
    out: list[tuple[int, str]] = []
    for entry in ports:
        number, _, kind = entry.partition("/")
        if number.isdigit() and kind in ("http", "tcp"):
            out.append((int(number), kind))
    return out


@dataclass
class PodRecord:
    id: str
    name: str
    image: str
    args: str
    disk: int
    ports: list[str]
    env: dict[str, str]
    registry: str | None
    mounts: dict[str, Any]
    gpu_id: str
    gpu_count: int
    cloud: Literal["SECURE", "COMMUNITY"]
    dc_id: str
    cuda_version: str | None
    price_per_gpu: float
    created_at: float
    public_ip: str
    ssh_suffix: str
    status: PodStatus = "PROVISIONING"
    locked: bool = False
    global_networking: bool = False
    started_at: float | None = None
    container_started_at: float | None = None
    visible_at: float = 0.0
    terminated_at: float | None = None
    # public port per private tcp port, assigned when the pod first runs on its host
    public_ports: dict[int, int] = field(default_factory=dict)
    # Where the emulated sshd (`sandbox.sshd`) listens for this pod: the 22/tcp mapping's
    # address and `ssh.direct.host`. None: no emulated sshd (the public IP is shown, unreachable).
    ssh_host: str | None = None
    # The image runs no sshd (scenario `sshdlessImages`): 22/tcp is mapped but refuses, and
    # RunPod reports no `ssh.direct`.
    sshd_less: bool = False
    billed_usd: float = 0.0
    billing_since: float | None = None
    # bumped on every transition so stale timers and container tasks know to stand down
    generation: int = 0
    restarts: int = 0
    # A CPU pod: its flavour, vCPUs, memory (GB) and price per vCPU-hour (no GPU: gpu_count 0).
    cpu_id: str | None = None
    vcpu_count: int = 0
    memory_gb: int = 0
    price_per_vcpu: float = 0.0
    # The create body as it arrived (`GET /_sandbox/state` shows it); None for seeded pods.
    create_body: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        if self.cpu_id is not None:
            return round(self.price_per_vcpu * self.vcpu_count, 6)
        return round(self.price_per_gpu * self.gpu_count, 6)

    @property
    def cost(self) -> float:
        return self.rate if self.status in BILLING_STATUSES else 0.0

    def settle(self, now: float) -> None:
        """Close the open billing segment at `now`; call before changing `status`."""
        if self.billing_since is not None:
            self.billed_usd += self.rate * max(0.0, now - self.billing_since) / _SECONDS_PER_HOUR
        self.billing_since = now if self.status in BILLING_STATUSES else None

    def set_status(self, status: PodStatus, now: float) -> None:
        self.settle(now)
        self.status = status
        self.generation += 1
        self.billing_since = now if status in BILLING_STATUSES else None


def spend_of(pod: PodRecord, now: float) -> float:
    open_segment = 0.0
    if pod.billing_since is not None:
        open_segment = pod.rate * max(0.0, now - pod.billing_since) / _SECONDS_PER_HOUR
    return pod.billed_usd + open_segment


def _runtime(pod: PodRecord, now: float) -> dict[str, Any]:
    ports = []
    for private, kind in parse_ports(pod.ports):
        public = pod.public_ports.get(private) if kind == "tcp" else None
        ip = (pod.ssh_host or pod.public_ip) if private == 22 else pod.public_ip
        ports.append({"private": private, "public": public, "type": kind, "ip": ip if public else None})
    uptime = int(now - pod.container_started_at) if pod.container_started_at is not None else 0
    return {
        "uptime": max(uptime, 0),
        "gpus": [
            {
                "util": _wave(pod.id, now, index, low=40, high=98),
                "memoryUtil": _wave(pod.id, now, index + 8, low=30, high=85),
            }
            for index in range(pod.gpu_count)
        ],
        "cpu": {"util": _wave(pod.id, now, 16, low=5, high=70)},
        "memory": {"util": _wave(pod.id, now, 17, low=10, high=60)},
        "ports": ports,
    }


def _wave(pod_id: str, now: float, channel: int, *, low: int, high: int) -> int:
    """A plausible, changing utilisation: a slow wave per pod and metric, whole percent as
    RunPod reports it; the same pod, metric and time always give the same value."""
    phase = (zlib.crc32(f"{pod_id}/{channel}".encode()) % 1000) / 1000 * 2 * math.pi
    return round(low + (high - low) * (0.5 + 0.5 * math.sin(now / 20 + phase)))


def _compute(pod: PodRecord) -> dict[str, Any]:
    """`gpu` of a GPU pod, `cpu` of a CPU pod: each omitted from the other (OpenAPI `Pod`)."""
    if pod.cpu_id is not None:
        return {"cpu": {"id": pod.cpu_id, "vcpuCount": pod.vcpu_count, "memory": pod.memory_gb}}
    return {"gpu": {"id": pod.gpu_id, "count": pod.gpu_count}}


def render_pod(pod: PodRecord, now: float, *, runtime_empty_object: bool = False) -> dict[str, Any]:
    """The `Pod` object RunPod would answer for this record at `now` (env in full, as live)."""
    proxy_user = f"{pod.id}-{pod.ssh_suffix}"
    placed = pod.status != "TERMINATED"
    direct = None
    if pod.status == "RUNNING" and 22 in pod.public_ports and "22/tcp" in pod.ports and not pod.sshd_less:
        port = pod.public_ports[22]
        host = pod.ssh_host or pod.public_ip
        direct = {"host": host, "port": port, "username": "root", "command": f"ssh root@{host} -p {port}"}
    running = pod.status == "RUNNING"
    return {
        "id": pod.id,
        "name": pod.name,
        "status": pod.status,
        "actions": list(ACTIONS[pod.status]),
        "image": pod.image,
        "args": pod.args,
        "disk": pod.disk,
        "mounts": pod.mounts,
        "ports": list(pod.ports),
        "env": dict(pod.env),
        "registry": pod.registry,
        **_compute(pod),
        "cloud": pod.cloud,
        "dataCenterId": pod.dc_id,
        "cudaVersion": pod.cuda_version,
        "ssh": {
            "proxy": {
                "host": "ssh.runpod.io",
                "port": 22,
                "username": proxy_user,
                "command": f"ssh {proxy_user}@ssh.runpod.io",
            }
            if placed
            else None,
            "direct": direct,
        },
        "template": None,
        "cost": pod.cost,
        "locked": pod.locked,
        "globalNetworking": {"enabled": pod.global_networking}
        | (
            {
                "ip": f"10.65.{int(pod.public_ip.split('.')[2])}.{int(pod.public_ip.split('.')[3])}",
                "internalDns": f"{pod.id}.runpod.internal",
            }
            if pod.global_networking
            else {}
        ),
        "runtime": _runtime(pod, now) if running else ({} if runtime_empty_object else None),
        "createdAt": format_time(pod.created_at),
        "startedAt": format_time(pod.started_at) if pod.started_at is not None else None,
    }
