"""Virtual Kubelet's provider end-to-end suite, run against the virtual node on the local cluster.

The suite is VK's own Go test binary (`test/e2e` of `github.com/virtual-kubelet/virtual-kubelet`
at `VK_E2E_VERSION`, built by `tools/vk-e2e/build`, part of `make test`). It gets the whole
stack a user has: the sandbox RunPod, a binder process (as the Deployment runs it) whose node's
InternalIP is the control plane's cluster-network address so the apiserver's node proxy reaches
its kubelet API, and the webhook called by the real apiserver, so the suite's pods (bound to the
node by `spec.nodeName`, no annotations) are planned as any user's pod would be.

A test that cannot apply to a RunPod node is not run (`-test.skip`) and is listed in `SKIPPED`
with the reason, which this test prints and the README's "Virtual Kubelet provider e2e suite"
section repeats. Every other test of the suite must pass.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest

from binder.testing import free_port, wait_for
from certs.material import trust_bundle
from controlplane import ControlPlane
from sandbox.testing import RunningSandbox, running_sandbox
from tests.binder.pods.pods_support import API_KEY, BinderProcess, proxied_binder
from tests.webhook.webhook_cluster_support import serving_material
from webhook.configurations import render_webhook_configurations

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "vk-e2e" / "build"
SERVICE: Final = "runpod-kubelet-webhook"
LABEL: Final = "runpod-kubelet.test/vk-e2e"
_READY = 60.0
# The suite's own budget: each of its waits is 2 minutes at most.
_SUITE_TIMEOUT = "10m"

# Tests of the suite that cannot apply to a RunPod node, and why (printed, and in the README).
SKIPPED: Final[Mapping[str, str]] = {
    "TestGetStatsSummary": (
        "creates a pod of three containers; a RunPod pod runs one container, so admission refuses "
        "it by design (runpod.io/drop-containers, which the suite cannot set, is the only way in). "
        "It also reads the Summary through the *pod* proxy of a pod named after the node, which "
        "exists only where the provider runs as such a pod (VK's skaffold layout). "
        "/stats/summary itself is tested through the node proxy (test_kubelet_stats_cluster.py)"
    ),
    "TestGetMetricsResource": (
        "creates a pod of three containers (refused at admission by design, as above) and reads "
        "/metrics/resource through the pod proxy of a pod named after the node. "
        "/metrics/resource itself is tested through the node proxy and metrics-server "
        "(test_kubelet_stats_cluster.py)"
    ),
}

_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): TestEndToEnd/(\w+) \(([\d.]+)s\)", re.MULTILINE)


def suite_binary() -> Path:
    """The built suite (built now when missing: `make test` builds it first)."""
    built = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"tools/vk-e2e/build failed:\n{built.stderr[-4000:]}", pytrace=False)
    return Path(built.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Stack:
    node: str
    namespace: str
    binder: BinderProcess
    webhook_log: Path


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=3) as sb:
        yield sb


def _start_webhook(
    plane: ControlPlane, *, system: str, node: str, tls: Path, log: Path
) -> tuple[subprocess.Popen[bytes], bytes]:
    material = serving_material(tls, service=SERVICE, namespace=system)
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "runpod_kubelet.cli", "webhook",
                f"--kubeconfig={plane.kubeconfig}", f"--namespace={system}", f"--node-name={node}",
                # The suite's pods have no GPU limit, no tcp port and cannot carry annotations, and
                # each of its tests waits for a podIP: a RunPod CPU pod without a tcp port has no
                # address RunPod reports, while a GPU pod is planned where global networking gives
                # it one. So this node keeps the behaviour before CPU pods (tested elsewhere).
                "--default-compute-type=GPU",
                "--max-gpu-price=2", f"--tls-cert-file={tls / 'tls.crt'}",
                f"--tls-key-file={tls / 'tls.key'}", f"--port={port}", "--host=127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.check_hostname = False  # the certificate names the Service; we dial 127.0.0.1

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"webhook exited:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            return httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context, timeout=2).is_success
        except httpx.HTTPError:
            return False

    wait_for("the webhook to be ready (catalog loaded)", ready, timeout=_READY)
    plane.route_service_to_local_port(system, SERVICE, port)
    return process, trust_bundle(material)


@pytest.fixture
def stack(
    control_plane: ControlPlane, namespace: str, sandbox: RunningSandbox, tmp_path: Path
) -> Iterator[Stack]:
    tag = secrets.token_hex(3)
    node, system, config = f"vk-e2e-{tag}", f"vk-e2e-system-{tag}", f"runpod-kubelet-vk-e2e-{tag}"
    control_plane.kubectl("create", "namespace", system)
    binder = proxied_binder(
        control_plane,
        base_url=sandbox.base_url,
        node=node,
        namespace=system,
        cluster_id=f"cl-{tag}",
        log_path=tmp_path / "binder.log",
    )
    webhook: subprocess.Popen[bytes] | None = None
    try:
        tls = tmp_path / "webhook-tls"
        tls.mkdir()
        webhook, ca_bundle = _start_webhook(
            control_plane, system=system, node=node, tls=tls, log=tmp_path / "webhook.log"
        )
        configurations = render_webhook_configurations(
            name=config,
            service_name=SERVICE,
            service_namespace=system,
            node_name=node,
            namespace_labels={LABEL: tag},
            ca_bundle=ca_bundle,
        )
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": configurations}),
        )
        control_plane.kubectl("label", "namespace", namespace, f"{LABEL}={tag}")
        yield Stack(node, namespace, binder, tmp_path / "webhook.log")
    finally:
        control_plane.kubectl(
            "delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", config, check=False
        )
        if webhook is not None:
            webhook.terminate()
            try:
                webhook.wait(timeout=10)
            except subprocess.TimeoutExpired:
                webhook.kill()
                webhook.wait()
        binder.stop()
        control_plane.kubectl("delete", "node", node, "--ignore-not-found", check=False)
        control_plane.kubectl("delete", "namespace", system, "--wait=false", check=False)


def parse_results(output: str) -> dict[str, str]:
    """The suite's per-test outcomes from `go test -v` output: {test name: PASS|FAIL|SKIP}."""
    return {name: outcome for outcome, name, _ in _RESULT.findall(output)}


def test_parse_results_reads_each_subtest_outcome() -> None:
    output = (
        "=== RUN   TestEndToEnd\n"
        "--- FAIL: TestEndToEnd (3.20s)\n"
        "    --- PASS: TestEndToEnd/TestGetPods (0.80s)\n"
        "    --- FAIL: TestEndToEnd/TestPodLifecycleGracefulDelete (1.05s)\n"
        "    --- SKIP: TestEndToEnd/TestGetStatsSummary (0.00s)\n"
    )
    assert parse_results(output) == {
        "TestGetPods": "PASS",
        "TestPodLifecycleGracefulDelete": "FAIL",
        "TestGetStatsSummary": "SKIP",
    }


@pytest.mark.timeout(15 * 60)
def test_virtual_kubelets_provider_e2e_suite_passes_on_the_runpod_node(
    control_plane: ControlPlane, stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = suite_binary()
    with capsys.disabled():
        for name, reason in SKIPPED.items():
            print(f"\n[vk-e2e] skipping {name}: {reason}")
    skip = "TestEndToEnd/^(" + "|".join(SKIPPED) + ")$"
    argv = [
        str(binary), "-test.v", f"-test.timeout={_SUITE_TIMEOUT}", f"-test.skip={skip}",
        f"-kubeconfig={control_plane.kubeconfig}", f"-namespace={stack.namespace}",
        f"-node-name={stack.node}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    log = tmp_path / "vk-e2e.log"
    with log.open("wb") as out:
        run = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=13 * 60, check=False
        )
    output = log.read_text(errors="replace")
    results = parse_results(output)
    with capsys.disabled():
        print(
            f"\n[vk-e2e] {binary.parent.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(results.items()))
        )

    def explain() -> str:
        return (
            f"{' '.join(argv)}\nexit {run.returncode}\n{output[-12000:]}\n"
            f"--- binder log (tail) ---\n{stack.binder.output()[-6000:]}\n"
            f"--- webhook log (tail) ---\n{stack.webhook_log.read_text(errors='replace')[-3000:]}"
        )

    assert results, explain()
    assert not set(results) & set(SKIPPED), explain()
    failed = sorted(name for name, outcome in results.items() if outcome != "PASS")
    assert not failed, f"failed: {failed}\n{explain()}"
    assert run.returncode == 0, explain()
