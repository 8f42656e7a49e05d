"""Usage from RunPod's percentages: absolute against what the pod declares, a counter that only grows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binder.pods.usage import UsageLedger, advance, parse_cpu, parse_memory, shape_of
from runpod_api.models import Pod

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def k8s_pod(uid: str = "u1", *, limits: dict[str, str] | None = None, requests: dict[str, str] | None = None,
            pod_id: str | None = "rp1") -> dict[str, Any]:  # fmt: skip
    annotations = {"runpod.io/pod-id": pod_id} if pod_id else {}
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return {
        "metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox", "resources": resources}]},
    }


def runpod(pod_id: str = "rp1", *, cpu: int | None = 50, memory: int | None = 25, gpus: list[dict[str, int]] | None = None,
           status: str = "RUNNING") -> Pod:  # fmt: skip
    runtime: dict[str, Any] = {"uptime": 10, "ports": [], "gpus": gpus or []}
    if cpu is not None:
        runtime["cpu"] = {"util": cpu}
    if memory is not None:
        runtime["memory"] = {"util": memory}
    return Pod.model_validate(
        {
            "id": pod_id,
            "status": status,
            "runtime": runtime if status == "RUNNING" else None,
            "startedAt": "2026-12-02T07:59:00Z",
        }
    )


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        (4, 4.0),
        ("1.5", 1.5),
        ("250000u", 0.25),
        ("", None),
        ("lots", None),
        (None, None),
    ],
)
def test_cpu_quantities_are_read_as_kubernetes_writes_them(quantity: Any, cores: float | None) -> None:
    assert parse_cpu(quantity) == cores


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("16Gi", 16 * 2**30), ("512Mi", 512 * 2**20), ("1G", 1e9), ("128974848", 128974848.0)],
)
def test_memory_quantities_are_read_as_kubernetes_writes_them(quantity: str, size: float) -> None:
    assert parse_memory(quantity) == size


def test_the_shape_is_the_limits_else_the_requests() -> None:
    shape = shape_of(k8s_pod(limits={"memory": "8Gi"}, requests={"cpu": "2", "memory": "4Gi"}))
    assert (shape.cpu_cores, shape.memory_bytes) == (2.0, 8 * 2**30)


def test_percentages_become_cores_and_bytes_of_the_declared_shape() -> None:
    ledger = advance(
        UsageLedger.empty(),
        runpod_pods={
            "rp1": runpod(
                cpu=50, memory=25, gpus=[{"util": 90, "memoryUtil": 40}, {"util": 70, "memoryUtil": 60}]
            )
        },
        pods=[k8s_pod(limits={"cpu": "4", "memory": "16Gi"})],
        now=T0,
    )
    used = ledger.pods["u1"]
    assert used.cpu_cores == 2.0
    assert used.memory_bytes == 4 * 2**30
    assert (used.gpu_util, used.gpu_memory_util) == (80.0, 50.0)
    assert used.cpu_core_seconds == 0.0  # nothing elapsed yet


def test_the_cpu_counter_integrates_between_ticks_and_never_goes_backwards() -> None:
    pods = [k8s_pod(limits={"cpu": "2", "memory": "1Gi"})]
    ledger = advance(UsageLedger.empty(), runpod_pods={"rp1": runpod(cpu=50)}, pods=pods, now=T0)
    ledger = advance(ledger, runpod_pods={"rp1": runpod(cpu=100)}, pods=pods, now=T0 + timedelta(seconds=10))
    assert ledger.pods["u1"].cpu_core_seconds == 20.0  # 2 cores for 10 s
    assert ledger.node_cpu_core_seconds == 20.0
    # The RunPod pod stops: the pod keeps its counter; then the pod is gone: the node keeps its own.
    ledger = advance(
        ledger, runpod_pods={"rp1": runpod(status="EXITED")}, pods=pods, now=T0 + timedelta(seconds=20)
    )
    assert ledger.pods["u1"].running is False and ledger.pods["u1"].cpu_core_seconds == 20.0
    ledger = advance(ledger, runpod_pods={}, pods=[], now=T0 + timedelta(seconds=30))
    assert ledger.pods == {}
    assert ledger.node_cpu_core_seconds == 20.0


def test_an_undeclared_resource_has_no_figure_rather_than_an_invented_one() -> None:
    ledger = advance(
        UsageLedger.empty(), runpod_pods={"rp1": runpod()}, pods=[k8s_pod(requests={"memory": "2Gi"})], now=T0
    )
    used = ledger.pods["u1"]
    assert used.cpu_cores is None and used.cpu_core_seconds is None
    assert used.memory_bytes == 0.25 * 2 * 2**30


def test_pods_without_a_runpod_pod_yet_are_not_listed() -> None:
    ledger = advance(UsageLedger.empty(), runpod_pods={}, pods=[k8s_pod(pod_id=None), k8s_pod("u2")], now=T0)
    assert ledger.pods == {}
