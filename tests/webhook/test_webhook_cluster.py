"""The webhook called by the real kube-apiserver through the configurations the chart installs.

One webhook process per module (cluster mode: catalog ConfigMap and Job watch from the control
plane), with both webhook configurations and the admission policy installed for namespaces
carrying this module's label (`webhook_cluster_support.serve_webhook`), so other tests sharing
the control plane never reach this webhook.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhook_cluster_support import (
    LABEL,
    WAIT,
    Deployed,
    apply,
    get_pod,
    manifest,
    serve_webhook,
    serving_material,
    wait_until_served,
)
from webhook_samples import gpu_pod, sample_catalog

from certs.material import trust_bundle
from contract.plan import plan_from_annotations
from contract.policy import CATALOG_CONFIGMAP, CATALOG_CONFIGMAP_KEY
from controlplane import ControlPlane
from webhook.configurations import render_webhook_configurations

# Who the admission policy takes for the binder here; tests act as it by impersonation.
BINDER = "system:serviceaccount:runpod-test:runpod-kubelet-binder"
AS_BINDER = (f"--as={BINDER}", "--as-group=system:masters")


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tag = secrets.token_hex(3)
    namespace = f"webhook-{tag}"
    http = control_plane.http()
    http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
    try:
        http.post(
            f"/api/v1/namespaces/{namespace}/configmaps",
            json={
                "metadata": {"name": CATALOG_CONFIGMAP},
                "data": {CATALOG_CONFIGMAP_KEY: sample_catalog().to_json()},
            },
        ).raise_for_status()
        with serve_webhook(
            control_plane,
            namespace=namespace,
            label=tag,
            name=f"runpod-kubelet-test-{tag}",
            tls=tmp_path_factory.mktemp("webhook-tls"),
            binder_username=BINDER,
            args=["--max-gpu-price=2", "--datacenter-ids=EU-RO-1,US-KS-2,EU-SE-1", "--max-candidates=3"],
        ) as served:
            yield served
    finally:
        http.delete(f"/api/v1/namespaces/{namespace}")


@pytest.fixture
def user_namespace(deployed: Deployed, namespace: str) -> str:
    """A fresh namespace the webhook serves, returned once the apiserver calls the webhook there."""
    wait_until_served(deployed.plane, namespace, deployed.label)
    return namespace


def test_kubectl_apply_of_a_bad_pod_prints_our_message(deployed: Deployed, user_namespace: str) -> None:
    bad = manifest(gpu_pod(annotations={"runpod.io/gpu-memory": "80"}), "typo")
    result = deployed.plane.kubectl("apply", "-n", user_namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'admission webhook "mutate.runpod-kubelet.io" denied the request' in result.stderr
    assert (
        'runpod.io/gpu-memory="80" on the pod: unknown annotation; did you mean runpod.io/required-gpu-memory?'
        in result.stderr
    )


def test_a_good_pod_gets_a_plan_and_dropped_datacenters_are_printed_as_warnings(
    deployed: Deployed, user_namespace: str
) -> None:
    pod = gpu_pod(
        annotations={"runpod.io/datacenter-ids": "US-TX-3,US-KS-2", "runpod.io/required-gpu-memory": "40"}
    )
    result = deployed.plane.kubectl("apply", "-n", user_namespace, "-f", "-", input=manifest(pod, "good"))
    assert (
        "Warning: runpod.io/datacenter-ids: dropped US-TX-3: not allowed on node virtual-runpod"
        in result.stderr
    )
    stored = get_pod(deployed.plane, user_namespace, "good")
    plan = plan_from_annotations(stored["metadata"]["annotations"])
    assert plan.datacenter_ids == ("US-KS-2",)
    assert [(c.gpu_type_id, c.datacenter_id) for c in plan.candidates] == [
        ("NVIDIA A40", "US-KS-2"),
        ("NVIDIA A100 80GB PCIe", "US-KS-2"),  # H100 is above the node cap $2
    ]
    assert plan.catalog_revision == sample_catalog().revision


def test_a_jobs_annotations_reach_its_pods_plan(deployed: Deployed, user_namespace: str) -> None:
    template = gpu_pod()
    del template["apiVersion"], template["kind"]
    template["metadata"] = {"labels": {"app": "train"}}
    template["spec"]["restartPolicy"] = "Never"
    template["spec"]["containers"][0]["image"] = "registry.invalid/never-pulled:1"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "train",
            "namespace": user_namespace,
            "annotations": {"runpod.io/required-gpu-memory": "80", "runpod.io/cloud-type": "COMMUNITY"},
        },
        "spec": {"backoffLimit": 0, "template": template},
    }
    apply(deployed.plane, job)
    deadline = time.monotonic() + WAIT
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not pods:
        listed = deployed.plane.kubectl(
            "get", "pods", "-n", user_namespace, "-l", "job-name=train", "-o", "json"
        )
        pods = json.loads(listed.stdout)["items"]
        time.sleep(0.2)
    assert pods, "the Job controller created no pod"
    plan = plan_from_annotations(pods[0]["metadata"]["annotations"])
    assert plan.cloud == "COMMUNITY"
    assert [(c.gpu_type_id, c.datacenter_id) for c in plan.candidates] == [
        ("NVIDIA A100 80GB PCIe", "US-KS-2"),
        ("NVIDIA A100 80GB PCIe", "EU-RO-1"),
    ]


def test_plan_and_inputs_are_frozen_by_the_policy_and_only_the_binder_writes_state(
    deployed: Deployed, user_namespace: str
) -> None:
    plane = deployed.plane
    plane.kubectl("apply", "-n", user_namespace, "-f", "-", input=manifest(gpu_pod(), "frozen"))

    def annotate(*args: str) -> Any:
        return plane.kubectl("annotate", "-n", user_namespace, "pod", "frozen", *args, check=False)

    refused_by = f"ValidatingAdmissionPolicy '{deployed.name}' with binding '{deployed.name}' denied request"
    tamper = annotate("plan.runpod.io/cloud=COMMUNITY", "--overwrite")
    assert tamper.returncode != 0 and refused_by in tamper.stderr
    assert "plan.runpod.io/cloud: cannot change after the pod is created" in tamper.stderr
    retune = annotate("runpod.io/required-gpu-memory=80")
    assert retune.returncode != 0 and "runpod.io/required-gpu-memory: cannot change" in retune.stderr
    forged = annotate("runpod.io/pod-id=abc123")
    assert forged.returncode != 0 and refused_by in forged.stderr
    assert f"runpod.io/pod-id: written only by the binder ({BINDER}), not by admin" in forged.stderr
    assert annotate("runpod.io/pod-id=abc123", *AS_BINDER).returncode == 0
    assert get_pod(plane, user_namespace, "frozen")["metadata"]["annotations"]["runpod.io/pod-id"] == "abc123"
    # The validating webhook no longer sees UPDATEs: the apiserver's metrics count no call.
    metrics = plane.kubectl("get", "--raw", "/metrics").stdout
    assert not [
        line
        for line in metrics.splitlines()
        if line.startswith("apiserver_admission_webhook_admission_duration_seconds_count")
        and 'name="validate.runpod-kubelet.io"' in line
        and 'operation="UPDATE"' in line
    ]


def test_a_planned_pod_tolerates_node_outages_for_a_day_unless_it_chose_otherwise(
    deployed: Deployed, user_namespace: str
) -> None:
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 600}  # fmt: skip
    pod = gpu_pod()
    pod["spec"]["tolerations"].append(own)
    deployed.plane.kubectl("create", "-n", user_namespace, "-f", "-", input=manifest(pod, "tolerant"))

    tolerations = get_pod(deployed.plane, user_namespace, "tolerant")["spec"]["tolerations"]

    # The apiserver's DefaultTolerationSeconds plugin added not-ready for 300 s before the
    # webhook ran; the webhook raised it, and left the pod's own unreachable toleration alone.
    outage = [t for t in tolerations if t["key"].startswith("node.kubernetes.io/")]
    assert outage == [
        own,
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 86400},
    ]  # fmt: skip


def test_a_pod_bringing_binder_state_is_refused(deployed: Deployed, user_namespace: str) -> None:
    copied = manifest(gpu_pod(annotations={"runpod.io/pod-id": "someone-elses"}), "copied")
    result = deployed.plane.kubectl("create", "-n", user_namespace, "-f", "-", input=copied, check=False)
    assert result.returncode != 0
    assert "runpod.io/pod-id: written only by the binder" in result.stderr


def test_an_unrelated_pod_is_admitted_while_the_webhook_is_down(
    deployed: Deployed, namespace: str, control_plane: ControlPlane
) -> None:
    # Same configurations, pointing at a Service with no endpoints: the webhook is "down".
    tag = secrets.token_hex(3)
    name = f"runpod-kubelet-down-{tag}"
    control_plane.http().post(
        f"/api/v1/namespaces/{deployed.namespace}/services",
        json={"metadata": {"name": f"down-{tag}"}, "spec": {"ports": [{"port": 443}]}},
    ).raise_for_status()
    control_plane.kubectl("label", "namespace", namespace, f"{LABEL}=down-{tag}")
    apply(
        control_plane,
        *render_webhook_configurations(
            name=name,
            service_name=f"down-{tag}",
            service_namespace=deployed.namespace,
            namespace_labels={LABEL: f"down-{tag}"},
            ca_bundle=deployed.ca_pem,
        ),
    )
    try:
        deadline = time.monotonic() + WAIT
        refused = ""
        attempt = 0
        while time.monotonic() < deadline and not refused:
            attempt += 1
            aimed = manifest(gpu_pod(), f"aimed-{attempt}")
            result = control_plane.kubectl("create", "-n", namespace, "-f", "-", input=aimed, check=False)
            if result.returncode != 0:
                refused = result.stderr
            else:
                control_plane.kubectl("delete", "pod", "-n", namespace, f"aimed-{attempt}", "--wait=false")
                time.sleep(0.2)
        assert 'failed calling webhook "mutate.runpod-kubelet.io"' in refused
        unrelated = gpu_pod(aimed=False, annotations={"runpod.io/anything": "ignored"})
        control_plane.kubectl("create", "-n", namespace, "-f", "-", input=manifest(unrelated, "unrelated"))
        assert get_pod(control_plane, namespace, "unrelated")["metadata"]["annotations"] == {
            "runpod.io/anything": "ignored"
        }
    finally:
        control_plane.kubectl(
            "delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", name, check=False
        )


class _Injector:
    """A sidecar injector: a second mutating webhook, ordered after ours by configuration name,
    that appends an `istio-proxy` container to every pod it sees (and notes whether our plan was
    already on it, which proves it ran after us)."""

    def __init__(self, cert: Path, key: Path) -> None:
        import http.server
        import ssl
        import threading

        self.saw_plan: list[bool] = []
        injector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                annotations = request["object"]["metadata"].get("annotations") or {}
                injector.saw_plan.append("plan.runpod.io/version" in annotations)
                patch = [{"op": "add", "path": "/spec/containers/-", "value": _SIDECAR}]
                body = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {
                            "uid": request["uid"],
                            "allowed": True,
                            "patchType": "JSONPatch",
                            "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="sidecar-injector", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_SIDECAR = {"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"}
_INJECT_LABEL = "runpod-kubelet.test/inject"


@pytest.fixture
def injector(deployed: Deployed, tmp_path: Path) -> Iterator[_Injector]:
    service = "sidecar-injector"
    material = serving_material(tmp_path, service=service, namespace=deployed.namespace)
    server = _Injector(tmp_path / "tls.crt", tmp_path / "tls.key")
    route = deployed.plane.route_service_to_local_port(deployed.namespace, service, server.port)
    # Mutating webhooks run in the order of their configurations' names: "zz-" sorts after ours.
    name = f"zz-sidecar-injector-{deployed.label}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "inject.sidecar.test",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "clientConfig": {
                    "service": {
                        "name": service,
                        "namespace": deployed.namespace,
                        "path": "/inject",
                        "port": 443,
                    },
                    "caBundle": base64.b64encode(trust_bundle(material)).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {LABEL: deployed.label}},
                "objectSelector": {"matchLabels": {_INJECT_LABEL: "true"}},
            }
        ],
    }
    apply(deployed.plane, configuration)
    try:
        yield server
    finally:
        deployed.plane.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)
        route.close()
        server.close()


def _injected_manifest(name: str, annotations: dict[str, str] | None = None) -> str:
    pod = gpu_pod(annotations=annotations)
    pod["metadata"]["labels"] = {_INJECT_LABEL: "true"}
    return manifest(pod, name)


def test_a_sidecar_injected_after_our_webhook_is_refused_by_validation(
    deployed: Deployed, user_namespace: str, injector: _Injector
) -> None:
    plane = deployed.plane
    deadline = time.monotonic() + WAIT
    result = plane.kubectl(
        "create", "-n", user_namespace, "-f", "-", input=_injected_manifest("meshed"), check=False
    )
    while "inject.sidecar.test" in result.stderr and time.monotonic() < deadline:
        time.sleep(0.2)  # the injector's Service route is still settling
        result = plane.kubectl(
            "create", "-n", user_namespace, "-f", "-", input=_injected_manifest("meshed"), check=False
        )
    assert result.returncode != 0
    assert 'admission webhook "validate.runpod-kubelet.io" denied the request' in result.stderr
    assert (
        "this pod has 2 containers (main, istio-proxy): main would run; istio-proxy would not"
        in result.stderr
    )
    assert 'runpod.io/drop-containers: "istio-proxy"' in result.stderr
    assert injector.saw_plan and all(injector.saw_plan), "the injector must run after our mutating webhook"

    named = _injected_manifest("meshed-ok", {"runpod.io/drop-containers": "istio-proxy"})
    plane.kubectl("create", "-n", user_namespace, "-f", "-", input=named)
    stored = get_pod(plane, user_namespace, "meshed-ok")
    assert [c["name"] for c in stored["spec"]["containers"]] == ["main", "istio-proxy"]
    assert plan_from_annotations(stored["metadata"]["annotations"]).drop_containers == ("istio-proxy",)


def test_a_three_container_pod_is_refused_by_the_mutating_webhook_naming_them(
    deployed: Deployed, user_namespace: str
) -> None:
    pod = gpu_pod()
    pod["spec"]["containers"] += [{"name": "sidecar", "image": "x:1"}, {"name": "logger", "image": "y:1"}]
    result = deployed.plane.kubectl(
        "create", "-n", user_namespace, "-f", "-", input=manifest(pod, "three"), check=False
    )
    assert result.returncode != 0
    assert 'admission webhook "mutate.runpod-kubelet.io" denied the request' in result.stderr
    assert "3 containers (main, sidecar, logger): main would run; sidecar, logger would not" in result.stderr
