"""`kubectl exec`, `attach` and `port-forward` through the real kube-apiserver and kubectl.

Each test registers its own Node served by a `KubeletApiServer` of ours (as in
test_kubelet_logs_cluster.py) whose RunPod is the sandbox and whose `SshDialer` is
`ssh_pods.LocalDialer`: whatever `ssh.direct` the sandbox reports for the pod, the session goes
to an asyncssh server here that runs commands in a real `sh` (a RunPod image's sshd, in short).

Every test runs twice (`node` is parametrised):
- `spdy`: a plain node. kubectl speaks WebSocket (`v5.channel.k8s.io`, port-forward's
  `SPDY/3.1+portforward.k8s.io` tunnel) to kube-apiserver, which translates to SPDY/3.1 towards
  the node: what every cluster does with this node today;
- `websocket`: the node declares `ExtendWebSocketsToKubelet` in `status.declaredFeatures`, and
  kube-apiserver proxies kubectl's WebSocket streams straight through to us.

The pod's phase is set to Running by the test (no binder runs here: kubectl port-forward
refuses a pod that is not Running).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pty
import re
import secrets
import select
import ssl
import statistics
import struct
import subprocess
import termios
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kubelet_nodes import register_node, remove_node
from kubernetes_asyncio.client import ApiClient
from ssh_pods import EchoServer, LocalDialer, SshPod, running_ssh_pod
from stream_clients import HttpAnswer, spdy_upgrade

from binder.kubelet_api.server import KubeletApiServer
from binder.pods.naming import owner_markers
from binder.settings import BinderSettings
from contract.annotations import POD_ID
from controlplane import ControlPlane
from runpod_api.client import RunPodClient
from runpod_api.models import CreateGpuConfig, CreatePodRequest
from sandbox.testing import running_sandbox

API_KEY = "kubelet-exec-test-key"
GPU = "NVIDIA GeForce RTX 3090"
DEADLINE = 30.0
WEBSOCKETS_TO_NODE = "ExtendWebSocketsToKubelet"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(api_key=API_KEY, seed=2, timings={"provisioningS": 0.05, "startingS": 0.05}) as sb:
        yield sb.base_url


@dataclass
class Node:
    name: str
    mode: str
    port: int
    server: KubeletApiServer
    plane: ControlPlane
    runpod: RunPodClient
    ssh: SshPod
    dialer: LocalDialer

    def argv(self, *args: str) -> list[str]:
        return [str(self.plane.bin_dir / "kubectl"), f"--kubeconfig={self.plane.kubeconfig}", *args]

    async def kubectl(
        self, *args: str, input: str | None = None, limit: float = DEADLINE
    ) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, self.argv(*args), input=input, capture_output=True, text=True, timeout=limit
        )

    async def start_pod(
        self,
        namespace: str,
        name: str,
        *,
        ssh: bool = True,
        annotations: dict[str, str] | None = None,
        tty: bool = False,
    ) -> str:
        """A Running pod on this node whose sandbox RunPod pod is RUNNING; returns its id."""
        container: dict[str, Any] = {"name": "main", "image": "busybox"}
        if tty:
            container |= {"stdin": True, "tty": True}
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": {
                "nodeName": self.name,
                "containers": [container],
                "tolerations": [{"operator": "Exists"}],
            },
        }
        await asyncio.to_thread(self.plane.kubectl, "apply", "-f", "-", input=json.dumps(manifest))
        uid = (
            await self.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
        ).stdout
        created = await self.runpod.create_pod(
            CreatePodRequest(
                name=f"rpvk-exec-{uid[:8]}-1",
                image="busybox",
                gpu=CreateGpuConfig(id=GPU, count=1),
                cloud="SECURE",
                ports=["22/tcp"] if ssh else ["8888/http"],
                env=owner_markers(cluster_id="test", namespace=namespace, name=name, uid=uid, attempt=1),
                args="sh -c 'echo ready; sleep infinity'",
            )
        )
        deadline = time.monotonic() + DEADLINE
        while (await self.runpod.get_pod(created.id)).status != "RUNNING":
            assert time.monotonic() < deadline, "the sandbox pod never ran"
            await asyncio.sleep(0.1)
        result = await self.kubectl("annotate", "pod", name, "-n", namespace, f"{POD_ID}={created.id}")
        assert result.returncode == 0, result.stderr
        await self.set_phase(namespace, name, "Running")
        return created.id

    async def set_phase(self, namespace: str, name: str, phase: str) -> None:
        patch = json.dumps({"status": {"phase": phase}})
        result = await self.kubectl(
            "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
        )
        assert result.returncode == 0, result.stderr


async def start(server: KubeletApiServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        pytest.fail("the kubelet API server stopped before it was ready")
    return task


@pytest.fixture(params=["spdy", "websocket"])
async def node(
    request: pytest.FixtureRequest, control_plane: ControlPlane, kube_api: ApiClient, sandbox_url: str
) -> AsyncIterator[Node]:
    mode = str(request.param)
    name = f"rpexec-{mode[:2]}-{secrets.token_hex(3)}"
    settings = BinderSettings(
        runpod_api_key=API_KEY,
        runpod_base_url=sandbox_url,
        node_name=name,
        node_address="127.0.0.1",
        kubelet_client_ca_file=str(control_plane.kubelet_client_ca_file),
        stream_connect_timeout=5,
    )
    async with running_ssh_pod() as ssh, RunPodClient(api_key=API_KEY, base_url=sandbox_url) as runpod:
        dialer = LocalDialer(ssh)
        server = KubeletApiServer(api=kube_api, runpod=runpod, settings=settings, port=0, ssh_dialer=dialer)
        task = await start(server)
        assert server.bound_port is not None
        features = [WEBSOCKETS_TO_NODE] if mode == "websocket" else []
        await register_node(control_plane, name, server.bound_port, features=features)
        try:
            yield Node(name, mode, server.bound_port, server, control_plane, runpod, ssh, dialer)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await remove_node(control_plane, name)


def protocols_seen(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {m.group(1) for m in re.finditer(r" over (\S+)$", caplog.text, re.MULTILINE)}


# --- exec --------------------------------------------------------------------------------------


async def test_kubectl_exec_prints_output_and_exits_with_the_commands_code(
    node: Node, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await node.start_pod(namespace, "job")
    hi = await node.kubectl("exec", "job", "-n", namespace, "--", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    seven = await node.kubectl(
        "exec", "job", "-n", namespace, "--", "sh", "-c", "echo out; echo err >&2; exit 7"
    )
    assert seven.returncode == 7
    assert seven.stdout == "out\n" and seven.stderr.startswith("err\n")
    assert "command terminated with exit code 7" in seven.stderr
    quoted = await node.kubectl("exec", "job", "-n", namespace, "--", "printf", "%s|", "a b", "$HOME", "it's")
    assert quoted.stdout == "a b|$HOME|it's|"
    # What reached us: kube-apiserver's translation (SPDY) or kubectl's own WebSocket.
    assert protocols_seen(caplog) == ({"v4.channel.k8s.io"} if node.mode == "spdy" else {"v5.channel.k8s.io"})
    # Nothing of the keys in any log line, and no argv either (it may carry secrets).
    for key in (node.ssh.client_key, node.ssh.host_key):
        assert key.export_public_key().decode().split()[1] not in caplog.text
    assert "PRIVATE KEY" not in caplog.text and "it's" not in caplog.text


async def test_stdin_piped_into_kubectl_exec_reaches_the_command(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "cat")
    result = await node.kubectl("exec", "-i", "cat", "-n", namespace, "--", "cat", input="abc\n")
    assert (result.returncode, result.stdout) == (0, "abc\n"), result.stderr
    big = "".join(f"line {n}\n" for n in range(20_000))
    counted = await node.kubectl("exec", "-i", "cat", "-n", namespace, "--", "wc", "-l", input=big)
    assert counted.stdout.strip() == "20000"


class Terminal:
    """kubectl on a pseudo-terminal of its own, as a person's shell runs it."""

    def __init__(self, argv: Sequence[str], *, rows: int, cols: int) -> None:
        self.master, slave = pty.openpty()
        self.resize(rows, cols)

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=controlling_tty,
        )  # fmt: skip
        os.close(slave)
        self.output = b""

    def resize(self, rows: int, cols: int) -> None:
        # On the master: the kernel sends SIGWINCH to kubectl, which sends the new size on.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, pattern: str, limit: float = DEADLINE) -> None:
        deadline = time.monotonic() + limit
        while re.search(pattern, self.output.decode(errors="replace")) is None:
            assert time.monotonic() < deadline, f"{pattern!r} not in {self.output!r}"
            chunk = await asyncio.to_thread(self._read)
            if chunk == b"":
                pytest.fail(f"kubectl ended before {pattern!r}: {self.output!r}")
            self.output += chunk or b""

    def _read(self) -> bytes | None:
        """What kubectl wrote, None after half a second of nothing, b"" once it is gone."""
        ready, _, _ = select.select([self.master], [], [], 0.5)
        if not ready:
            return None
        try:
            return os.read(self.master, 65536)
        except OSError:
            return b""

    async def wait(self) -> int:
        code = await asyncio.to_thread(self.proc.wait, DEADLINE)
        with contextlib.suppress(OSError):
            while chunk := os.read(self.master, 65536):
                self.output += chunk
        os.close(self.master)
        return code


async def test_kubectl_exec_it_runs_on_a_terminal_of_the_callers_size_and_follows_resizes(
    node: Node, namespace: str
) -> None:
    await node.start_pod(namespace, "shell")
    script = "stty size; read a; stty size; read b; echo done:$b; exit 3"
    terminal = Terminal(
        node.argv("exec", "-it", "shell", "-n", namespace, "--", "sh", "-c", script), rows=33, cols=111
    )
    try:
        await terminal.expect(r"33 111")
        terminal.resize(50, 140)
        await asyncio.sleep(0.5)
        terminal.type("go\r")
        await terminal.expect(r"50 140")
        terminal.type("bye\r")
        await terminal.expect(r"done:bye")
        assert await terminal.wait() == 3
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()
    assert node.ssh.sessions[-1]["term"] == "xterm"


# --- attach ------------------------------------------------------------------------------------


async def test_kubectl_attach_opens_a_shell_over_ssh(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "attached")
    result = await node.kubectl("attach", "-i", "attached", "-n", namespace, input="echo from-attach\n")
    assert result.returncode == 0, result.stderr
    assert "from-attach" in result.stdout
    assert node.ssh.sessions[-1]["command"] is None  # a shell request, not a command
    without = await node.kubectl("attach", "attached", "-n", namespace, limit=15)
    assert without.returncode != 0
    assert "needs -i" in without.stderr and "kubectl logs -f attached" in without.stderr


async def test_kubectl_attach_it_gets_a_terminal(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "tty", tty=True)
    terminal = Terminal(node.argv("attach", "-it", "tty", "-n", namespace), rows=20, cols=70)
    try:
        terminal.type("stty size; exit 4\r")
        await terminal.expect(r"20 70")
        assert await terminal.wait() == 4
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()


# --- port-forward ------------------------------------------------------------------------------


async def test_kubectl_port_forward_carries_bytes_both_ways(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "board")
    async with EchoServer() as echo:
        proc = await asyncio.create_subprocess_exec(
            *node.argv("port-forward", "board", "-n", namespace, f":{echo.port}"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode()
            local = int(re.search(r"127\.0\.0\.1:(\d+) ->", line).group(1))  # type: ignore[union-attr]
            for round_trip in range(3):  # one SSH channel per connection, one SSH connection
                reader, writer = await asyncio.open_connection("127.0.0.1", local)
                payload = f"request {round_trip} ".encode() * 5000
                writer.write(payload)
                await writer.drain()
                answer = await asyncio.wait_for(reader.readexactly(len(payload)), DEADLINE)
                assert answer == payload.upper()
                writer.close()
            assert echo.connections == 3
            assert node.ssh.forwards == [("127.0.0.1", echo.port)] * 3
        finally:
            proc.terminate()
            await proc.wait()


async def test_kubectl_port_forward_to_a_port_nobody_listens_on_says_so(node: Node, namespace: str) -> None:
    await node.start_pod(namespace, "quiet")
    from ssh_pods import free_port

    remote = free_port()
    proc = await asyncio.create_subprocess_exec(
        *node.argv("port-forward", "quiet", "-n", namespace, f":{remote}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode()
        local = int(re.search(r"127\.0\.0\.1:(\d+) ->", line).group(1))  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        writer.close()
        await asyncio.wait_for(proc.wait(), DEADLINE)  # client-go ends the session on an error
        stderr = (await proc.stderr.read()).decode()
        assert f"nothing accepts connections on 127.0.0.1:{remote} inside the pod" in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- refusals ----------------------------------------------------------------------------------


async def test_kubectl_exec_into_pods_it_cannot_reach_says_why(node: Node, namespace: str) -> None:
    no_sshd = await node.start_pod(namespace, "nosshd")
    node.dialer.no_sshd[no_sshd] = (
        f"the image of RunPod pod {no_sshd} runs no sshd (connection refused on its port 22): "
        "use an image that starts sshd, as RunPod's official images do"
    )
    await node.start_pod(namespace, "noport", ssh=False)
    await node.start_pod(namespace, "optout", annotations={"runpod.io/ssh": "disabled"})
    await node.start_pod(namespace, "finished")
    await node.set_phase(namespace, "finished", "Succeeded")
    await node.start_pod(namespace, "pending")
    await node.kubectl("annotate", "pod", "pending", "-n", namespace, f"{POD_ID}-")
    expectations = {
        "nosshd": "runs no sshd",
        "noport": "RunPod reports no SSH endpoint",
        "optout": "opted out of SSH (runpod.io/ssh: disabled)",
        "finished": "completed pod",  # kubectl's own check, before any request
        "pending": "is not running yet",
    }
    for pod, words in expectations.items():
        started = time.monotonic()
        result = await node.kubectl("exec", pod, "-n", namespace, "--", "true", limit=20)
        assert result.returncode != 0, pod
        assert words in result.stderr, (pod, result.stderr)
        assert time.monotonic() - started < 15, f"{pod}: the refusal took too long"
    assert {e.runpod_pod_id for e in node.dialer.endpoints} == {no_sshd}


async def test_only_callers_allowed_by_the_apiserver_and_us_get_in(
    node: Node, namespace: str, control_plane: ControlPlane
) -> None:
    await node.start_pod(namespace, "guarded")
    await node.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    token = (await node.kubectl("create", "token", "viewer", "-n", namespace)).stdout.strip()
    viewer = await asyncio.to_thread(
        subprocess.run,
        [
            str(node.plane.bin_dir / "kubectl"), "--kubeconfig=/dev/null", f"--server={control_plane.server}",
            f"--certificate-authority={control_plane.ca_file}", f"--token={token}",
            "exec", "guarded", "-n", namespace, "--", "true",
        ],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert viewer.returncode != 0
    assert 'cannot create resource "pods/exec"' in viewer.stderr or "forbidden" in viewer.stderr.lower()
    assert not node.dialer.endpoints
    # Straight to the node without the apiserver's client certificate: 401, before any upgrade.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    anonymous = await spdy_upgrade(
        "127.0.0.1", node.port, context, f"/exec/{namespace}/guarded/main?command=true&output=1"
    )
    assert isinstance(anonymous, HttpAnswer) and anonymous.status == 401
    with_token = await spdy_upgrade(
        "127.0.0.1", node.port, context, f"/exec/{namespace}/guarded/main?command=true&output=1",
        extra=[("Authorization", f"Bearer {token}")],
    )  # fmt: skip
    assert isinstance(with_token, HttpAnswer) and with_token.status == 403
    assert "subresource(s)=[proxy]" in with_token.body
    assert not node.dialer.endpoints


# --- timing ------------------------------------------------------------------------------------


async def test_exec_round_trip_next_to_logs(node: Node, namespace: str, record_property: Any) -> None:
    """Wall time of `kubectl exec pod -- true` next to `kubectl logs pod` on the same pod, and
    `kubectl get pod` (kubectl's start and one API call) for scale. Printed with `-s`."""
    await node.start_pod(namespace, "timed")
    commands = {
        "exec": ("exec", "timed", "-n", namespace, "--", "true"),
        "logs": ("logs", "timed", "-n", namespace),
        "get": ("get", "pod", "timed", "-n", namespace, "-o", "name"),
    }
    timings: dict[str, list[float]] = {kind: [] for kind in commands}
    for _ in range(9):
        for kind, args in commands.items():
            started = time.monotonic()
            result = await node.kubectl(*args)
            timings[kind].append(time.monotonic() - started)
            assert result.returncode == 0, result.stderr
    medians = {kind: statistics.median(values[1:]) for kind, values in timings.items()}
    for kind, value in medians.items():
        record_property(f"{kind}_median_s", round(value, 3))
    shown = ", ".join(f"kubectl {kind}: {value * 1000:.0f} ms" for kind, value in medians.items())
    print(f"\n[{node.mode}] medians of 8 runs: {shown}")
    print({k: [round(v * 1000) for v in vs] for k, vs in timings.items()})
    # RunPod's log stream needs an idle gap to end a snapshot; exec ends with the command.
    assert medians["exec"] < 5.0
