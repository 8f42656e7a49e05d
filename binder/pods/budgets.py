"""Budgets: the concurrent-GPU and concurrent-vCPU budgets and the optional spend ceiling.

`SpendLedger` holds what this cluster's live RunPod pods use: rebuilt from each list snapshot
(RunPod's own `cost`, `gpu.count` and a CPU pod's `cpu.vcpuCount`) and overlaid with reservations taken just before a create,
so two workers deciding at the same moment cannot both squeeze under the ceiling. A reservation
lasts until a snapshot taken after it shows the pod, or until it is released (create refused,
pod terminated). The check itself (`budget_violation`) is a pure function.

The price cap per GPU (per vCPU for a CPU pod) is a policy check on the candidate
(`decisions.candidate_violation`). The vCPU budget counts the vCPUs RunPod CPU pods hold; the
scheduler also counts every pod's cpu requests (GPU pods' too) against the node's cpu capacity,
which is the same budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from binder.pods.decisions import IDLE_STATUSES
from binder.pods.naming import owned_by_cluster
from runpod_api.models import Pod


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    gpus: int = 0
    usd_per_hour: float = 0.0
    # vCPUs of RunPod CPU pods (GPU pods' vCPUs come with their GPUs and are not counted).
    vcpus: int = 0


def budget_violation(
    *,
    usage: Usage,
    gpus: int,
    usd_per_hour: float,
    gpu_budget: int,
    max_spend_per_hour: float | None,
    vcpus: int = 0,
    cpu_budget: int | None = None,
) -> str | None:
    """Why creating this pod would exceed a budget, or None. `cpu_budget` None = not checked."""
    if gpus and usage.gpus + gpus > gpu_budget:
        return f"GPU budget: {usage.gpus} of {gpu_budget} GPUs in use, this pod needs {gpus}"
    if vcpus and cpu_budget is not None and usage.vcpus + vcpus > cpu_budget:
        return f"CPU budget: {usage.vcpus} of {cpu_budget} vCPUs in use, this pod needs {vcpus}"
    if max_spend_per_hour is not None and usage.usd_per_hour + usd_per_hour > max_spend_per_hour + 1e-9:
        return (
            f"spend ceiling: live pods cost ${usage.usd_per_hour:.2f}/h, this pod ${usd_per_hour:.2f}/h, "
            f"ceiling ${max_spend_per_hour:.2f}/h"
        )
    return None


class SpendLedger:
    """GPU, vCPU and USD/hour use of this cluster's live RunPod pods, keyed by Kubernetes pod UID.

    Single-threaded (asyncio): `reserve` after a passing check, with no await in between, is
    atomic with respect to other workers.
    """

    def __init__(self, *, cluster_id: str) -> None:
        self._cluster_id = cluster_id
        self._live: dict[str, Usage] = {}
        self._reserved: dict[str, tuple[Usage, datetime]] = {}

    def rebuild(self, pods: Iterable[Pod], *, taken_at: datetime) -> None:
        live: dict[str, Usage] = {}
        for pod in pods:
            owner = owned_by_cluster(pod.env, self._cluster_id)
            if owner is None or pod.status in IDLE_STATUSES:
                continue
            gpus = pod.gpu.count if pod.gpu is not None else 0
            vcpus = pod.cpu.vcpu_count if pod.cpu is not None else 0
            previous = live.get(owner.uid, Usage())
            live[owner.uid] = Usage(
                gpus=previous.gpus + gpus,
                usd_per_hour=previous.usd_per_hour + pod.cost,
                vcpus=previous.vcpus + vcpus,
            )
        self._live = live
        # A reservation is covered once a list taken after it shows the pod.
        self._reserved = {
            uid: (usage, at)
            for uid, (usage, at) in self._reserved.items()
            if uid not in live or at > taken_at
        }

    def usage(self, *, excluding: str | None = None) -> Usage:
        """Total use; `excluding` leaves one pod out (its own earlier reservation)."""
        counted = [u for uid, u in self._live.items() if uid != excluding] + [
            usage for uid, (usage, _) in self._reserved.items() if uid not in self._live and uid != excluding
        ]
        return Usage(
            gpus=sum(u.gpus for u in counted),
            usd_per_hour=sum(u.usd_per_hour for u in counted),
            vcpus=sum(u.vcpus for u in counted),
        )

    def holds(self, uid: str) -> bool:
        return uid in self._live or uid in self._reserved

    def reserve(self, uid: str, usage: Usage, *, at: datetime) -> None:
        self._reserved[uid] = (usage, at)

    def release(self, uid: str) -> None:
        self._reserved.pop(uid, None)
        self._live.pop(uid, None)
