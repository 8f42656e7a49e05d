"""`kubectl logs` through the real kube-apiserver, the kubelet API and the sandbox RunPod.

Each test registers its own Node (addresses: InternalIP 127.0.0.1, daemon endpoint = the port
our server bound), creates a Pod bound to it whose `runpod.io/pod-id` names a sandbox pod
carrying the pod's owner marker, and drives real `kubectl`. The apiserver dials the node's
InternalIP with its kubelet client certificate (signed by the cluster CA, which the server
trusts as `kubelet_client_ca_file`); it does not verify kubelet serving certificates here
(no `--kubelet-certificate-authority`), so the self-signed one serves.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from kubelet_nodes import register_node, remove_node
from kubernetes_asyncio.client import ApiClient

from binder.kubelet_api.server import KubeletApiServer
from binder.pods.naming import owner_markers
from binder.settings import BinderSettings
from contract.annotations import POD_ID
from controlplane import ControlPlane
from runpod_api.client import RunPodClient
from runpod_api.models import CreateGpuConfig, CreatePodRequest
from sandbox.testing import running_sandbox

API_KEY = "kubelet-api-test-key"
GPU = "NVIDIA GeForce RTX 3090"
DEADLINE = 30.0


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        yield sb.base_url


@dataclass
class Node:
    """One virtual node served by a `KubeletApiServer` in the test's event loop."""

    name: str
    port: int
    server: KubeletApiServer
    task: asyncio.Task[None]
    plane: ControlPlane
    runpod: RunPodClient

    async def kubectl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.plane.kubectl, *args, check=check)

    async def start_pod(self, namespace: str, name: str, script: str, *, wrap: bool = True) -> str:
        """A Kubernetes pod on this node whose RunPod pod runs `script`; returns the RunPod id.

        `wrap` adds the completion wrapper as engineer G's binder does: the script runs in a
        subshell, then the exit marker is printed and the container sleeps.
        """
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": self.name,
                "containers": [{"name": "main", "image": "busybox"}],
                "tolerations": [{"operator": "Exists"}],
            },
        }
        await asyncio.to_thread(self.plane.kubectl, "apply", "-f", "-", input=json.dumps(manifest))
        uid = (
            await self.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
        ).stdout
        if wrap:
            inner = shlex.quote(script)
            script = f'sh -c {inner}; rc=$?; echo "::rpvk-exit::{uid}::$rc"; sleep infinity'
        created = await self.runpod.create_pod(
            CreatePodRequest(
                name=f"rpvk-test-{uid[:8]}-1",
                image="busybox",
                gpu=CreateGpuConfig(id=GPU, count=1),
                cloud="SECURE",
                env=owner_markers(cluster_id="test", namespace=namespace, name=name, uid=uid, attempt=1),
                args=f"sh -c {shlex.quote(script)}",
            )
        )
        await self.kubectl("annotate", "pod", name, "-n", namespace, f"{POD_ID}={created.id}", check=True)
        return created.id

    async def logs_until(self, namespace: str, name: str, *flags: str, expect: str) -> str:
        """`kubectl logs` repeated until its output is `expect` (the container needs a moment)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            result = await self.kubectl("logs", name, "-n", namespace, *flags)
            if result.returncode == 0 and result.stdout == expect:
                return result.stdout
            if time.monotonic() > deadline:
                pytest.fail(f"kubectl logs {' '.join(flags)}: {result.stdout!r} {result.stderr!r}")
            await asyncio.sleep(0.5)


async def start(server: KubeletApiServer) -> asyncio.Task[None]:
    """Runs `server` in a task and returns once it listens (or raises why it could not)."""
    task = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        pytest.fail("the kubelet API server stopped before it was ready")
    return task


@pytest.fixture
async def node(
    control_plane: ControlPlane, namespace: str, kube_api: ApiClient, sandbox_url: str
) -> AsyncIterator[Node]:
    name = f"rplogs-{secrets.token_hex(4)}"
    settings = BinderSettings(
        runpod_api_key=API_KEY,
        runpod_base_url=sandbox_url,
        node_name=name,
        node_address="127.0.0.1",
        kubelet_client_ca_file=str(control_plane.kubelet_client_ca_file),
    )
    async with RunPodClient(api_key=API_KEY, base_url=sandbox_url) as runpod:
        server = KubeletApiServer(api=kube_api, runpod=runpod, settings=settings, port=0)
        task = await start(server)
        assert server.bound_port is not None
        plane = control_plane
        await register_node(plane, name, server.bound_port)
        try:
            yield Node(
                name=name, port=server.bound_port, server=server, task=task, plane=plane, runpod=runpod
            )
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await remove_node(plane, name)


async def test_kubectl_logs_shows_the_container_output_without_the_exit_marker(
    node: Node, namespace: str
) -> None:
    await node.start_pod(namespace, "hello", "echo one; echo two; echo three; exit 3")
    await node.logs_until(namespace, "hello", expect="one\ntwo\nthree\n")


async def test_kubectl_logs_tail_timestamps_and_limit_bytes(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "counts", "echo l1; echo l2; echo l3; echo l4; echo l5")
    await node.logs_until(namespace, "counts", expect="l1\nl2\nl3\nl4\nl5\n")
    await node.logs_until(namespace, "counts", "--tail=2", expect="l4\nl5\n")
    await node.logs_until(namespace, "counts", "--limit-bytes=7", expect="l1\nl2\nl")
    stamped = (await node.kubectl("logs", "counts", "-n", namespace, "--timestamps", "--tail=1")).stdout
    stamp, _, line = stamped.rstrip("\n").partition(" ")
    assert line == "l5"
    assert len(stamp) == len("2026-06-01T12:02:03.123456789Z") and stamp.endswith("Z")


async def test_kubectl_logs_since_shows_only_newer_lines(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "phases", "echo early; sleep 2; echo late; sleep infinity", wrap=False)
    await node.logs_until(namespace, "phases", expect="early\nlate\n")
    stamped = (await node.kubectl("logs", "phases", "-n", namespace, "--timestamps")).stdout.splitlines()
    late_stamp = stamped[1].split(" ", 1)[0]
    await node.logs_until(namespace, "phases", f"--since-time={late_stamp}", expect="late\n")
    await node.logs_until(namespace, "phases", "--since=1h", expect="early\nlate\n")


async def test_kubectl_logs_follow_streams_lines_while_the_container_runs(node: Node, namespace: str) -> None:
    await node.start_pod(
        namespace, "ticker", "sleep 1; echo tick 1; sleep 1.5; echo tick 2; sleep 1.5; echo tick 3"
    )
    argv = [
        str(node.plane.bin_dir / "kubectl"),
        f"--kubeconfig={node.plane.kubeconfig}",
        "logs",
        "-f",
        "ticker",
        "-n",
        namespace,
    ]

    def follow() -> tuple[list[tuple[float, str]], int]:
        arrivals: list[tuple[float, str]] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                arrivals.append((time.monotonic(), line.rstrip("\n")))
            return arrivals, proc.wait(timeout=DEADLINE)

    arrivals, code = await asyncio.wait_for(asyncio.to_thread(follow), DEADLINE)
    assert code == 0  # the follow ended with the container run (exit marker), not by a kill
    assert [line for _, line in arrivals] == ["tick 1", "tick 2", "tick 3"]
    # Lines arrived as they were printed, not in one burst at the end.
    assert arrivals[2][0] - arrivals[0][0] > 1.5


async def test_a_stopping_server_ends_open_follows(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "forever", "echo started; sleep infinity", wrap=False)
    await node.logs_until(namespace, "forever", expect="started\n")
    proc = await asyncio.create_subprocess_exec(
        str(node.plane.bin_dir / "kubectl"),
        f"--kubeconfig={node.plane.kubeconfig}",
        *("logs", "-f", "forever", "-n", namespace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), DEADLINE) == b"started\n"
        node.task.cancel()  # e.g. leadership lost
        with pytest.raises(asyncio.CancelledError):
            await node.task
        await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_requests_without_credentials_or_permission_are_refused(
    node: Node, namespace: str, control_plane: ControlPlane
) -> None:
    await node.start_pod(namespace, "secret", "echo classified")
    await node.logs_until(namespace, "secret", expect="classified\n")
    url = f"https://127.0.0.1:{node.port}/containerLogs/{namespace}/secret/main"
    async with httpx.AsyncClient(verify=False, timeout=10) as client:
        anonymous = await client.get(url)
        assert anonymous.status_code == 401

        await node.kubectl("create", "serviceaccount", "reader", "-n", namespace, check=True)
        token = (await node.kubectl("create", "token", "reader", "-n", namespace, check=True)).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        forbidden = await client.get(url, headers=headers)
        assert forbidden.status_code == 403
        assert f"user=system:serviceaccount:{namespace}:reader" in forbidden.text

        role = f"node-log-reader-{namespace}"
        await node.kubectl("create", "clusterrole", role, "--verb=get", "--resource=nodes/log", check=True)
        try:
            await node.kubectl(
                "create",
                "clusterrolebinding",
                role,
                f"--clusterrole={role}",
                f"--serviceaccount={namespace}:reader",
                check=True,
            )
            # Denials are cached for 30 s, as by the kubelet: a new identity sees the new grant.
            token2 = (
                await node.kubectl("create", "token", "reader", "-n", namespace, "--duration=11m", check=True)
            ).stdout.strip()
            allowed = await client.get(url, headers={"Authorization": f"Bearer {token2}"})
            assert (allowed.status_code, allowed.text) == (200, "classified\n")
            exec_answer = await client.post(
                f"https://127.0.0.1:{node.port}/exec/{namespace}/secret/main",
                headers={"Authorization": f"Bearer {token2}"},
            )
            # Reading logs is not running commands: exec needs nodes/proxy.
            assert exec_answer.status_code == 403
        finally:
            await node.kubectl("delete", "clusterrolebinding", role, "--ignore-not-found")
            await node.kubectl("delete", "clusterrole", role, "--ignore-not-found")


async def test_kubectl_logs_previous_and_exec_say_what_a_runpod_node_cannot_do(
    node: Node, namespace: str
) -> None:
    await node.start_pod(namespace, "limits", "echo hi")
    await node.logs_until(namespace, "limits", expect="hi\n")
    previous = await node.kubectl("logs", "limits", "-n", namespace, "--previous")
    assert previous.returncode != 0
    assert "previous container logs are not available on a RunPod node" in previous.stderr
    exec_result = await node.kubectl("exec", "limits", "-n", namespace, "--", "ls")
    assert exec_result.returncode != 0
    assert "kubectl exec is not supported on a RunPod node" in exec_result.stderr


def _peer_issuer(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


async def test_an_approved_kubelet_serving_csr_replaces_the_self_signed_certificate(
    control_plane: ControlPlane, namespace: str, kube_api: ApiClient, sandbox_url: str
) -> None:
    name = f"rpcsr-{secrets.token_hex(4)}"
    settings = BinderSettings(
        runpod_api_key=API_KEY,
        runpod_base_url=sandbox_url,
        node_name=name,
        node_address="127.0.0.1",
        kubelet_client_ca_file=str(control_plane.kubelet_client_ca_file),
        kubelet_serving_csr=True,
    )
    async with RunPodClient(api_key=API_KEY, base_url=sandbox_url) as runpod:
        server = KubeletApiServer(api=kube_api, runpod=runpod, settings=settings, port=0)
        task = await start(server)
        csr_name = ""
        try:
            assert server.bound_port is not None
            assert "kubelet-api" in await asyncio.to_thread(_peer_issuer, server.bound_port)
            csr_name = await _wait_for_csr(control_plane, name)
            await asyncio.to_thread(control_plane.kubectl, "certificate", "approve", csr_name)
            deadline = time.monotonic() + DEADLINE
            ca_subject = x509.load_pem_x509_certificate(
                control_plane.ca_file.read_bytes()
            ).subject.rfc4514_string()
            while await asyncio.to_thread(_peer_issuer, server.bound_port) != ca_subject:
                assert time.monotonic() < deadline, "the issued certificate was never served"
                await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if csr_name:
                await asyncio.to_thread(control_plane.kubectl, "delete", "csr", csr_name, check=False)


async def _wait_for_csr(plane: ControlPlane, node_name: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        listed: dict[str, Any] = json.loads(
            (await asyncio.to_thread(plane.kubectl, "get", "csr", "-o", "json")).stdout
        )
        for item in listed.get("items", []):
            if item["metadata"]["name"].startswith(f"{node_name}-kubelet-serving-"):
                return str(item["metadata"]["name"])
        assert time.monotonic() < deadline, "no CSR was created"
        await asyncio.sleep(0.5)
