"""The worker node itself: pods get addresses, DNS and the apiserver, and it leaves nothing behind.

These tests start nodes of their own (one at a time: the node takes a host-wide lock), before
the session's `worker_node` exists, and check the host after each: no process, mount, network
namespace, bridge, iptables chain, cgroup or directory of the node may outlive `stop()`, nor a
run that was killed (the next start tears down what it left).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane import ControlPlane
from controlplane.node import WorkerNode, node_binaries_dir
from controlplane.node_cleanup import mounts_under
from controlplane.node_config import BRIDGE, NODE_NAME, POD_CIDR
from tests.node.release import wait_for

pytestmark = pytest.mark.node

PAUSE_ONLY_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper"},
    "spec": {
        "nodeName": NODE_NAME,
        "terminationGracePeriodSeconds": 1,
        # The pause image is the one image every node has: it just sleeps.
        "containers": [{"name": "pause", "image": "localhost/rpvk-pause:3.10", "imagePullPolicy": "Never"}],
    },
}


def host_traces(node_root: Path) -> dict[str, list[str]]:
    """What a node could leave in the host kernel, as the node's own names find it."""
    iptables = []
    for command in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([command], capture_output=True, text=True, check=False).stdout
        iptables += [line for line in saved.splitlines() if "KUBE-" in line or "RPVK-" in line]
    netns = Path("/run/netns")
    links = subprocess.run(["ip", "-o", "link", "show", BRIDGE], capture_output=True, text=True, check=False)
    processes = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and b"/run/rpvk-node" in _cmdline(entry)
    ]
    return {
        "mounts": mounts_under([str(node_root), "/run/rpvk-node"], Path("/proc/self/mountinfo").read_text()),
        "netns": sorted(p.name for p in netns.iterdir() if p.name.startswith("cni-"))
        if netns.is_dir()
        else [],
        "bridge": [links.stdout.strip()] if links.returncode == 0 else [],
        "iptables": iptables,
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")],
        "processes": processes,
        "run dir": [str(p) for p in Path("/run/rpvk-node").glob("*")],
    }


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def clean(traces: dict[str, list[str]]) -> dict[str, list[str]]:
    return {kind: found for kind, found in traces.items() if found}


def test_a_pod_on_the_node_gets_an_address_and_stop_leaves_nothing_behind(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    node = WorkerNode(control_plane, node_bin_dir=node_binaries_dir(), data_dir=tmp_path / "node")
    node.start()
    try:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(PAUSE_ONLY_POD))

        def running() -> dict[str, object] | None:
            pod = json.loads(
                control_plane.kubectl("get", "pod", "sleeper", "-n", namespace, "-o", "json").stdout
            )
            return pod if pod["status"].get("phase") == "Running" else None

        pod = wait_for("the pod Running on the worker node", running, timeout=120)
        assert str(pod["status"]["podIP"]).startswith(POD_CIDR.rsplit(".", 2)[0])  # type: ignore[index]
        during = host_traces(tmp_path / "node")
        assert during["netns"] and during["bridge"] and during["processes"] and during["iptables"]
    finally:
        node.stop()
    assert clean(host_traces(tmp_path / "node")) == {}
    assert control_plane.kubectl("get", "node", NODE_NAME, check=False).returncode != 0


def test_a_killed_run_is_torn_down_by_the_next_start(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # A child process runs the node and is SIGKILLed with a pod running: its containerd, kubelet
    # and kube-proxy die with it (PR_SET_PDEATHSIG), the rest stays in the host kernel.
    control_plane.allow_cluster_network(POD_CIDR)
    handoff = tmp_path / "plane.json"
    handoff.write_text(json.dumps(control_plane_handoff(control_plane)))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.node.node_child", str(handoff), str(tmp_path / "killed")],
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,
    )
    try:
        wait_for(
            "the child's node Ready", lambda: (tmp_path / "killed" / "READY").exists() or None, timeout=120
        )
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(PAUSE_ONLY_POD))
        wait_for(
            "the pod Running",
            lambda: (
                json.loads(
                    control_plane.kubectl("get", "pod", "sleeper", "-n", namespace, "-o", "json").stdout
                )["status"].get("phase")
                == "Running"
            ),
            timeout=120,
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    time.sleep(1)
    left = host_traces(tmp_path / "killed")
    assert left["netns"] and left["mounts"], "a killed node should have left its pod behind"

    node = WorkerNode(control_plane, node_bin_dir=node_binaries_dir(), data_dir=tmp_path / "next")
    node.start()
    node.stop()
    assert clean(host_traces(tmp_path / "killed")) == {}
    assert clean(host_traces(tmp_path / "next")) == {}


def control_plane_handoff(plane: ControlPlane) -> dict[str, object]:
    return {
        "bin_dir": str(plane.bin_dir),
        "server": plane.server,
        "apiserver_port": plane.ports.apiserver,
        "ca_file": str(plane.ca_file),
        "ca_key_file": str(plane.ca_key_file),
        "admin_cert": str(plane.files.cert("admin")),
        "admin_key": str(plane.files.key("admin")),
    }
