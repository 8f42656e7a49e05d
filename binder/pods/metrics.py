"""Prometheus metrics of the pod lifecycle.

- `runpod_kubelet_pods{phase}`: pods on the virtual node by Kubernetes phase (Terminating counted
  apart), as of the latest sync tick;
- `runpod_kubelet_creates_total{outcome}`: RunPod create attempts by outcome (created, adopted,
  no_capacity, forbidden, payment_required, rejected, rate_limited, uncertain, error);
- `runpod_kubelet_spend_usd_per_hour`: summed RunPod `cost` of this cluster's live pods;
- `runpod_kubelet_terminations_total{why}`: RunPod pods this binder terminated (deleted,
  completed, failed, duplicate, orphan);
- `runpod_kubelet_pod_gpu_utilization_percent{namespace,pod}` and
  `runpod_kubelet_pod_gpu_memory_utilization_percent{namespace,pod}`: RunPod's per-GPU
  utilisation of each running pod, mean over its GPUs, from the tick's one list call.

Only the GPU gauges carry a pod's namespace and name (never a RunPod id, env or secret); a
pod's series disappear when it stops running. `PodMetrics` takes its registry so tests use a
private one; `default_pod_metrics()` builds the process-wide instance on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import cache
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from binder.pods.usage import UsageLedger

PHASES: Final = ("Pending", "Running", "Succeeded", "Failed", "Unknown", "Terminating")


class PodMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pods = Gauge(
            "runpod_kubelet_pods",
            "Pods on the virtual node by phase (Terminating apart).",
            ["phase"],
            registry=registry,
        )
        self.creates = Counter(
            "runpod_kubelet_creates", "RunPod create attempts by outcome.", ["outcome"], registry=registry
        )
        self.spend = Gauge(
            "runpod_kubelet_spend_usd_per_hour",
            "Summed RunPod cost of this cluster's live pods, USD per hour.",
            registry=registry,
        )
        self.terminations = Counter(
            "runpod_kubelet_terminations",
            "RunPod pods terminated by the binder, by why.",
            ["why"],
            registry=registry,
        )

        self.gpu_util = Gauge(
            "runpod_kubelet_pod_gpu_utilization_percent",
            "GPU utilisation of a running RunPod pod, percent, mean over its GPUs.",
            ["namespace", "pod"],
            registry=registry,
        )
        self.gpu_memory_util = Gauge(
            "runpod_kubelet_pod_gpu_memory_utilization_percent",
            "GPU memory utilisation of a running RunPod pod, percent, mean over its GPUs.",
            ["namespace", "pod"],
            registry=registry,
        )
        self._gpu_series: set[tuple[str, str]] = set()

    def set_gpu_usage(self, usage: UsageLedger) -> None:
        """One tick's GPU figures; series of pods no longer running are removed."""
        current: set[tuple[str, str]] = set()
        for pod in usage.pods.values():
            if not pod.running:
                continue
            labels = (pod.namespace, pod.name)
            if pod.gpu_util is not None:
                self.gpu_util.labels(*labels).set(pod.gpu_util)
                current.add(labels)
            if pod.gpu_memory_util is not None:
                self.gpu_memory_util.labels(*labels).set(pod.gpu_memory_util)
                current.add(labels)
        for labels in self._gpu_series - current:
            for gauge in (self.gpu_util, self.gpu_memory_util):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._gpu_series = current

    def set_phases(self, counts: Mapping[str, int]) -> None:
        for phase in PHASES:
            self.pods.labels(phase=phase).set(counts.get(phase, 0))

    def created(self, outcome: str) -> None:
        self.creates.labels(outcome=outcome).inc()

    def terminated(self, why: str) -> None:
        self.terminations.labels(why=why).inc()


@cache
def default_pod_metrics() -> PodMetrics:
    return PodMetrics(REGISTRY)
