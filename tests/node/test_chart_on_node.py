"""The chart as an operator installs it: `helm install` onto a real node, from our own image.

One release for the module, installed by the real helm with the image built from the
Dockerfile and the in-cluster sandbox RunPod (`sandbox.enabled=true`). The tests run in order
and each builds on the last: hooks, pods on the node, the virtual node, a GPU Job to its exit
code with `kubectl logs` through the apiserver, a leader killed mid-flight, the webhook scaled
to zero (a running pod is still labelled, deleted and its RunPod pod terminated), `helm upgrade`, and
`helm uninstall`, which must leave no RunPod pod and nothing the chart or its processes made.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controlplane import ControlPlane
from controlplane.node import WorkerNode
from controlplane.node_config import NODE_NAME, POD_CIDR
from tests.chart.rendering import REPO, fetch_helm
from tests.node.release import Release, owned_by, wait_for

RELEASE = "rk"
NAMESPACE = "runpod-system"
VIRTUAL_NODE = "virtual-runpod"


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, worker_node: WorkerNode, chart_image: str) -> Iterator[Release]:
    installed = Release(
        plane=control_plane, helm=fetch_helm(), name=RELEASE, namespace=NAMESPACE, image=chart_image
    )
    installed.install()
    try:
        yield installed
    finally:
        # Whatever a failed test left: never leave the release (and its webhooks) to later tests.
        if installed.helm_run("status", RELEASE, check=False).returncode == 0:
            installed.uninstall()


def gpu_pod(name: str, script: str) -> dict[str, Any]:
    """A one-GPU pod for the virtual node running `script`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                 "resources": {"limits": {"nvidia.com/gpu": 1}}}
            ],
        },
    }  # fmt: skip


def run_until_running(release: Release, namespace: str, manifest: dict[str, Any]) -> None:
    name = manifest["metadata"]["name"]
    release.plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    wait_for(
        f"{name} Running",
        lambda: release.kubectl_json("get", "pod", name, "-n", namespace)["status"].get("phase") == "Running",
        timeout=180,
    )


def _owner_suffix(namespace: str, pod: str) -> str:
    return f"/{namespace}/{pod}"


def _runpod_pods_of(release: Release, namespace: str, pod: str) -> list[dict[str, Any]]:
    return [
        p
        for p in release.runpod_pods()
        if str((p.get("env") or {}).get("RPVK_OWNER", "")).endswith(_owner_suffix(namespace, pod))
    ]


def test_the_hook_jobs_wrote_the_tls_secret_and_both_ca_bundles(release: Release) -> None:
    secret = release.kubectl_json("get", "secret", "-n", NAMESPACE, f"{release.fullname}-webhook-tls")
    ca = base64.b64decode(secret["data"]["ca.crt"])
    assert b"BEGIN CERTIFICATE" in ca
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        config = release.kubectl_json("get", kind, release.fullname)
        bundles = {base64.b64decode(hook["clientConfig"]["caBundle"]) for hook in config["webhooks"]}
        assert bundles == {ca}, kind
    # The hooks cleaned up after themselves (hook-delete-policy hook-succeeded).
    jobs = release.kubectl_json("get", "jobs", "-n", NAMESPACE)["items"]
    assert [j["metadata"]["name"] for j in jobs] == []


def test_the_charts_pods_run_on_the_real_node_from_the_built_image(release: Release) -> None:
    for component, count in (("webhook", 2), ("binder", 2), ("sandbox", 1)):
        pods = wait_for(
            f"{count} Ready {component} pod(s)",
            lambda c=component, n=count: release.running_ready(c, n),
            timeout=180,
        )
        for pod in pods:
            assert pod["spec"]["nodeName"] == NODE_NAME
            assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_CIDR)
            assert pod["spec"]["containers"][0]["image"] == release.image
    # The webhook Service has both replicas as endpoints, behind a PodDisruptionBudget.
    slices = release.kubectl_json(
        "get",
        "endpointslices",
        "-n",
        NAMESPACE,
        "-l",
        f"kubernetes.io/service-name={release.fullname}-webhook",
    )["items"]
    ready = [e for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")]
    assert len(ready) == 2
    pdb = release.kubectl_json("get", "pdb", "-n", NAMESPACE, f"{release.fullname}-webhook")
    assert pdb["status"]["currentHealthy"] == 2


def test_the_virtual_node_registers_and_turns_ready_behind_the_elected_leader(release: Release) -> None:
    def ready_node() -> dict[str, Any] | None:
        found = release.plane.kubectl("get", "node", VIRTUAL_NODE, "-o", "json", check=False)
        if found.returncode != 0:
            return None
        node: dict[str, Any] = json.loads(found.stdout)
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        return node if conditions.get("Ready") == "True" else None

    node = wait_for("the virtual node Ready", ready_node, timeout=180)
    leader = wait_for("a leader", release.leader, timeout=60)
    binders = {p["metadata"]["name"]: p["status"]["podIP"] for p in release.pods("binder")}
    assert leader in binders
    # The node's address is the leader pod's IP: that is where the apiserver sends `kubectl logs`.
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == binders[leader]


def test_a_gpu_job_from_the_examples_runs_to_its_exit_code_with_logs(
    release: Release, namespace: str
) -> None:
    release.plane.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "gpu-job.yaml"))

    def finished() -> dict[str, Any] | None:
        job = release.kubectl_json("get", "job", "train", "-n", namespace)
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        return job if "True" in (conditions.get("Complete"), conditions.get("Failed")) else None

    job = wait_for("the Job to finish", finished, timeout=240)
    assert job["status"].get("succeeded") == 1
    pod = release.kubectl_json("get", "pods", "-n", namespace, "-l", "job-name=train")["items"][0]
    assert pod["spec"]["nodeName"] == VIRTUAL_NODE
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["annotations"]["runpod.io/exit-code"] == "0"
    # kubectl logs goes apiserver -> the virtual node's kubelet API on the leader pod.
    logs = release.plane.kubectl("logs", "-n", namespace, "job/train").stdout
    assert "epoch 3/3 loss=0.22" in logs
    assert "model saved" in logs
    # Once the exit code is known the RunPod pod is terminated.
    wait_for(
        "the RunPod pod to be gone",
        lambda: not _runpod_pods_of(release, namespace, pod["metadata"]["name"]),
        timeout=60,
    )


def test_killing_the_leader_pod_hands_over_without_a_duplicate_runpod_pod(
    release: Release, namespace: str
) -> None:
    run_until_running(release, namespace, gpu_pod("long-run", "echo up; sleep 3600"))
    before = release.leader()
    release.plane.kubectl(
        "delete", "pod", "-n", NAMESPACE, before, "--grace-period=0", "--force", "--wait=false"
    )
    after = wait_for(
        "a new leader",
        lambda: (lambda now: now if now and now != before else None)(release.leader()),
        timeout=120,
    )
    assert after != before
    # The new leader recovers the pod from its annotations: same RunPod pod, never a second one.
    pod_id = release.kubectl_json("get", "pod", "long-run", "-n", namespace)["metadata"]["annotations"][
        "runpod.io/pod-id"
    ]
    for _ in range(3):
        wait_for("a sync tick of the new leader", lambda: release.running_ready("binder", 2), timeout=180)
        assert [p["id"] for p in _runpod_pods_of(release, namespace, "long-run")] == [pod_id]
    release.plane.kubectl("delete", "pod", "long-run", "-n", namespace, "--wait=true", "--timeout=120s")
    assert _runpod_pods_of(release, namespace, "long-run") == []


def test_with_the_webhook_scaled_to_zero_a_running_pod_is_labelled_and_deleted_without_a_leak(
    release: Release, namespace: str
) -> None:
    run_until_running(release, namespace, gpu_pod("during-outage", "echo up; sleep 3600"))
    pod_id = release.kubectl_json("get", "pod", "during-outage", "-n", namespace)["metadata"]["annotations"][
        "runpod.io/pod-id"
    ]
    webhook = f"deployment/{release.fullname}-webhook"
    release.plane.kubectl("scale", "-n", NAMESPACE, webhook, "--replicas=0")
    try:
        wait_for("no webhook pod", lambda: not release.pods("webhook"), timeout=120)
        # New RunPod pods cannot be planned meanwhile (failurePolicy Fail), and say why.
        blocked = release.plane.kubectl(
            "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(gpu_pod("new", "true"))
        )
        assert blocked.returncode != 0 and "mutate.runpod-kubelet.io" in blocked.stderr
        # Everything else goes on: users label the pod, the binder records and deletes it.
        labelled = release.plane.kubectl(
            "label", "pod", "during-outage", "-n", namespace, "team=ml", check=False
        )
        assert labelled.returncode == 0, labelled.stderr
        release.plane.kubectl(
            "delete", "pod", "during-outage", "-n", namespace, "--wait=true", "--timeout=120s"
        )
        assert pod_id not in {p["id"] for p in _runpod_pods_of(release, namespace, "during-outage")}
    finally:
        release.plane.kubectl("scale", "-n", NAMESPACE, webhook, "--replicas=2")
        wait_for("the webhook back", lambda: release.running_ready("webhook", 2), timeout=180)


def test_helm_upgrade_keeps_the_ca_bundle_and_admission_working(release: Release, namespace: str) -> None:
    def bundle() -> str:
        return str(
            release.kubectl_json("get", "mutatingwebhookconfiguration", release.fullname)["webhooks"][0][
                "clientConfig"
            ]["caBundle"]
        )

    before = bundle()
    release.upgrade("--set", "kubelet.maxGpuPrice=0.6")
    assert bundle() == before
    # The upgraded webhook still admits (and refuses) through the Service.
    refused = release.plane.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False,
        input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo", "annotations": {"runpod.io/gpu-tipes": "x"}},
            "spec": {"nodeSelector": {"type": "virtual-kubelet"}, "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                     "containers": [{"name": "m", "image": "busybox"}]},
        }),
    )  # fmt: skip
    assert refused.returncode != 0
    assert "runpod.io/gpu-types" in refused.stderr


def test_helm_uninstall_drains_the_node_and_leaves_nothing_behind(release: Release, namespace: str) -> None:
    run_until_running(release, namespace, gpu_pod("still-running", "sleep 3600"))
    url = release.sandbox_url()
    assert len(release.runpod_pods(url)) == 1

    # Watch the sandbox while helm uninstalls: the last count it answers, before the release
    # deletes it, is what the binder left on RunPod.
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(httpx.HTTPError):
                seen.append(len(release.runpod_pods(url)))
            done.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = release.uninstall()
    done.set()
    watcher.join()
    assert result.returncode == 0, result.stderr
    assert seen and seen[-1] == 0, seen

    plane = release.plane
    assert plane.kubectl("get", "pod", "still-running", "-n", namespace, check=False).returncode != 0
    assert plane.kubectl("get", "node", VIRTUAL_NODE, check=False).returncode != 0
    for kind in (
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "clusterroles",
        "clusterrolebindings",
    ):
        assert owned_by(RELEASE, plane_items(plane, kind)) == [], kind
    left = plane.kubectl(
        "get",
        "all,secrets,configmaps,leases,serviceaccounts,roles,rolebindings,pdb",
        "-n",
        NAMESPACE,
        "-o",
        "name",
    ).stdout.split()
    assert [name for name in left if not name.endswith(("/default", "/kube-root-ca.crt"))] == []
    node_leases = plane.kubectl("get", "lease", "-n", "kube-node-lease", VIRTUAL_NODE, check=False)
    assert node_leases.returncode != 0


def plane_items(plane: ControlPlane, kind: str) -> list[dict[str, Any]]:
    return list(json.loads(plane.kubectl("get", kind, "-o", "json").stdout)["items"])
