"""The chart on the real control plane: its cert hooks, its RBAC, its webhook configurations and
its admission policy.

What helm would do, step by step, with the chart's own manifests: apply the hook RBAC, run
`runpod-kubelet certs ensure` as the hook ServiceAccount (a TokenRequest token, so the chart's
least-privilege Role is what is exercised), apply the release, run the post hook, then serve the
webhook as a local process behind the chart's Service with the Secret's material. The real
kube-apiserver then calls it through the chart's configurations and the caBundle `certs` wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from certs.material import service_dns_names
from certs.secret_store import ensure_material
from contract.plan import Candidate, Plan, plan_from_annotations, plan_to_annotations
from controlplane import ControlPlane
from controlplane.identities import service_account_kubeconfig
from tests.chart.rendering import CHART, helm_template

GPU_ANSWER = {
    "gpus": [
        {
            "id": "NVIDIA A40",
            "name": "A40",
            "memory": 48,
            "manufacturer": "NVIDIA",
            "price": {"secure": 0.44, "community": 0.35},
            "dataCenters": [{"id": "EU-RO-1", "availability": "HIGH"}],
        }
    ]
}
_WAIT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def apply(plane: ControlPlane, docs: list[dict[str, Any]]) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def run_certs(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runpod_kubelet.cli", "certs", "ensure", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def gpu_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": [
                {
                    "key": "virtual-kubelet.io/provider",
                    "operator": "Equal",
                    "value": "runpod",
                    "effect": "NoSchedule",
                }
            ],
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
        },
    }


def plain_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


class Release:
    """The chart rendered for one test: a unique release name, cleaned up afterwards."""

    def __init__(self, plane: ControlPlane, helm: Path, namespace: str, apps: str, label: str) -> None:
        self.plane, self.namespace, self.apps = plane, namespace, apps
        self.name = f"rk{secrets.token_hex(3)}"
        rendered = helm_template(
            helm,
            release=self.name,
            namespace=namespace,
            values=["runpod.apiKey=not-a-real-key", f'webhook.namespaceLabels={{"{label}":"yes"}}'],
        )
        assert rendered.returncode == 0, rendered.stderr
        self.docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        self.full = f"{self.name}-runpod-kubelet"

    def get(self, kind: str, suffix: str) -> dict[str, Any]:
        (doc,) = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
        return doc

    def hook_args(self, phase: str) -> list[str]:
        job = self.get("Job", f"-certs-{phase}")
        return list(job["spec"]["template"]["spec"]["containers"][0]["args"][2:])

    def cleanup(self) -> None:
        cluster_scoped = [
            d
            for d in self.docs
            if d["kind"].startswith(("Cluster", "ValidatingAdmissionPolicy"))
            or d["kind"].endswith("WebhookConfiguration")
        ]
        for doc in cluster_scoped:
            self.plane.kubectl(
                "delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False
            )
        self.plane.kubectl("delete", "role,rolebinding", "-n", "kube-node-lease", f"{self.full}-binder",
                           "--ignore-not-found", check=False)  # fmt: skip


@pytest.fixture
def release(control_plane: ControlPlane, helm: Path, namespace: str) -> Iterator[Release]:
    label = f"runpod-kubelet.test/chart-{secrets.token_hex(3)}"
    apps = f"{namespace[:50]}-apps"
    control_plane.kubectl("create", "namespace", apps)
    control_plane.kubectl("label", "namespace", apps, f"{label}=yes")
    rel = Release(control_plane, helm, namespace, apps, label)
    try:
        yield rel
    finally:
        rel.cleanup()
        control_plane.kubectl("delete", "namespace", apps, "--wait=false", check=False)


def wait_for_default_sa(plane: ControlPlane, namespace: str) -> None:
    deadline = time.monotonic() + _WAIT
    while plane.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode != 0:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.1)


def test_the_chart_installs_and_the_apiserver_admits_gpu_pods_through_its_webhook(
    control_plane: ControlPlane, release: Release, tmp_path: Path
) -> None:
    plane, ns = control_plane, release.namespace
    # pre-install: the hook RBAC, then `certs ensure` as the hook's own ServiceAccount.
    apply(plane, [d for d in release.docs if is_hook(d) and d["kind"] != "Job"])
    hook_config = service_account_kubeconfig(
        plane, namespace=ns, account=f"{release.full}-certs-hook", into=tmp_path
    ).kubeconfig
    pre = run_certs(hook_config, *release.hook_args("pre"))
    assert pre.returncode == 0, pre.stderr
    assert "created" in pre.stdout
    # install: the release itself, validated by the real apiserver.
    apply(plane, [d for d in release.docs if not is_hook(d)])
    # post-install: the configurations now exist and get the caBundle.
    post = run_certs(hook_config, *release.hook_args("post"))
    assert post.returncode == 0, post.stderr
    assert "reused" in post.stdout and "caBundle patched" in post.stdout
    again = run_certs(hook_config, *release.hook_args("post"))
    assert "caBundle unchanged" in again.stdout and "caBundle patched" not in again.stdout

    secret = json.loads(
        plane.kubectl("get", "secret", f"{release.full}-webhook-tls", "-n", ns, "-o", "json").stdout
    )
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    (tmp_path / "tls.key").write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    (tmp_path / "catalog.json").write_text(json.dumps(GPU_ANSWER))
    port = free_port()
    env_from_chart = {
        e["name"]: e["value"]
        for e in release.get("Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e and not e["name"].startswith("TLS_")
    }
    log_file = (tmp_path / "webhook.log").open("w")
    webhook = subprocess.Popen(
        [sys.executable, "-m", "runpod_kubelet.cli", "webhook", f"--catalog-file={tmp_path / 'catalog.json'}",
         f"--tls-cert-file={tmp_path / 'tls.crt'}", f"--tls-key-file={tmp_path / 'tls.key'}",
         "--host=127.0.0.1", f"--port={port}"],
        env={**env_from_chart, "PATH": "/usr/bin:/bin", "MAX_GPU_PRICE": "1"},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready_deadline = time.monotonic() + _WAIT
        with httpx.Client(verify=False) as client:  # readiness only; trust is the apiserver's job below
            while True:
                assert webhook.poll() is None, (tmp_path / "webhook.log").read_text()
                try:
                    if client.get(f"https://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < ready_deadline, "webhook never became ready"
                time.sleep(0.2)
        route = plane.route_service_to_local_port(ns, f"{release.full}-webhook", port)
        wait_for_default_sa(plane, release.apps)

        # A GPU pod aimed at the node is planned by the webhook the chart's configuration names.
        created = plane.kubectl("create", "-n", release.apps, "-o", "json", "-f", "-",
                                input=json.dumps(gpu_pod("trainer")))  # fmt: skip
        annotations = json.loads(created.stdout)["metadata"]["annotations"]
        plan = plan_from_annotations(annotations)
        assert plan.candidates[0].gpu_type_id == "NVIDIA A40"

        # A typo is rejected by the same path, with the webhook's own message.
        typo = plane.kubectl("create", "-n", release.apps, "-f", "-", check=False,
                             input=json.dumps(gpu_pod("typo", {"runpod.io/required-gpu-memroy": "24"})))  # fmt: skip
        assert typo.returncode != 0
        assert "required-gpu-memory" in typo.stderr

        # With the webhook gone, other pods are never blocked; RunPod pods are (failurePolicy Fail).
        route.close()
        webhook.terminate()
        webhook.wait(timeout=30)
        plane.kubectl("create", "-n", release.apps, "-f", "-", input=json.dumps(plain_pod("unrelated")))
        blocked = plane.kubectl("create", "-n", release.apps, "-f", "-", check=False,
                                input=json.dumps(gpu_pod("while-down")))  # fmt: skip
        assert blocked.returncode != 0
        assert "failed calling webhook" in blocked.stderr
    finally:
        if webhook.poll() is None:
            webhook.terminate()
            webhook.wait(timeout=30)
        log_file.close()


def test_the_binder_reads_secrets_creates_only_its_key_pair_and_the_webhook_cannot_read_them(
    control_plane: ControlPlane, release: Release
) -> None:
    apply(control_plane, [d for d in release.docs if not is_hook(d)])
    binder = f"system:serviceaccount:{release.namespace}:{release.full}-binder"
    webhook = f"system:serviceaccount:{release.namespace}:{release.full}-webhook"

    def can(user: str, *args: str) -> bool:
        answer = control_plane.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
        return answer.stdout.strip() == "yes"

    assert can(binder, "get", "secrets", "-n", release.apps)
    for verb in ("create", "update", "patch", "delete", "list"):
        assert not can(binder, verb, "secrets", "-n", release.apps), verb
    # Its SSH key pair: created once in the release namespace, never changed there.
    assert can(binder, "create", "secrets", "-n", release.namespace)
    for verb in ("update", "patch", "delete", "list"):
        assert not can(binder, verb, "secrets", "-n", release.namespace), verb
    assert not can(webhook, "get", "secrets", "-n", release.apps)
    assert can(webhook, "list", "jobs.batch", "-n", release.apps)
    assert can(binder, "patch", "pods/status", "-n", release.apps)
    assert can(binder, "update", "leases.coordination.k8s.io/virtual-runpod", "-n", "kube-node-lease")
    assert not can(binder, "update", "configmaps/other", "-n", release.namespace)
    assert can(binder, "update", "configmaps/runpod-catalog", "-n", release.namespace)


def test_the_charts_admission_policy_lets_only_the_binders_service_account_write_state(
    control_plane: ControlPlane, release: Release
) -> None:
    plane = control_plane
    # The release without its webhook configurations (no webhook runs here): the policy alone.
    apply(
        plane, [d for d in release.docs if not is_hook(d) and not d["kind"].endswith("WebhookConfiguration")]
    )
    wait_for_default_sa(plane, release.apps)
    denied = f"ValidatingAdmissionPolicy '{release.full}' with binding '{release.full}' denied request: "
    deadline = time.monotonic() + _WAIT
    while True:
        unplanned = plane.kubectl("create", "-n", release.apps, "-f", "-", check=False,
                                  input=json.dumps(gpu_pod("unplanned")))  # fmt: skip
        if unplanned.returncode != 0:
            break
        plane.kubectl("delete", "pod", "-n", release.apps, "unplanned", "--wait=false")
        assert time.monotonic() < deadline, "the chart's policy never took effect"
        time.sleep(0.2)
    assert denied + "plan.runpod.io/version missing: the pod has no plan" in unplanned.stderr

    plan = Plan(
        candidates=(Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),),
        gpu_count=1, cloud="SECURE", container_disk_gb=50, max_gpu_price=0.5, catalog_revision="r1",
    )  # fmt: skip
    planned = gpu_pod("planned", plan_to_annotations(plan))
    planned["spec"]["schedulingGates"] = [{"name": "runpod-kubelet.test/hold"}]
    plane.kubectl("create", "-n", release.apps, "-f", "-", input=json.dumps(planned))
    binder = f"system:serviceaccount:{release.namespace}:{release.full}-binder"

    def annotate(*args: str) -> subprocess.CompletedProcess[str]:
        return plane.kubectl("annotate", "-n", release.apps, "pod", "planned", *args, check=False)

    # The binder's ServiceAccount, with the chart's own RBAC, records state; an admin cannot.
    assert annotate("runpod.io/pod-id=abc123", f"--as={binder}").returncode == 0
    forged = annotate("runpod.io/exit-code=0")
    assert forged.returncode != 0
    assert (
        denied + f"runpod.io/exit-code: written only by the binder ({binder}), not by admin" in forged.stderr
    )
    assert plane.kubectl("label", "-n", release.apps, "pod", "planned", "team=ml").returncode == 0


async def test_two_ensures_at_once_store_one_material_and_both_return_it(
    kube_api: ApiClient, namespace: str
) -> None:
    names = service_dns_names(service="rk-webhook", namespace=namespace)

    async def ensure() -> Any:
        return await ensure_material(
            kube_api, namespace=namespace, name="race-tls", names=names, clock=lambda: datetime.now(UTC)
        )

    first, second = await asyncio.gather(ensure(), ensure())
    third = await ensure()

    assert first.material == second.material == third.material
    assert sorted([first.outcome, second.outcome]) == ["created", "reused"]
    assert third.outcome == "reused"


def test_a_helm_upgrade_keeps_the_ca_bundle_the_cert_hook_wrote(
    control_plane: ControlPlane, helm: Path, namespace: str
) -> None:
    # Hooks are run by hand (no kubelet runs Jobs here); everything else is the real helm.
    release = f"rk{secrets.token_hex(3)}"
    full = f"{release}-runpod-kubelet"
    base = [str(helm), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "--no-hooks"]
    chart = str(CHART)

    def helm_run(*args: str) -> None:
        done = subprocess.run([*base[:1], *args, *base[1:]], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def bundles() -> list[str | None]:
        found = []
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            obj = json.loads(control_plane.kubectl("get", kind, full, "-o", "json").stdout)
            found += [w["clientConfig"].get("caBundle") for w in obj["webhooks"]]
        return found

    try:
        # A second release in this cluster: the StorageClass (cluster-scoped) is the first one's.
        helm_run("install", release, chart, "--set", "runpod.apiKey=x", "--set", "storageClass.enabled=false")
        ensured = run_certs(
            control_plane.kubeconfig, f"--namespace={namespace}", f"--secret-name={full}-webhook-tls",
            f"--service={full}-webhook", f"--webhook-config-names={full}",
        )  # fmt: skip
        assert ensured.returncode == 0, ensured.stderr
        written = bundles()
        assert all(written)

        helm_run(
            "upgrade", release, chart, "--set", "runpod.apiKey=x", "--set", "storageClass.enabled=false",
            "--set", "kubelet.maxGpuPrice=0.7",
        )  # fmt: skip

        assert bundles() == written
    finally:
        subprocess.run([*base[:1], "uninstall", release, *base[1:]], capture_output=True, timeout=120)
