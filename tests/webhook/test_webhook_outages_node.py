"""Running work survives outages of RunPod's API, of the key and of every binder replica, on a
cluster where the node lifecycle controller really evicts: a real worker node in the same zone.

A control plane of its own, tuned as an operator could tune one, so that "longer than the
default toleration" fits in a test run: the apiserver's DefaultTolerationSeconds gives every pod
`TOLERATION` seconds (300 in a stock cluster; `RPVK_OUTAGE_TOLERATION=300` runs this module at
full length), and the controller-manager marks a silent node Unknown after 20 s. On it: the real
worker node (`controlplane.WorkerNode`, Ready throughout: without it the virtual node's zone is
in full disruption and nothing is ever evicted), two binder replicas electing a leader, the
webhook (told the apiserver's default, so it replaces it with a day) and the sandbox RunPod.

Each outage lasts until the virtual node has carried its NoExecute taint for more than twice the
default toleration. Throughout, no protected pod is evicted or re-created and no RunPod pod is
terminated or duplicated, while a pod that keeps a short toleration of its own is evicted (the
eviction machinery was live), and a pod created meanwhile waits Pending with the scheduler's
reason, then runs once the outage is over.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from webhook_cluster_support import get_pod, serve_webhook, wait_until_served
from webhook_samples import gpu_pod

from binder.testing import BinderProcess, wait_for
from contract.policy import CATALOG_CONFIGMAP
from controlplane import BinariesMissing, ControlPlane, binaries_dir
from controlplane.identities import service_account_kubeconfig
from controlplane.node import WorkerNode, node_binaries_dir
from sandbox.testing import RunningSandbox, running_sandbox

pytestmark = [pytest.mark.node, pytest.mark.cluster]

TOLERATION = int(os.environ.get("RPVK_OUTAGE_TOLERATION", "20"))
NODE_GRACE = 20  # seconds of silence before the node lifecycle controller says Unknown
HOLD = 2 * TOLERATION + 5  # how long each outage keeps the NoExecute taint on, at least
OUTAGE_TEST_TIMEOUT = 4 * HOLD + 300
API_KEY = "test-key"
NOT_READY, UNREACHABLE = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"


@dataclass
class Cluster:
    plane: ControlPlane
    node: str  # the virtual node
    apps: str  # the users' namespace
    sandbox: RunningSandbox
    binders: dict[str, BinderProcess]
    start_binder: Callable[[str], BinderProcess]
    protected: dict[str, str] = field(default_factory=dict)  # pod name -> its RunPod pod id


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    try:
        bin_dir = binaries_dir(build=False)
    except BinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    data_dir = Path(tempfile.mkdtemp(prefix="runpod-kubelet-outage-"))
    plane = ControlPlane(
        bin_dir,
        data_dir,
        extra_args={
            "kube-apiserver": [
                f"--default-not-ready-toleration-seconds={TOLERATION}",
                f"--default-unreachable-toleration-seconds={TOLERATION}",
            ],
            "kube-controller-manager": [
                f"--node-monitor-grace-period={NODE_GRACE}s",
                "--node-monitor-period=2s",
            ],
        },
    )
    plane.start()
    worker = WorkerNode(plane, node_bin_dir=node_binaries_dir(), data_dir=data_dir / "node")
    binders: dict[str, BinderProcess] = {}
    try:
        worker.start()
        tag = secrets.token_hex(3)
        system, node, apps = f"runpod-{tag}", f"vr-{tag}", f"apps-{tag}"
        for name in (system, apps):
            plane.kubectl("create", "namespace", name)
        wait_for(
            "the default ServiceAccount",
            lambda: plane.kubectl("get", "sa", "default", "-n", apps, check=False).returncode == 0,
            timeout=60,
        )
        identity = service_account_kubeconfig(
            plane,
            namespace=system,
            account="runpod-kubelet-binder",
            into=data_dir,
            cluster_role="cluster-admin",
        )
        with running_sandbox(api_key=API_KEY, seed=1) as sandbox:
            args = [
                "--kubeconfig", str(identity.kubeconfig), "--runpod-base-url", sandbox.base_url,
                "--node-name", node, "--namespace", system, "--max-gpu-price", "2",
                "--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1",
                "--reconcile-interval", "2", "--fast-interval", "0.5", "--node-status-interval", "2",
            ]  # fmt: skip

            def start_binder(name: str) -> BinderProcess:
                binders[name] = BinderProcess(
                    args=[*args, "--identity", name],
                    log_path=data_dir / f"binder-{name}.log",
                    api_key=API_KEY,
                    name=name,
                    append=True,
                )
                return binders[name]

            for name in ("replica-a", "replica-b"):
                start_binder(name)
            wait_for(
                "the catalog the binder publishes",
                lambda: (
                    plane.kubectl("get", "configmap", CATALOG_CONFIGMAP, "-n", system, check=False).returncode
                    == 0
                ),
                timeout=120,
            )
            (data_dir / "webhook").mkdir()
            with serve_webhook(
                plane,
                namespace=system,
                label=tag,
                name=f"runpod-kubelet-{tag}",
                tls=data_dir / "webhook",
                binder_username=identity.username,
                args=[
                    f"--node-name={node}",
                    "--max-gpu-price=2",
                    f"--apiserver-default-toleration-seconds={TOLERATION}",
                ],
            ):
                wait_until_served(plane, apps, tag)
                yield Cluster(plane, node, apps, sandbox, binders, start_binder)
    finally:
        for binder in binders.values():
            binder.stop(signal.SIGKILL)
        for path in sorted(data_dir.glob("binder-*.log")):
            sys.stderr.write(f"\n----- {path.name} -----\n{path.read_text(errors='replace')[-8000:]}\n")
        worker.stop()
        plane.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- what the tests read -------------------------------------------------------------------------


def pod_json(cluster: Cluster, name: str) -> dict[str, Any] | None:
    found = cluster.plane.kubectl("get", "pod", "-n", cluster.apps, name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def node_json(cluster: Cluster) -> dict[str, Any]:
    return dict(json.loads(cluster.plane.kubectl("get", "node", cluster.node, "-o", "json").stdout))


def no_execute_taints(cluster: Cluster) -> set[str]:
    taints = node_json(cluster)["spec"].get("taints") or []
    return {
        t["key"] for t in taints if t.get("effect") == "NoExecute" and t["key"] in (NOT_READY, UNREACHABLE)
    }


def no_schedule_taints(cluster: Cluster) -> set[str]:
    return {
        t["key"] for t in node_json(cluster)["spec"].get("taints") or [] if t.get("effect") == "NoSchedule"
    }


def node_ready(cluster: Cluster) -> str:
    conditions = node_json(cluster)["status"].get("conditions") or []
    return next((str(c["status"]) for c in conditions if c["type"] == "Ready"), "Unknown")


def runpod_pods_named(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """The sandbox's pods not terminated, by the Kubernetes pod their owner marker names
    (`<cluster id>/<namespace>/<name>`)."""
    by_pod: dict[str, list[dict[str, Any]]] = {}
    for pod in cluster.sandbox.admin.state()["pods"]:
        if pod["status"] != "TERMINATED":
            owner = (pod.get("env") or {}).get("RPVK_OWNER", "")
            by_pod.setdefault(owner.rsplit("/", 1)[-1], []).append(pod)
    return by_pod


def create_pod(cluster: Cluster, name: str, *, own_tolerations: int | None = None) -> None:
    pod = gpu_pod()
    pod["metadata"] = {"name": name}
    pod["spec"]["nodeSelector"] = {"type": "virtual-kubelet", "kubernetes.io/hostname": cluster.node}
    pod["spec"]["restartPolicy"] = "Always"
    pod["spec"]["containers"][0].update(
        {"image": "busybox", "command": ["sh", "-c", "echo up; sleep infinity"]}
    )
    if own_tolerations is not None:
        pod["spec"]["tolerations"] += [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": own_tolerations}
            for key in (NOT_READY, UNREACHABLE)
        ]
    cluster.plane.kubectl("create", "-n", cluster.apps, "-f", "-", input=json.dumps(pod))


def running_with_id(cluster: Cluster, name: str) -> str | None:
    pod = pod_json(cluster, name)
    if pod is None or pod.get("status", {}).get("phase") != "Running":
        return None
    return (pod["metadata"].get("annotations") or {}).get("runpod.io/pod-id")


def unschedulable_reason(cluster: Cluster, name: str) -> str | None:
    pod = pod_json(cluster, name) or {}
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition["status"] == "False":
            return f"{condition.get('reason')}: {condition.get('message')}"
    return None


# --- the outage, as every test lives it ----------------------------------------------------------


def ensure_protected_pods(cluster: Cluster) -> None:
    """Two long-running pods on the node, Running on RunPod; created once for the module."""
    wait_for("the virtual node Ready", lambda: node_ready(cluster) == "True", timeout=120)
    for name in ("trainer", "server"):
        if name not in cluster.protected:
            create_pod(cluster, name)
    for name in ("trainer", "server"):
        cluster.protected[name] = wait_for(
            f"{name} Running", lambda n=name: running_with_id(cluster, n), timeout=120
        )


def assert_protected_pods_untouched(cluster: Cluster) -> None:
    live = runpod_pods_named(cluster)
    for name, runpod_id in cluster.protected.items():
        pod = pod_json(cluster, name)
        assert pod is not None, f"{name} was deleted"
        assert "deletionTimestamp" not in pod["metadata"], f"{name} was evicted"
        assert pod["status"]["phase"] == "Running", f"{name} is {pod['status']['phase']}"
        assert (pod["metadata"].get("annotations") or {}).get("runpod.io/pod-id") == runpod_id
        assert [p["id"] for p in live.get(name, [])] == [runpod_id], f"{name}: RunPod pods {live.get(name)}"
        assert live[name][0]["status"] == "RUNNING", f"{name}: RunPod pod {live[name][0]['status']}"


def live_through_outage(
    cluster: Cluster, *, taint: str, late_pod: str, control_pod: str | None = None
) -> None:
    """Called with the outage begun: waits for `taint` to be NoExecute on the node, then keeps
    the outage on for HOLD seconds while checking that nothing protected moves."""
    wait_for(
        f"{taint}:NoExecute on the node", lambda: taint in no_execute_taints(cluster), timeout=NODE_GRACE + 90
    )
    tainted_at = time.monotonic()
    create_pod(cluster, late_pod)
    reason = wait_for(
        f"{late_pod} unschedulable", lambda: unschedulable_reason(cluster, late_pod), timeout=60
    )
    # The scheduler's reason counts taints without naming them; the node names the one at work.
    assert reason.startswith("Unschedulable") and "untolerated taint" in reason, reason
    assert taint in no_schedule_taints(cluster)
    while time.monotonic() - tainted_at < HOLD:
        assert_protected_pods_untouched(cluster)
        assert taint in no_execute_taints(cluster), "the outage ended early: the test proves nothing"
        time.sleep(2)
    if control_pod is not None:
        # A pod that kept a short toleration of its own was evicted by the same taint.
        control = pod_json(cluster, control_pod)
        assert control is None or "deletionTimestamp" in control["metadata"], f"{control_pod} was not evicted"
    pending = pod_json(cluster, late_pod) or {}
    assert pending.get("status", {}).get("phase") == "Pending" and not pending.get("spec", {}).get("nodeName")


def after_outage(cluster: Cluster, *, late_pod: str) -> None:
    wait_for("the virtual node Ready again", lambda: node_ready(cluster) == "True", timeout=120)
    wait_for("the NoExecute taints lifted", lambda: not no_execute_taints(cluster), timeout=60)
    wait_for(f"{late_pod} Running", lambda: running_with_id(cluster, late_pod), timeout=120)
    assert_protected_pods_untouched(cluster)
    cluster.plane.kubectl("delete", "pod", "-n", cluster.apps, late_pod, "--wait=false")


# --- the three outages ---------------------------------------------------------------------------


@pytest.mark.timeout(OUTAGE_TEST_TIMEOUT)
def test_a_runpod_api_outage_longer_than_the_default_toleration_evicts_nothing_of_ours(
    cluster: Cluster,
) -> None:
    ensure_protected_pods(cluster)
    create_pod(cluster, "short-grace", own_tolerations=5)
    short_id = wait_for("short-grace Running", lambda: running_with_id(cluster, "short-grace"), timeout=120)
    for name in ("trainer", "server"):
        assert {
            "key": NOT_READY,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 86400,
        } in (get_pod(cluster.plane, cluster.apps, name)["spec"]["tolerations"])

    cluster.sandbox.admin.inject({"route": "*", "kind": "status", "status": 503, "count": None})
    try:
        wait_for("the node NotReady", lambda: node_ready(cluster) == "False", timeout=60)
        live_through_outage(cluster, taint=NOT_READY, late_pod="late-runpod", control_pod="short-grace")
    finally:
        cluster.sandbox.admin.clear_faults()

    after_outage(cluster, late_pod="late-runpod")
    # The evicted pod's RunPod pod is terminated once RunPod answers again: nothing leaks.
    wait_for("short-grace gone", lambda: pod_json(cluster, "short-grace") is None, timeout=120)
    assert short_id not in {p["id"] for pods in runpod_pods_named(cluster).values() for p in pods}


@pytest.mark.timeout(OUTAGE_TEST_TIMEOUT)
def test_a_revoked_key_longer_than_the_default_toleration_evicts_nothing(cluster: Cluster) -> None:
    ensure_protected_pods(cluster)

    cluster.sandbox.admin.revoke_key(API_KEY)
    try:
        wait_for("the node NotReady", lambda: node_ready(cluster) == "False", timeout=60)
        reason = next(c for c in node_json(cluster)["status"]["conditions"] if c["type"] == "Ready")
        assert reason["reason"] == "RunPodUnauthorized", reason
        live_through_outage(cluster, taint=NOT_READY, late_pod="late-key")
    finally:
        cluster.sandbox.admin.add_key(API_KEY)

    after_outage(cluster, late_pod="late-key")


@pytest.mark.timeout(OUTAGE_TEST_TIMEOUT)
def test_both_binder_replicas_down_longer_than_the_default_toleration_evicts_nothing(
    cluster: Cluster,
) -> None:
    ensure_protected_pods(cluster)

    for name, binder in list(cluster.binders.items()):
        binder.stop(signal.SIGKILL)
        del cluster.binders[name]
    try:
        wait_for("the node Unknown", lambda: node_ready(cluster) == "Unknown", timeout=NODE_GRACE + 60)
        live_through_outage(cluster, taint=UNREACHABLE, late_pod="late-binder")
    finally:
        for name in ("replica-a", "replica-b"):
            if name not in cluster.binders:
                cluster.start_binder(name)

    after_outage(cluster, late_pod="late-binder")
