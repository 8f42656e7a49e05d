"""`runpod-kubelet demo` end to end, as a subprocess, exactly as `make demo` runs it.

The local mode starts its own control plane (the binaries must be built: `make control-plane`),
the sandbox RunPod, the binder and the webhook; the external mode runs the same story on the
test session's control plane through `--kubeconfig`. Both are bounded well inside the test
timeout; the demo's own logs are printed when a test fails.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane import BinariesMissing, binaries_dir
from controlplane.processes import free_port

pytestmark = pytest.mark.cluster

STORY_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0
FAKE_KEY = "rk-this-is-not-a-real-key"


class Demo:
    """The demo subprocess; its output is read line by line on a thread so waits are bounded."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runpod_kubelet.cli", "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str, *, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + self.output)

    def find(self, pattern: str) -> re.Match[str]:
        """The first line read so far that matches."""
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + self.output)

    def finish(self, *, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def demo_env() -> dict[str, str]:
    try:
        binaries_dir(build=False)
    except BinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CI")}
    # A key in the environment must not send the demo to real RunPod without --live.
    env["RUNPOD_API_KEY"] = FAKE_KEY
    return env


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.close()
    for log in sorted(tmp_path.glob("**/logs/*.log")):
        sys.stderr.write(f"\n----- {log} -----\n{log.read_text(errors='replace')[-6000:]}\n")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (the demo's data directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv and cmdline.parent.name != str(os.getpid()):
            found.append(argv)
    return found


def _assert_story(output: str, *, chart: bool = False) -> None:
    steps = [
        "==> 1. The virtual node, as `kubectl get nodes` shows it",
        "==> 2. The GPU catalog the binder published",
        "==> 3. A bad pod is refused",
        "==> 4. A GPU Job: gpu-job.yaml",
        "==> 5. Its phases as they change",
        "==> 6. Its logs",
        "==> 7. Its exit code",
        *(["==> 8. Where it all ran", "==> 9. Cleaning up"] if chart else ["==> 8. Cleaning up"]),
    ]
    positions = [output.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), output
    assert re.search(r"virtual-runpod\s+Ready\s+agent", output), output
    assert "did you mean runpod.io/required-gpu-memory?" in output
    assert "GPU candidates, tried in this order (1 GPU, SECURE cloud):" in output
    assert "price cap: $0.35 per GPU-hour" in output
    if not chart:
        # The chart's binder syncs every 5 s while pods change: a 4 s Job may go from Pending
        # straight to Succeeded there; the host-run binder of the plain demo ticks every second.
        assert re.search(r"\] Running; running", output), output
    assert re.search(r"\] Succeeded; terminated: Completed, exit code 0", output), output
    assert "    epoch 3/3 loss=0.22" in output
    assert "exit code 0 (read by the binder from the log stream" in output
    assert "Job Complete" in output
    assert "    0 RunPod pods left" in output
    assert "demo finished: Job exit code 0, 0 RunPod pods left" in output
    assert FAKE_KEY not in output


def test_demo_tells_the_whole_story_keeps_running_and_stops_everything_on_ctrl_c(
    demo_env: dict[str, str], demos: list[Demo], tmp_path: Path
) -> None:
    data_dir = tmp_path / "local"
    demo = Demo("--yes", "--keep", "--data-dir", str(data_dir), env=demo_env)
    demos.append(demo)
    demo.wait_for_line(r"everything keeps running; press Ctrl-C", timeout=STORY_TIMEOUT)
    kubeconfig = demo.find(r"export KUBECONFIG=(\S+)").group(1)
    kubectl = demo.find(r"alias kubectl=(\S+)").group(1)
    output = demo.output
    _assert_story(output)
    assert "RUNPOD_API_KEY is set but not used" in output
    assert "sandbox RunPod listening on http://127.0.0.1:" in output

    # Kept: the printed KUBECONFIG reaches the cluster, and the node is still there.
    nodes = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "get", "nodes"], capture_output=True, text=True, timeout=60
    )
    assert re.search(r"virtual-runpod\s+Ready", nodes.stdout), nodes.stderr
    assert _processes_mentioning(str(data_dir)), "the kept demo's processes should be running"
    sandbox_url = demo.find(r"sandbox RunPod listening on (http://127\.0\.0\.1:\d+)").group(1)
    _exec_into_the_kept_demo([kubectl, f"--kubeconfig={kubeconfig}", "-n", "runpod-demo"], sandbox_url)

    demo.proc.send_signal(signal.SIGINT)
    assert demo.finish(timeout=STOP_TIMEOUT) == 0, demo.output
    assert "stopped everything the demo started" in demo.output
    assert _processes_mentioning(str(data_dir)) == []


def _shell_pod(name: str, image: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", "echo up; sleep infinity"],
                            "ports": [{"containerPort": 6006}], "resources": {"limits": {"nvidia.com/gpu": 1}}}],
        },
    })  # fmt: skip


def _exec_into_the_kept_demo(kubectl: list[str], sandbox_url: str) -> None:
    """Issue 14's check on `demo --keep`, the whole chain: kubectl, kube-apiserver, the binder's
    kubelet API, its SSH key and dialer, the sandbox pod's sshd."""

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kubectl, *args], input=stdin, capture_output=True, text=True, timeout=120)

    # An image that runs no sshd (the sandbox is told, as a real image would simply lack one).
    marked = httpx.put(f"{sandbox_url}/_sandbox/sshdless-images", json=["nginx:*"], timeout=10)
    assert marked.status_code == 204
    for name, image in (("shell", "runpod/pytorch:2.4.0"), ("plain", "nginx:1.27")):
        assert run("apply", "-f", "-", stdin=_shell_pod(name, image)).returncode == 0
    for name in ("shell", "plain"):
        ready = run("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
        assert ready.returncode == 0, ready.stderr

    hi = run("exec", "shell", "--", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    assert run("exec", "shell", "--", "sh", "-c", "exit 7").returncode == 7
    piped = run("exec", "-i", "shell", "--", "cat", stdin="abc\n")
    assert (piped.returncode, piped.stdout) == (0, "abc\n"), piped.stderr

    port = free_port()
    forward = subprocess.Popen(
        [*kubectl, "port-forward", "pod/shell", f"{port}:6006"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert forward.stdout is not None and "Forwarding from" in forward.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"ping both ways\n")
            conn.settimeout(30)
            assert conn.recv(100) == b"ping both ways\n"
    finally:
        forward.terminate()
        forward.communicate(timeout=30)

    refused = run("exec", "plain", "--", "echo", "hi")
    assert refused.returncode != 0
    assert "the image nginx:1.27" in refused.stderr and "runs no sshd" in refused.stderr, refused.stderr
    # Gone again, RunPod pods included, so the demo stops as it started.
    assert run("delete", "pod", "shell", "plain", "--wait=true", "--timeout=120s").returncode == 0


def test_demo_on_an_existing_cluster_admits_client_side_and_tells_the_same_story(
    demo_env: dict[str, str], demos: list[Demo], control_plane: Any, tmp_path: Path
) -> None:
    node = f"demo-ext-{os.getpid()}"
    demo = Demo(
        "--yes",
        "--data-dir",
        str(tmp_path / "external"),
        "--node-name",
        node,
        # That "existing" cluster runs on this machine, and its apiserver reaches only loopback.
        "--node-address",
        "127.0.0.1",
        env={**demo_env, "KUBECONFIG": str(control_plane.kubeconfig)},
    )
    demos.append(demo)
    try:
        code = demo.finish(timeout=STORY_TIMEOUT)
    finally:
        control_plane.kubectl(
            "delete", "job", "-n", "runpod-demo", "train", "--ignore-not-found", check=False
        )
    output = demo.output
    assert code == 0, output
    assert f"runpod-kubelet demo on existing cluster ({control_plane.kubeconfig};" in output
    assert "no webhook configuration is installed" in output
    assert "client-side: this cluster's apiserver cannot call a webhook" in output
    assert "client-side admission wrote the plan into the Job's pod template" in output
    _assert_story(output.replace(node, "virtual-runpod"))
    # What the demo created in that cluster is gone again; the cluster itself is untouched.
    assert control_plane.kubectl("get", "node", node, check=False).returncode != 0
    assert _gone_or_terminating(control_plane, "namespace", "runpod-demo")
    assert _gone_or_terminating(control_plane, "namespace", "runpod-kubelet-demo")


def _gone_or_terminating(control_plane: Any, kind: str, name: str) -> bool:
    result = control_plane.kubectl("get", kind, name, "-o", "jsonpath={.status.phase}", check=False)
    return bool(result.returncode != 0 or result.stdout == "Terminating")


CHART_TIMEOUT = 900.0


@pytest.mark.node
def test_demo_chart_installs_with_helm_on_a_real_node_keeps_running_and_leaves_nothing(
    demo_env: dict[str, str], demos: list[Demo], tmp_path: Path
) -> None:
    from tests.node.test_worker_node import clean, host_traces

    data_dir = tmp_path / "chart"
    demo = Demo("--yes", "--chart", "--keep", "--data-dir", str(data_dir), env=demo_env)
    demos.append(demo)
    demo.wait_for_line(r"everything keeps running; press Ctrl-C", timeout=CHART_TIMEOUT)
    output = demo.output
    _assert_story(output, chart=True)
    assert "helm install runpod-kubelet charts/runpod-kubelet -n runpod-system" in output
    # The chart's pods run on the real node; the Job's pod ran on the virtual one.
    for component in ("binder", "webhook", "sandbox"):
        assert re.search(rf"runpod-kubelet-{component}-\S+\s+1/1\s+Running\s.*local-worker", output), output
    assert re.search(r"train-\S+\s+0/1\s+Completed\s.*virtual-runpod", output), output

    kubeconfig = demo.find(r"export KUBECONFIG=(\S+)").group(1)
    kubectl = demo.find(r"alias kubectl=(\S+)").group(1)
    pods = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "get", "pods", "-A", "-o", "wide"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        len(re.findall(r"runpod-system\s+runpod-kubelet-\S+\s+1/1\s+Running.*local-worker", pods.stdout)) == 5
    )

    demo.proc.send_signal(signal.SIGINT)
    assert demo.finish(timeout=STOP_TIMEOUT * 5) == 0, demo.output
    assert "helm uninstall runpod-kubelet (drains the virtual node first)" in demo.output
    assert "stopped everything the demo started" in demo.output
    assert _processes_mentioning(str(data_dir)) == []
    assert clean(host_traces(data_dir / "node")) == {}
