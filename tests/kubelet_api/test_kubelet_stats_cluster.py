"""The node answers like a kubelet: its read endpoints through the apiserver's node proxy, and
`kubectl top` through a real metrics-server.

A binder process (as the Deployment runs it) serves a node whose InternalIP is the control
plane's cluster-network address, so the apiserver proxies to it as to any node (it refuses
loopback addresses). A pod with CPU and memory limits runs on the sandbox, whose utilisation
changes over time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane import ControlPlane
from controlplane.metrics import MetricsServer
from sandbox.testing import RunningSandbox, running_sandbox
from tests.binder.pods.pods_support import API_KEY, pod_manifest, proxied_binder

NODE_DEADLINE = 60.0


def wait(what: str, probe: Any, timeout: float = NODE_DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=3) as sb:
        yield sb


@pytest.fixture
def node(
    control_plane: ControlPlane, namespace: str, sandbox: RunningSandbox, tmp_path: Path
) -> Iterator[str]:
    name = f"rp-{namespace}"[:63]
    binder = proxied_binder(
        control_plane,
        base_url=sandbox.base_url,
        node=name,
        namespace=namespace,
        cluster_id=f"cl-{namespace}",
        log_path=tmp_path / "binder.log",
    )
    try:
        yield name
    finally:
        binder.stop()
        control_plane.kubectl("delete", "node", name, "--ignore-not-found", check=False)


def running_pod(plane: ControlPlane, namespace: str, node: str) -> dict[str, Any]:
    # Opted out of SSH, so RunPod is asked for no tcp port (22/tcp would bring a public IP).
    manifest = pod_manifest(
        "busy", node, command=["sh", "-c", "sleep 3600"], extra_annotations={"runpod.io/ssh": "disabled"}
    )
    manifest["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def running() -> dict[str, Any] | None:
        pod: dict[str, Any] = json.loads(
            plane.kubectl("get", "pod", "busy", "-n", namespace, "-o", "json").stdout
        )
        return pod if pod["status"].get("phase") == "Running" else None

    return wait("the pod Running", running)


def raw(plane: ControlPlane, node: str, path: str) -> str:
    return plane.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/{path}").stdout


def test_the_node_proxy_serves_pods_running_pods_summary_and_resource_metrics(
    control_plane: ControlPlane, namespace: str, node: str
) -> None:
    pod = running_pod(control_plane, namespace, node)
    uid = pod["metadata"]["uid"]
    # No public port, but a data center with global networking: its private address is the podIP.
    assert pod["status"]["podIP"].startswith("10.65."), pod["status"]
    assert pod["status"]["podIPs"] == [{"ip": pod["status"]["podIP"]}]

    pods = json.loads(raw(control_plane, node, "pods"))
    assert pods["kind"] == "PodList"
    assert [p["metadata"]["uid"] for p in pods["items"]] == [uid]
    running = json.loads(raw(control_plane, node, "runningpods/"))
    assert [p["metadata"]["uid"] for p in running["items"]] == [uid]
    # client-go drops the slash (as Virtual Kubelet's e2e suite sends it); a kubelet answers both.
    assert json.loads(raw(control_plane, node, "runningpods")) == running

    def summarised() -> dict[str, Any] | None:
        summary = json.loads(raw(control_plane, node, "stats/summary"))
        pods = summary["pods"]
        return summary if pods and pods[0]["cpu"].get("usageCoreNanoSeconds", 0) > 0 else None

    summary = wait("a CPU counter above 0", summarised)
    (stats,) = summary["pods"]
    assert stats["podRef"] == {"name": "busy", "namespace": namespace, "uid": uid}
    assert 0 < stats["cpu"]["usageNanoCores"] <= 4 * 10**9  # a share of its 4 cores
    assert 0 < stats["memory"]["workingSetBytes"] <= 16 * 2**30  # a share of its 16 GiB
    assert summary["node"]["nodeName"] == node

    families = {
        f.name: f for f in text_string_to_metric_families(raw(control_plane, node, "metrics/resource"))
    }
    (sample,) = families["container_cpu_usage_seconds"].samples  # the parser drops `_total`
    assert sample.labels == {"container": "main", "namespace": namespace, "pod": "busy"}
    assert sample.timestamp is not None


def test_direct_callers_are_authenticated_and_authorised_as_a_kubelet_does(
    control_plane: ControlPlane, namespace: str, node: str
) -> None:
    def registered() -> dict[str, Any] | None:
        found = control_plane.kubectl("get", "node", node, "-o", "json", check=False)
        return json.loads(found.stdout) if found.returncode == 0 else None

    port = wait("the node", registered)["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    url = f"https://127.0.0.1:{port}/stats/summary"
    assert httpx.get(url, verify=False, timeout=10).status_code == 401
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = control_plane.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, verify=False, timeout=10)
    assert refused.status_code == 403
    assert "subresource(s)=[stats]" in refused.text


@pytest.fixture(scope="module")
def metrics_server(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetricsServer]:
    from controlplane.metrics import metrics_server_binary

    with MetricsServer(
        control_plane, binary=metrics_server_binary(), data_dir=tmp_path_factory.mktemp("ms")
    ) as server:
        yield server


def test_kubectl_top_shows_the_runpod_pods_cpu_and_memory(
    control_plane: ControlPlane, namespace: str, node: str, metrics_server: MetricsServer
) -> None:
    running_pod(control_plane, namespace, node)

    def top_pod() -> str | None:
        result = control_plane.kubectl("top", "pod", "-n", namespace, "--no-headers", check=False)
        return result.stdout if result.returncode == 0 and "busy" in result.stdout else None

    line = wait("kubectl top pod to show the pod", top_pod, timeout=120)
    match = re.search(r"busy\s+(\d+)m\s+(\d+)Mi", line)
    assert match, line
    assert 0 < int(match.group(1)) <= 4000 and 0 < int(match.group(2)) <= 16 * 1024

    def top_node() -> str | None:
        result = control_plane.kubectl("top", "node", node, "--no-headers", check=False)
        return result.stdout if result.returncode == 0 else None

    assert re.search(rf"{node}\s+\d+m\s+\d+%?\s+\d+Mi", wait("kubectl top node", top_node, timeout=120))
