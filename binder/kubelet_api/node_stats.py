"""The kubelet's read endpoints, as pure functions of the node's pods and their usage.

- `/pods`: a `v1.PodList` of the pods bound to the node, as the kubelet serves its pod manager's
  view (the apiserver's objects, from the binder's watch cache);
- `/runningpods/`: a `v1.PodList` of the pods whose RunPod pod runs, in the kubelet's minimal
  form (metadata and container names and images only); a pod whose RunPod pod the binder has
  terminated (`runpod.io/terminated`) is not listed, even before the next tick's list says so
  (a Terminating pod leaves the list as soon as its RunPod pod is gone, as in Virtual Kubelet);
- `/stats/summary`: the Summary API (`stats/v1alpha1`): node and per-pod/per-container CPU and
  memory, from `binder.pods.usage` (RunPod's utilisation percentages made absolute against
  what each pod declares; see that module for exactly how);
- `/metrics/resource`: the Prometheus text metrics-server scrapes (the kubelet's resource
  metrics: `container_*`, `pod_*`, `node_*` CPU counters and memory working sets, with sample
  timestamps, and `resource_scrape_error`).

Node figures are sums over the node's pods; the node's CPU counter is the ledger's own
cumulative one, so it never goes backwards when a pod leaves. A resource a pod does not
declare has no figure: the pod is listed without it (and metrics-server, which needs both,
skips that pod) rather than with an invented number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from binder.pods.usage import PodUsage, UsageLedger
from contract.annotations import TERMINATED

__all__ = ["pod_list", "resource_metrics", "running_pods", "summary"]


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_list(pods: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    items = sorted(
        pods,
        key=lambda p: (
            (p.get("metadata") or {}).get("namespace", ""),
            (p.get("metadata") or {}).get("name", ""),
        ),
    )
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [dict(p) for p in items]}


def running_pods(pods: Iterable[Mapping[str, Any]], usage: UsageLedger) -> dict[str, Any]:
    items = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        used = usage.pods.get(str(metadata.get("uid") or ""))
        if used is None or not used.running or TERMINATED in (metadata.get("annotations") or {}):
            continue
        containers = (pod.get("spec") or {}).get("containers") or []
        items.append(
            {
                "metadata": {
                    "name": metadata.get("name"),
                    "namespace": metadata.get("namespace"),
                    "uid": metadata.get("uid"),
                },
                "spec": {
                    "containers": [{"name": c.get("name"), "image": c.get("image")} for c in containers[:1]]
                },
            }
        )
    return pod_list(items)


def _cpu(used: PodUsage | None, at: datetime) -> dict[str, Any]:
    stats: dict[str, Any] = {"time": _time(at)}
    if used is not None and used.cpu_cores is not None:
        stats["usageNanoCores"] = round(used.cpu_cores * 1e9)
    if used is not None and used.cpu_core_seconds is not None:
        stats["usageCoreNanoSeconds"] = round(used.cpu_core_seconds * 1e9)
    return stats


def _memory(used: PodUsage | None, at: datetime) -> dict[str, Any]:
    stats: dict[str, Any] = {"time": _time(at)}
    if used is not None and used.memory_bytes is not None:
        value = round(used.memory_bytes)
        stats.update(usageBytes=value, workingSetBytes=value, rssBytes=value)
    return stats


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def summary(*, node_name: str, node_started: datetime, usage: UsageLedger, now: datetime) -> dict[str, Any]:
    at = usage.updated_at or now
    running = [p for p in usage.pods.values() if p.running]
    pods = []
    for used in sorted(running, key=lambda p: (p.namespace, p.name)):
        started = _time(used.started_at) or _time(at)
        pods.append(
            {
                "podRef": {"name": used.name, "namespace": used.namespace, "uid": used.uid},
                "startTime": started,
                "containers": [
                    {
                        "name": used.container,
                        "startTime": started,
                        "cpu": _cpu(used, at),
                        "memory": _memory(used, at),
                    }
                ],
                "cpu": _cpu(used, at),
                "memory": _memory(used, at),
            }
        )
    node_cpu: dict[str, Any] = {
        "time": _time(at),
        "usageCoreNanoSeconds": round(usage.node_cpu_core_seconds * 1e9),
    }
    cores = _sum(p.cpu_cores for p in running)
    if cores is not None:
        node_cpu["usageNanoCores"] = round(cores * 1e9)
    node_memory: dict[str, Any] = {"time": _time(at)}
    memory = _sum(p.memory_bytes for p in running)
    if memory is not None:
        node_memory.update(usageBytes=round(memory), workingSetBytes=round(memory), rssBytes=round(memory))
    return {
        "node": {
            "nodeName": node_name,
            "startTime": _time(node_started),
            "cpu": node_cpu,
            "memory": node_memory,
        },
        "pods": pods,
    }


def _labels(**labels: str) -> str:
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


def resource_metrics(usage: UsageLedger, *, now: datetime) -> str:
    """The kubelet's `/metrics/resource` text format (Prometheus exposition 0.0.4)."""
    at = usage.updated_at or now
    stamp = f" {round(at.timestamp() * 1000)}"
    running = sorted((p for p in usage.pods.values() if p.running), key=lambda p: (p.namespace, p.name))
    lines = [
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "# TYPE container_cpu_usage_seconds_total counter",
    ]
    lines += [
        f"container_cpu_usage_seconds_total{_labels(container=p.container, namespace=p.namespace, pod=p.name)} {p.cpu_core_seconds:.9f}{stamp}"
        for p in running
        if p.cpu_core_seconds is not None
    ]
    lines += [
        "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes",
        "# TYPE container_memory_working_set_bytes gauge",
    ]
    lines += [
        f"container_memory_working_set_bytes{_labels(container=p.container, namespace=p.namespace, pod=p.name)} {round(p.memory_bytes)}{stamp}"
        for p in running
        if p.memory_bytes is not None
    ]
    lines += [
        "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds",
        "# TYPE container_start_time_seconds gauge",
    ]
    lines += [
        f"container_start_time_seconds{_labels(container=p.container, namespace=p.namespace, pod=p.name)} {p.started_at.timestamp():.3f}{stamp}"
        for p in running
        if p.started_at is not None
    ]
    lines += [
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "# TYPE node_cpu_usage_seconds_total counter",
        f"node_cpu_usage_seconds_total {usage.node_cpu_core_seconds:.9f}{stamp}",
        "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes",
        "# TYPE node_memory_working_set_bytes gauge",
        f"node_memory_working_set_bytes {round(_sum(p.memory_bytes for p in running) or 0)}{stamp}",
        "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "# TYPE pod_cpu_usage_seconds_total counter",
    ]
    lines += [
        f"pod_cpu_usage_seconds_total{_labels(namespace=p.namespace, pod=p.name)} {p.cpu_core_seconds:.9f}{stamp}"
        for p in running
        if p.cpu_core_seconds is not None
    ]
    lines += [
        "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes",
        "# TYPE pod_memory_working_set_bytes gauge",
    ]
    lines += [
        f"pod_memory_working_set_bytes{_labels(namespace=p.namespace, pod=p.name)} {round(p.memory_bytes)}{stamp}"
        for p in running
        if p.memory_bytes is not None
    ]
    lines += [
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
        "# TYPE resource_scrape_error gauge",
        f"resource_scrape_error {0 if usage.updated_at is not None else 1}",
    ]
    return "\n".join(lines) + "\n"
