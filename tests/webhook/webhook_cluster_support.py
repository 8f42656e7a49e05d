"""The webhook as the real kube-apiserver calls it, for the cluster tests of this folder.

`serve_webhook` runs one `runpod-kubelet webhook` process (cluster mode: catalog ConfigMap and
Job watch from the control plane) behind a Service routed to its 127.0.0.1 port, trusted through
a caBundle made by `certs.material`, and installs what the chart installs: both webhook
configurations and the admission policy, narrowed to namespaces labelled `LABEL=<label>` so that
other tests sharing the control plane never reach them. Leaving the block removes all of it.

`running_stack` is the whole chain as the chart installs it: the sandbox RunPod, the binder as
a process running as its own ServiceAccount (a TokenRequest kubeconfig), the webhook planning
from the catalog that binder publishes, serving the test's namespace.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from binder.testing import BinderProcess, wait_for
from certs.material import Action, Material, Renewal, issue, service_dns_names, trust_bundle
from contract.policy import CATALOG_CONFIGMAP
from controlplane import ControlPlane, ServiceRoute
from controlplane.identities import service_account_kubeconfig
from sandbox.testing import RunningSandbox, running_sandbox
from webhook.admission_policy import render_admission_policy
from webhook.configurations import render_webhook_configurations

SERVICE = "runpod-kubelet-webhook"
LABEL = "runpod-kubelet.test/webhook"
WAIT = 60.0
GUARD_KINDS = (
    "mutatingwebhookconfiguration,validatingwebhookconfiguration,"
    "validatingadmissionpolicy,validatingadmissionpolicybinding"
)


@dataclass
class Deployed:
    plane: ControlPlane
    namespace: str  # the webhook's own (its Service, the catalog it reads)
    label: str  # namespaces labelled LABEL=<label> are served
    name: str  # of the webhook configurations and the admission policy
    url: str
    ca_pem: bytes
    process: subprocess.Popen[str]
    route: ServiceRoute


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def apply(plane: ControlPlane, *objects: dict[str, Any]) -> None:
    plane.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    )


def manifest(pod: dict[str, Any], name: str) -> str:
    """`pod` as kubectl input named `name`, with an image no kubelet will ever pull."""
    pod["metadata"] = {k: v for k, v in pod["metadata"].items() if k not in ("namespace", "name")}
    pod["metadata"]["name"] = name
    pod["spec"]["containers"][0]["image"] = "registry.invalid/never-pulled:1"
    return json.dumps(pod)


def get_pod(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(plane.kubectl("get", "pod", "-n", namespace, name, "-o", "json").stdout))


def _wait_ready(process: subprocess.Popen[str], port: int, ca_pem: bytes, tls: Path) -> None:
    (tls / "ca.crt").write_bytes(ca_pem)
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.check_hostname = False  # the certificate names the Service, we dial 127.0.0.1
    deadline = time.monotonic() + WAIT
    with httpx.Client(verify=context) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"webhook exited: {process.communicate()[0]}")
            try:
                if client.get(f"https://127.0.0.1:{port}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError("webhook never became ready (catalog ConfigMap and Job watch)")


def serving_material(directory: Path, *, service: str, namespace: str) -> Material:
    """A fresh CA and a serving certificate for `service`, written as ca.crt, tls.crt, tls.key."""
    material = issue(
        Renewal(Action.NEW_CA, "test"),
        None,
        now=datetime.now(UTC),
        names=service_dns_names(service=service, namespace=namespace),
    )
    (directory / "ca.crt").write_bytes(material.ca_cert_pem)
    (directory / "tls.crt").write_bytes(material.cert_pem)
    (directory / "tls.key").write_bytes(material.key_pem)
    return material


@contextmanager
def serve_webhook(
    plane: ControlPlane,
    *,
    namespace: str,
    label: str,
    name: str,
    tls: Path,
    binder_username: str,
    args: Sequence[str] = (),
) -> Iterator[Deployed]:
    """The webhook serving namespaces labelled LABEL=`label`, reading the catalog ConfigMap in
    `namespace`; `binder_username` is the admission policy's writer of binder state."""
    material = serving_material(tls, service=SERVICE, namespace=namespace)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "runpod_kubelet.cli", "webhook",
            f"--kubeconfig={plane.kubeconfig}", f"--namespace={namespace}",
            f"--tls-cert-file={tls / 'tls.crt'}", f"--tls-key-file={tls / 'tls.key'}",
            f"--port={port}", "--host=127.0.0.1", *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    route = None
    try:
        _wait_ready(process, port, material.ca_cert_pem, tls)
        route = plane.route_service_to_local_port(namespace, SERVICE, port)
        scope: dict[str, Any] = {"service_namespace": namespace, "namespace_labels": {LABEL: label}}
        apply(
            plane,
            *render_webhook_configurations(
                name=name, service_name=SERVICE, ca_bundle=trust_bundle(material), **scope
            ),
            *render_admission_policy(name=name, state_writers=[binder_username], **scope),
        )
        yield Deployed(
            plane, namespace, label, name, f"https://127.0.0.1:{port}", material.ca_cert_pem, process, route
        )
    finally:
        plane.kubectl("delete", GUARD_KINDS, name, "--ignore-not-found", check=False)
        if route is not None:
            route.close()
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """Ends the webhook process (SIGTERM, then SIGKILL); idempotent."""
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    except ValueError:  # already communicated: the pipe is closed
        pass


def wait_until_served(plane: ControlPlane, namespace: str, label: str) -> None:
    """Labels `namespace` for the webhook labelled `label` and waits until the apiserver calls it
    there (its informers take a moment to see new configurations)."""
    from webhook_samples import gpu_pod

    plane.kubectl("label", "namespace", namespace, f"{LABEL}={label}")
    probe = manifest(gpu_pod(annotations={"runpod.io/probe": "1"}), "probe")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = plane.kubectl("create", "-n", namespace, "-f", "-", input=probe, check=False)
        if result.returncode != 0 and "runpod.io/probe" in result.stderr:
            return
        if result.returncode == 0:
            plane.kubectl("delete", "pod", "-n", namespace, "probe", "--wait=false", check=False)
        time.sleep(0.2)
    raise AssertionError("the apiserver never called the webhook in the labelled namespace")


API_KEY = "test-key"


@dataclass
class Stack:
    plane: ControlPlane
    node: str
    binder_username: str
    sandbox: RunningSandbox
    binder: BinderProcess
    webhook: Deployed
    apps: str  # the users' namespace


@contextmanager
def running_stack(
    plane: ControlPlane,
    *,
    apps: str,
    tmp_path: Path,
    purpose: str,
    binder_args: Sequence[str] = (),
    webhook_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """Sandbox, binder (its own ServiceAccount, node `vr-<purpose>-<tag>`) and webhook serving
    `apps`; the binder's output is written to stderr at the end. Leaving it removes all of it."""
    tag = secrets.token_hex(3)
    system, node = f"runpod-{tag}", f"vr-{purpose}-{tag}"
    plane.kubectl("create", "namespace", system)
    identity = service_account_kubeconfig(
        plane, namespace=system, account="runpod-kubelet-binder", into=tmp_path, cluster_role="cluster-admin"
    )
    binder: BinderProcess | None = None
    try:
        with running_sandbox(api_key=API_KEY, seed=1) as sandbox:
            binder = BinderProcess(
                args=[
                    "--kubeconfig", str(identity.kubeconfig), "--runpod-base-url", sandbox.base_url,
                    "--node-name", node, "--namespace", system, "--no-leader-election",
                    "--identity", purpose, "--reconcile-interval", "2",
                    "--fast-interval", "0.5", "--node-status-interval", "1", *binder_args,
                ],
                log_path=tmp_path / "binder.log",
                api_key=API_KEY,
            )  # fmt: skip
            wait_for(
                "the catalog the binder publishes",
                lambda: plane.kubectl("get", "configmap", CATALOG_CONFIGMAP, "-n", system, check=False)
                .returncode == 0,
                timeout=120,
            )  # fmt: skip
            with serve_webhook(
                plane,
                namespace=system,
                label=tag,
                name=f"runpod-kubelet-{purpose}-{tag}",
                tls=tmp_path,
                binder_username=identity.username,
                args=[f"--node-name={node}", *webhook_args],
            ) as webhook:
                wait_until_served(plane, apps, tag)
                yield Stack(plane, node, identity.username, sandbox, binder, webhook, apps)
    finally:
        if binder is not None:
            binder.stop(signal.SIGKILL)
            sys.stderr.write(f"\n----- binder -----\n{binder.output()[-20000:]}\n")
        plane.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)
        if identity.cluster_role_binding:
            plane.kubectl("delete", "clusterrolebinding", identity.cluster_role_binding, check=False)
        plane.kubectl("delete", "namespace", system, "--wait=false", check=False)
