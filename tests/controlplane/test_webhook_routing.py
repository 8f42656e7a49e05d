"""The real apiserver calls a service-referenced admission webhook served on 127.0.0.1 over TLS."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane, KubectlError, pki

SERVICE = "hook"


class _Reviews(BaseHTTPRequestHandler):
    """Denies pods labelled deny=yes; records every AdmissionReview it answers."""

    seen: list[dict[str, Any]]

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        self.server.seen.append(request)  # type: ignore[attr-defined]
        labels = request["object"]["metadata"].get("labels") or {}
        response: dict[str, Any] = {"uid": request["uid"], "allowed": labels.get("deny") != "yes"}
        if not response["allowed"]:
            response["status"] = {"code": 403, "reason": "Forbidden", "message": "denied by the test webhook"}
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: Any) -> None:
        pass


class TlsWebhook:
    def __init__(self, namespace: str, workdir: Path) -> None:
        self.ca = pki.new_ca("webhook-ca")
        serving = pki.issue(
            self.ca, common_name=SERVICE, dns_names=(f"{SERVICE}.{namespace}.svc",), server=True
        )
        cert_path, key_path = pki.write_pair(serving, workdir, "serving")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Reviews)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.seen = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def seen(self) -> list[dict[str, Any]]:
        return self.server.seen  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(namespace: str, tmp_path: Path) -> Iterator[TlsWebhook]:
    hook = TlsWebhook(namespace, tmp_path)
    yield hook
    hook.close()


def _configuration(name: str, namespace: str, service: str, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pods.controlplane.test",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
                "clientConfig": {
                    "service": {"namespace": namespace, "name": service, "path": "/validate", "port": 443},
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                # Only this test's namespace: a Fail webhook must not block other tests' pods.
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            }
        ],
    }


def _pod(name: str, *, deny: bool) -> str:
    labels = {"deny": "yes"} if deny else {}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
    )


@pytest.fixture
def configuration_name(control_plane: ControlPlane) -> Iterator[str]:
    name = f"controlplane-test-{secrets.token_hex(3)}"
    yield name
    control_plane.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def _first_denial(control_plane: ControlPlane, namespace: str, timeout: float = 30.0) -> str:
    """Creates denied-looking pods until the webhook (seen by the apiserver's informer) refuses one."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        result = control_plane.kubectl(
            "create", "-n", namespace, "-f", "-", input=_pod(f"probe-{attempt}", deny=True), check=False
        )
        if result.returncode != 0:
            return result.stderr
        control_plane.kubectl("delete", "pod", "-n", namespace, f"probe-{attempt}", "--wait=false")
        time.sleep(0.2)
    pytest.fail("the apiserver never called the webhook")


def test_apiserver_calls_a_service_webhook_on_a_local_port_over_tls(
    control_plane: ControlPlane, namespace: str, webhook: TlsWebhook, configuration_name: str
) -> None:
    route = control_plane.route_service_to_local_port(namespace, SERVICE, webhook.port)
    try:
        control_plane.kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps(_configuration(configuration_name, namespace, SERVICE, webhook.ca.cert_pem)),
        )
        stderr = _first_denial(control_plane, namespace)
        assert "denied by the test webhook" in stderr
        control_plane.kubectl("create", "-n", namespace, "-f", "-", input=_pod("allowed", deny=False))
        requests = [r for r in webhook.seen if r["operation"] == "CREATE"]
        assert any(r["namespace"] == namespace and r["kind"]["kind"] == "Pod" for r in requests)
    finally:
        route.close()
    # Withdrawn route: the Fail policy now rejects every pod in the namespace.
    with pytest.raises(KubectlError, match="failed calling webhook"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            control_plane.kubectl(
                "create", "-n", namespace, "-f", "-", input=_pod(f"after-{secrets.token_hex(2)}", deny=False)
            )
            time.sleep(0.2)


def test_an_external_name_service_cannot_route_webhooks_under_aggregator_routing(
    control_plane: ControlPlane, namespace: str, webhook: TlsWebhook, configuration_name: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": 443}]},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(service))
    control_plane.kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(_configuration(configuration_name, namespace, SERVICE, webhook.ca.cert_pem)),
    )
    stderr = _first_denial(control_plane, namespace)
    assert 'unsupported service type "ExternalName"' in stderr
    assert webhook.seen == []
