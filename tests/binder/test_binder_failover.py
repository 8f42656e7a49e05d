"""Leader failover with creates in flight: never a second RunPod pod for one Kubernetes pod.

Two `runpod-kubelet binder` replicas (subprocesses, as the Deployment runs them) with short lease
timings elect a leader against the real control plane; RunPod is the sandbox, whose creates
act at once but answer only after a delay (so POSTs are in flight). Ten planned pods arrive at
once; the leader is frozen (SIGSTOP) mid-burst, the standby takes over and finishes every pod,
and the old leader, woken (SIGCONT), must exit 3 having written nothing. The sandbox's own
records are the judge: one RunPod pod per Kubernetes pod, none extra, none orphaned, and exactly
as many creates as pods.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from binder.testing import BinderProcess
from binder.testing import wait_for as _wait_for
from contract.annotations import POD_ID
from contract.plan import Candidate, Plan, plan_to_annotations
from sandbox.testing import RunningSandbox, running_sandbox

pytestmark = pytest.mark.cluster

API_KEY = "test-key"
# Short but valid (renew deadline < lease duration, retry < renew deadline).
LEASE, RENEW, RETRY = 8.0, 6.0, 1.0
PODS = 10
# Every create acts at once and answers 504 this much later: POSTs stay in flight.
CREATE_ANSWER_DELAY = 3.0


@pytest.fixture
def v1(control_plane: Any) -> Iterator[k8s.CoreV1Api]:
    api_client = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield k8s.CoreV1Api(api_client)
    finally:
        api_client.close()


def _plan() -> Plan:
    return Plan(
        candidates=(Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),),
        gpu_count=1,
        cloud="SECURE",
        datacenter_ids=(),
        ports=(),
        container_disk_gb=20,
        max_gpu_price=2.0,
        catalog_revision="test",
    )


def _pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": plan_to_annotations(_plan())},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [{"name": "main", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04"}],
        },
    }


def _holder(v1: k8s.CoreV1Api, namespace: str, lease: str) -> str | None:
    coord = k8s.CoordinationV1Api(v1.api_client)
    try:
        holder: str | None = coord.read_namespaced_lease(lease, namespace).spec.holder_identity
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return holder


def _pods(v1: k8s.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    listed = v1.list_namespaced_pod(namespace)
    items: list[dict[str, Any]] = v1.api_client.sanitize_for_serialization(listed)["items"]
    return items


def _ours(sb: RunningSandbox, cluster_id: str, key: str) -> list[dict[str, Any]]:
    return [
        p
        for p in sb.admin.state()[key]
        if (p.get("env") or {}).get("RPVK_OWNER", "").startswith(cluster_id + "/")
    ]


def test_a_frozen_leader_loses_to_the_standby_and_no_pod_is_created_twice(
    control_plane: Any, v1: k8s.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    node = f"fo-{namespace}"[:63]
    cluster_id = f"cl-{namespace}"
    lease = f"runpod-kubelet-binder-{node}"
    replicas: dict[str, BinderProcess] = {}
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        sb.admin.inject(
            {
                "route": "POST /v2/pods",
                "kind": "ambiguous_timeout",
                "delaySeconds": CREATE_ANSWER_DELAY,
                "count": None,
            }
        )
        args = [
            "--kubeconfig", str(control_plane.kubeconfig), "--runpod-base-url", sb.base_url,
            "--node-name", node, "--namespace", namespace, "--cluster-id", cluster_id,
            "--lease-duration", str(LEASE), "--renew-deadline", str(RENEW), "--retry-period", str(RETRY),
            "--node-status-interval", "1", "--reconcile-interval", "2", "--fast-interval", "0.5",
            "--sweep-interval", "1", "--sweep-grace-seconds", "3", "--gpu-budget", "64",
            "--max-gpu-price", "2", "--log-level", "info",
        ]  # fmt: skip
        try:
            for name in ("replica-a", "replica-b"):
                replicas[name] = BinderProcess(
                    args=[*args, "--identity", name],
                    log_path=tmp_path / f"binder-{name}.log",
                    api_key=API_KEY,
                    name=name,
                )
            leader_name = _wait_for("a leader", lambda: _holder(v1, namespace, lease), timeout=120)
            leader = replicas[leader_name]
            standby = next(r for r in replicas.values() if r is not leader)
            _wait_for(
                "both replicas ready", lambda: leader.readyz() == 200 and standby.readyz() == 200, timeout=120
            )

            for index in range(PODS):
                v1.create_namespaced_pod(namespace, _pod(f"burst-{index}", node))
            # Some creates reached RunPod and are still waiting for their answer: freeze now.
            _wait_for(
                "creates in flight", lambda: sb.admin.state()["creates"] >= 3, timeout=60, interval=0.05
            )
            leader.proc.send_signal(signal.SIGSTOP)

            _wait_for(
                "the standby to take over",
                lambda: _holder(v1, namespace, lease) == standby.name,
                timeout=LEASE + 15,
            )

            def all_recorded() -> list[dict[str, Any]] | None:
                pods = _pods(v1, namespace)
                done = [p for p in pods if POD_ID in (p["metadata"].get("annotations") or {})]
                return pods if len(done) == PODS else None

            # The standby adopts what the frozen leader created and creates the rest (an attempt
            # recorded but not listed is only superseded after RunPod's 30 s visibility window).
            pods = _wait_for("every pod to get its RunPod pod", all_recorded, timeout=120, interval=0.5)

            leader.proc.send_signal(signal.SIGCONT)
            assert leader.proc.wait(timeout=RENEW + 15) == 3
            assert "lost leadership" in leader.output()

            # RunPod has no conditional create and no idempotency key, so one window stays open:
            # a leader frozen after its last fence check but before its request body left can
            # still land one create when it wakes. That pod carries the same UID marker and the
            # new leader terminates it as a duplicate within a tick. What must hold: never two
            # *live* RunPod pods per Kubernetes pod once the tick has run, never an orphan, and
            # at most that one late create.
            def settled() -> list[dict[str, Any]] | None:
                live = [p for p in _ours(sb, cluster_id, "pods") if p.get("status") != "TERMINATED"]
                counts: dict[str, int] = {}
                for runpod_pod in live:
                    uid = runpod_pod["env"]["RPVK_POD_UID"]
                    counts[uid] = counts.get(uid, 0) + 1
                return live if len(counts) == PODS and all(c == 1 for c in counts.values()) else None

            time.sleep(3)  # a few ticks of the new leader: anything the old one wrote shows now
            live = _wait_for("one live RunPod pod per pod", settled, timeout=60, interval=0.5)
            state_creates = sb.admin.state()["creates"]
            terminated = _ours(sb, cluster_id, "terminated")
            pods = _pods(v1, namespace)
            by_uid: dict[str, list[str]] = {}
            for runpod_pod in live:
                by_uid.setdefault(runpod_pod["env"]["RPVK_POD_UID"], []).append(runpod_pod["id"])
            uids = {p["metadata"]["uid"] for p in pods}
            assert len(pods) == PODS
            assert set(by_uid) == uids, (
                "a RunPod pod without its Kubernetes pod (orphan) or a pod without one"
            )
            assert all(len(ids) == 1 for ids in by_uid.values()), f"duplicates: {by_uid}"
            for pod in pods:
                assert pod["metadata"]["annotations"][POD_ID] == by_uid[pod["metadata"]["uid"]][0]
            assert len(terminated) <= 1, f"more than the one late create: {terminated}"
            assert state_creates == PODS + len(terminated)
            assert standby.proc.poll() is None
        finally:
            for replica in replicas.values():
                replica.kill()
            for replica in replicas.values():
                sys.stderr.write(f"\n----- binder {replica.name} -----\n{replica.output()[-20000:]}\n")
            control_plane.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)
