"""Resource usage of the node's pods, from RunPod's utilisation percentages, tick by tick.

RunPod reports, for a running pod, `runtime.cpu.util` and `runtime.memory.util` (percent of
the pod's vCPUs and RAM) and `runtime.gpus[].util` / `.memoryUtil` (percent per GPU), and no
absolute figure: a GPU pod's vCPU count and RAM are not in its answer. Kubernetes tools want
absolutes (cores, bytes) and a cumulative CPU counter. So, per pod:

- **the shape** is what the pod declares: its container's `limits` (else `requests`) of `cpu`
  and `memory`, the amount the pod asked RunPod's node to honour. A pod that declares neither
  has no known shape for that resource and reports no figure for it (it is never invented);
- **memory in use** = `memory.util` % of the declared memory;
- **CPU in use** = `cpu.util` % of the declared cores; the cumulative counter (core-seconds, what
  metrics-server turns into a rate) integrates it over the time between two RunPod lists,
  with the utilisation of the later list (a step function: RunPod's value is a snapshot);
- **GPU** utilisation and GPU-memory utilisation are kept as RunPod's percentages (mean over
  the pod's GPUs), for the binder's `/metrics` gauges.

`advance` is pure: (previous ledger, the tick's RunPod list, the node's pods, now) -> ledger.
The controller calls it once per tick with the list it already made (no RunPod call of its
own); the kubelet API reads the latest ledger. A pod whose RunPod pod stops running keeps its
counter until the Kubernetes pod is gone, so the counter never goes backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from contract.annotations import POD_ID
from contract.quantities import parse_cpu, parse_memory
from runpod_api.models import Pod

__all__ = ["PodUsage", "Shape", "UsageLedger", "advance", "parse_cpu", "parse_memory", "shape_of"]


@dataclass(frozen=True)
class Shape:
    """What a pod declared: cores and bytes (None = not declared)."""

    cpu_cores: float | None
    memory_bytes: float | None


def shape_of(pod: Mapping[str, Any]) -> Shape:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    resources = containers[0].get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    return Shape(
        cpu_cores=parse_cpu(limits.get("cpu", requests.get("cpu"))),
        memory_bytes=parse_memory(limits.get("memory", requests.get("memory"))),
    )


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    uid: str
    container: str
    runpod_id: str
    started_at: datetime | None
    sampled_at: datetime
    cpu_cores: float | None  # in use now
    cpu_core_seconds: float | None  # cumulative
    memory_bytes: float | None
    gpu_util: float | None  # percent, mean over the pod's GPUs
    gpu_memory_util: float | None
    running: bool


@dataclass(frozen=True)
class UsageLedger:
    pods: Mapping[str, PodUsage]  # by Kubernetes pod UID
    updated_at: datetime | None = None
    # The node's cumulative CPU (sum of every pod's increments): never goes backwards.
    node_cpu_core_seconds: float = 0.0

    @classmethod
    def empty(cls) -> UsageLedger:
        return cls(pods={})


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _percent_of(util: float | None, whole: float | None) -> float | None:
    if util is None or whole is None:
        return None
    return max(0.0, min(util, 100.0)) / 100.0 * whole


def advance(
    ledger: UsageLedger, *, runpod_pods: Mapping[str, Pod], pods: Iterable[Mapping[str, Any]], now: datetime
) -> UsageLedger:
    """The ledger after one tick: `runpod_pods` by RunPod id (the tick's one list), `pods` the
    Kubernetes pods bound to the node."""
    updated: dict[str, PodUsage] = {}
    node_total = ledger.node_cpu_core_seconds
    for pod in pods:
        metadata = pod.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        pod_id = (metadata.get("annotations") or {}).get(POD_ID)
        if not uid or not pod_id:
            continue
        previous = ledger.pods.get(uid)
        runpod = runpod_pods.get(pod_id)
        runtime = runpod.runtime if runpod is not None and runpod.status == "RUNNING" else None
        if runtime is None:
            if previous is not None:
                updated[uid] = replace(previous, running=False, cpu_cores=None, sampled_at=now)
            continue
        shape = shape_of(pod)
        cores = _percent_of(runtime.cpu.util if runtime.cpu else None, shape.cpu_cores)
        total = previous.cpu_core_seconds if previous is not None else None
        if cores is not None:
            elapsed = (now - previous.sampled_at).total_seconds() if previous is not None else 0.0
            increment = cores * max(elapsed, 0.0)
            total = (total or 0.0) + increment
            node_total += increment
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        updated[uid] = PodUsage(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            uid=uid,
            container=str(containers[0].get("name") or ""),
            runpod_id=str(pod_id),
            started_at=runpod.started_at if runpod is not None else None,
            sampled_at=now,
            cpu_cores=cores,
            cpu_core_seconds=total,
            memory_bytes=_percent_of(runtime.memory.util if runtime.memory else None, shape.memory_bytes),
            gpu_util=_mean(g.util for g in runtime.gpus),
            gpu_memory_util=_mean(g.memory_util for g in runtime.gpus),
            running=True,
        )
    return UsageLedger(pods=updated, updated_at=now, node_cpu_core_seconds=node_total)
