"""`runpod-kubelet binder` as a process against the real control plane and the sandbox RunPod.

Each test runs binders as subprocesses exactly as the Deployment does (flags + RUNPOD_API_KEY),
with short election and status timings so failover is observable in seconds. Waits for start-up
are generous (a wait, not a sleep): importing the Kubernetes client alone takes seconds on a
loaded two-core CI machine.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from binder.catalog_publisher import fetch_catalog
from binder.testing import BinderProcess
from binder.testing import wait_for as _wait_for
from contract.catalog import Catalog, parse_catalog_document
from contract.policy import CATALOG_CONFIGMAP, CATALOG_CONFIGMAP_KEY
from runpod_api.client import RunPodClient
from sandbox.testing import running_sandbox

pytestmark = pytest.mark.cluster

API_KEY = "test-key"
# Short but valid (renew deadline < lease duration, retry < renew deadline).
LEASE, RENEW, RETRY = 8.0, 6.0, 1.0


@pytest.fixture
def core(control_plane: Any) -> Iterator[tuple[k8s.CoreV1Api, k8s.CoordinationV1Api]]:
    api_client = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield k8s.CoreV1Api(api_client), k8s.CoordinationV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def binders(control_plane: Any, namespace: str, tmp_path: Path) -> Iterator[Callable[..., BinderProcess]]:
    """Factory of binder processes for this test's node; all stopped (and their node deleted)
    afterwards. Logs are printed when the test failed."""
    started: list[BinderProcess] = []
    node_name = f"vr-{namespace}"[:63]

    def start(name: str, base_url: str, *extra: str) -> BinderProcess:
        args = [
            "--kubeconfig", str(control_plane.kubeconfig), "--runpod-base-url", base_url,
            "--node-name", node_name, "--namespace", namespace,
            "--lease-duration", str(LEASE), "--renew-deadline", str(RENEW), "--retry-period", str(RETRY),
            "--node-status-interval", "1", "--log-level", "debug", *extra,
        ]  # fmt: skip
        binder = BinderProcess(
            args=[*args, "--identity", name],
            log_path=tmp_path / f"binder-{name}.log",
            api_key=API_KEY,
            name=name,
        )
        started.append(binder)
        return binder

    start.node_name = node_name  # type: ignore[attr-defined]
    yield start
    for binder in started:
        binder.stop(signal.SIGKILL)
    # pytest shows captured teardown output only when the test failed.
    for binder in started:
        sys.stderr.write(f"\n----- binder {binder.name} -----\n{binder.output()[-20000:]}\n")
    control_plane.kubectl("delete", "node", node_name, "--ignore-not-found", "--wait=false", check=False)


def _node(core: k8s.CoreV1Api, name: str) -> dict[str, Any] | None:
    try:
        node: dict[str, Any] = core.api_client.sanitize_for_serialization(core.read_node(name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return node


def _ready(node: dict[str, Any] | None) -> dict[str, Any] | None:
    for condition in (node or {}).get("status", {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return None


def _lease_spec(coord: k8s.CoordinationV1Api, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        lease = coord.read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    spec: dict[str, Any] = coord.api_client.sanitize_for_serialization(lease.spec)
    return spec


def test_node_registers_turns_ready_renews_its_lease_publishes_the_catalog_and_follows_the_key(
    core: tuple[k8s.CoreV1Api, k8s.CoordinationV1Api], binders: Callable[..., BinderProcess], namespace: str
) -> None:
    v1, coord = core
    node_name: str = binders.node_name  # type: ignore[attr-defined]
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        binder = binders("solo", sb.base_url)

        # Registers with the labels, taint, capacity and endpoint the scheduler relies on.
        node = _wait_for("node Ready", lambda: (_ready(_node(v1, node_name)) or {}).get("status") == "True"
                         and _node(v1, node_name), timeout=120)  # fmt: skip
        labels = node["metadata"]["labels"]
        assert labels["type"] == "virtual-kubelet"
        assert labels["kubernetes.io/role"] == "agent"
        assert labels["kubernetes.io/hostname"] == node_name
        assert {"key": "virtual-kubelet.io/provider", "value": "runpod", "effect": "NoSchedule"} in node[
            "spec"
        ]["taints"]
        kube_system_uid = v1.read_namespace("kube-system").metadata.uid
        assert node["spec"]["providerID"] == f"runpod://{kube_system_uid}/{node_name}"
        assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"
        assert parse_quantity(node["status"]["allocatable"]["pods"]) == 1000  # stored as "1k"
        assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0

        # The heartbeat Lease exists, is held by the node, and moves forward.
        first = _wait_for("node lease", lambda: _lease_spec(coord, "kube-node-lease", node_name), timeout=15)
        assert first["holderIdentity"] == node_name
        assert first["leaseDurationSeconds"] == 40
        _wait_for(
            "node lease renewal",
            lambda: (
                (_lease_spec(coord, "kube-node-lease", node_name) or {}).get("renewTime")
                != first["renewTime"]
            ),
            timeout=15,
        )

        # The catalog ConfigMap carries exactly what the sandbox offers: GPUs with CUDA per data
        # center, and CPU flavours.
        configmap = _wait_for("catalog ConfigMap", lambda: _configmap(v1, namespace), timeout=30)
        published = parse_catalog_document(configmap[CATALOG_CONFIGMAP_KEY])
        expected = asyncio.run(_fetch(sb.base_url))
        assert published.gpu_types and published.cpu_types and published.revision == expected.revision
        assert published.fetched_at is not None
        # The node's cpu capacity is the CPU budget (default 64 vCPUs).
        assert node["status"]["capacity"]["cpu"] == node["status"]["allocatable"]["cpu"] == "64"

        assert binder.readyz() == 200
        assert "runpod_kubelet_node_ready 1.0" in binder.metrics()

        # A revoked key turns the node NotReady with the reason; a valid key again, Ready.
        sb.admin.revoke_key(API_KEY)
        condition = _wait_for(
            "NotReady after revoking the key",
            lambda: (c := _ready(_node(v1, node_name))) and c["status"] == "False" and c,
            timeout=30,
        )
        assert condition["reason"] == "RunPodUnauthorized"
        assert condition["message"] == "RunPod rejected the API key (401)"
        assert API_KEY not in json.dumps(condition)
        sb.admin.add_key(API_KEY)
        _wait_for(
            "Ready after restoring the key",
            lambda: (_ready(_node(v1, node_name)) or {}).get("status") == "True",
            timeout=30,
        )

        # SIGTERM: clean exit, leader lease released so a standby would not wait it out.
        assert binder.stop() == 0
        released = _lease_spec(coord, namespace, f"runpod-kubelet-binder-{node_name}")
        assert released is not None and not released.get("holderIdentity")
        assert API_KEY not in binder.output()


async def _fetch(base_url: str) -> Catalog:
    async with RunPodClient(api_key=API_KEY, base_url=base_url) as client:
        return await fetch_catalog(client, now=datetime.now(UTC))


def _configmap(v1: k8s.CoreV1Api, namespace: str) -> dict[str, str] | None:
    try:
        data: dict[str, str] | None = v1.read_namespaced_config_map(CATALOG_CONFIGMAP, namespace).data
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return data


def test_two_replicas_elect_exactly_one_leader_and_a_standby_takes_over_when_it_dies(
    core: tuple[k8s.CoreV1Api, k8s.CoordinationV1Api], binders: Callable[..., BinderProcess], namespace: str
) -> None:
    v1, coord = core
    node_name: str = binders.node_name  # type: ignore[attr-defined]
    lease_name = f"runpod-kubelet-binder-{node_name}"
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        replicas = {name: binders(name, sb.base_url) for name in ("replica-a", "replica-b")}
        spec = _wait_for(
            "a leader",
            lambda: (s := _lease_spec(coord, namespace, lease_name)) and s.get("holderIdentity") and s,
            timeout=120,
        )
        leader_name = spec["holderIdentity"]
        assert leader_name in replicas
        standby_name = next(n for n in replicas if n != leader_name)
        _wait_for(
            "node Ready", lambda: (_ready(_node(v1, node_name)) or {}).get("status") == "True", timeout=30
        )
        # Both replicas are ready: the standby is ready to take over.
        assert _wait_for("both ready", lambda: all(r.readyz() == 200 for r in replicas.values()), timeout=120)
        # Exactly one leader for a while: the holder never flips while both live.
        for _ in range(int(LEASE / RETRY)):
            assert (_lease_spec(coord, namespace, lease_name) or {}).get("holderIdentity") == leader_name
            time.sleep(RETRY)
        assert "became leader" in replicas[leader_name].output()
        assert "became leader" not in replicas[standby_name].output()

        killed_at = time.monotonic()
        replicas[leader_name].stop(signal.SIGKILL)
        taken = _wait_for(
            "the standby to take over",
            lambda: (
                (s := _lease_spec(coord, namespace, lease_name)) and s["holderIdentity"] == standby_name and s
            ),
            timeout=LEASE + 10,
        )
        took = time.monotonic() - killed_at
        # Within the lease duration plus one jittered retry period (client-go: up to 2.2x retry),
        # with slack for a loaded CI machine.
        assert took <= LEASE + 2.2 * RETRY + 4.0, f"takeover took {took:.1f}s"
        assert taken["leaseTransitions"] >= spec.get("leaseTransitions", 0) + 1
        # The new leader keeps the node Ready and its lease renewed.
        before = _lease_spec(coord, "kube-node-lease", node_name) or {}
        _wait_for(
            "node lease renewed by the new leader",
            lambda: (
                (_lease_spec(coord, "kube-node-lease", node_name) or {}).get("renewTime")
                != before.get("renewTime")
            ),
            timeout=15,
        )
        assert (_ready(_node(v1, node_name)) or {}).get("status") == "True"

        # A leader that stalls past its lease loses it, and exits non-zero when it wakes.
        late = binders("replica-c", sb.base_url)
        _wait_for("replica-c standing by", lambda: late.readyz() == 200, timeout=120)
        stalled = replicas[standby_name]
        stalled.proc.send_signal(signal.SIGSTOP)
        _wait_for(
            "replica-c to take over from the stalled leader",
            lambda: (_lease_spec(coord, namespace, lease_name) or {}).get("holderIdentity") == "replica-c",
            timeout=LEASE + 10,
        )
        stalled.proc.send_signal(signal.SIGCONT)
        assert stalled.proc.wait(timeout=RENEW + 10) == 3
        assert "lost leadership" in stalled.output()
