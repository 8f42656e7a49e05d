"""Prometheus metrics of the pod lifecycle.

- `runpod_kubelet_pods{phase}`: pods on the virtual node by Kubernetes phase (Terminating counted
  apart), as of the latest sync tick;
- `runpod_kubelet_creates_total{outcome}`: RunPod create attempts by outcome (created, adopted,
  no_capacity, forbidden, payment_required, rejected, rate_limited, uncertain, error);
- `runpod_kubelet_spend_usd_per_hour`: summed RunPod `cost` of this cluster's live pods;
- `runpod_kubelet_terminations_total{why}`: RunPod pods this binder terminated (deleted,
  completed, failed, duplicate, orphan).

No label carries a pod name, id or secret. `PodMetrics` takes its registry so tests use a
private one; `default_pod_metrics()` builds the process-wide instance on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

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
