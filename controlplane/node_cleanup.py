"""Taking a worker node apart: everything it leaves in the host kernel, removed.

A kubelet with containerd leaves more behind than its processes: container processes under
their shims, mounts (container root filesystems, `/dev/shm`, secret tmpfs volumes), network
namespaces with veths on the bridge, iptables chains (kube-proxy's and our own guard), cgroups
(`kubepods` in every v1 controller and in the unified hierarchy) and a sysctl. `teardown` takes
all of it away, in an order that works with or without the processes still running, and is
safe to run again (everything it finds missing counts as done). It is what `WorkerNode.stop()`
runs and what `WorkerNode.start()` runs first over a previous run's state file, so a killed
test run leaks until the next start at the latest.

Owns nothing else: it never starts anything and touches only what the state names: network
namespaces created after the node started, mounts under the node's own directories, the
node's bridge and chains. Errors of one step are collected and do not stop the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["GUARD_CHAIN", "NodeState", "kube_rules", "mounts_under", "teardown"]

GUARD_CHAIN: Final = "RPVK-NODE-GUARD"
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_NETNS_DIR: Final = Path("/run/netns")
_KILL_WAIT: Final = 5.0


@dataclass
class NodeState:
    """What a running node has changed on the host; written to `run/state.json` at start."""

    roots: list[str]  # everything mounted below these is unmounted
    scratch: list[str]  # these directories are removed afterwards
    bridge: str
    pod_cidr: str
    containerd_socket: str
    kube_proxy: str
    netns_before: list[str] = field(default_factory=list)
    ip_forward_before: str = "0"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> NodeState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def mounts_under(roots: Iterable[str], mountinfo: str) -> list[str]:
    """Mount points at or below any of `roots`, deepest first (the order to unmount them)."""
    prefixes = [root.rstrip("/") for root in roots]
    points: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if any(point == prefix or point.startswith(prefix + "/") for prefix in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _run(argv: list[str], errors: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 and "No such" not in result.stderr and "does not exist" not in result.stderr:
        errors.append(f"{' '.join(argv)}: {result.stderr.strip()[:200]}")


def _processes_mentioning(needle: str) -> list[int]:
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
    return pids


def _kill_shims(state: NodeState) -> None:
    """containerd's shims (and the containers under them) outlive containerd on purpose."""
    for pid in _processes_mentioning(state.containerd_socket):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_cgroup_members(errors: list[str]) -> list[Path]:
    cgroups = [path for path in _CGROUP_ROOT.glob("*/kubepods") if path.is_dir()]
    cgroups += [path for path in _CGROUP_ROOT.glob("kubepods") if path.is_dir()]
    for cgroup in cgroups:
        for procs in cgroup.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT
    while time.monotonic() < deadline:
        busy = False
        for cgroup in cgroups:
            for procs in cgroup.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    busy = busy or bool(procs.read_text().strip())
        if not busy:
            break
        time.sleep(0.1)
    return cgroups


def _remove_cgroups(cgroups: list[Path], errors: list[str]) -> None:
    for cgroup in cgroups:
        for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(FileNotFoundError):
                try:
                    directory.rmdir()
                except OSError as exc:
                    errors.append(f"rmdir {directory}: {exc}")
        with contextlib.suppress(FileNotFoundError):
            try:
                cgroup.rmdir()
            except OSError as exc:
                errors.append(f"rmdir {cgroup}: {exc}")


def _unmount(roots: list[str], errors: list[str]) -> None:
    for point in mounts_under(roots, Path("/proc/self/mountinfo").read_text()):
        result = subprocess.run(["umount", "-l", point], capture_output=True, text=True, check=False)
        if result.returncode != 0 and "not mounted" not in result.stderr:
            errors.append(f"umount {point}: {result.stderr.strip()[:200]}")


def _delete_network_namespaces(state: NodeState, errors: list[str]) -> None:
    if not _NETNS_DIR.is_dir():
        return
    for entry in sorted(_NETNS_DIR.iterdir()):
        if entry.name.startswith("cni-") and entry.name not in state.netns_before:
            _run(["ip", "netns", "delete", entry.name], errors)


def kube_rules(saved: str) -> tuple[list[list[str]], list[str]]:
    """From `iptables-save` of one table: the rules (as `-A CHAIN ...` argument lists) that jump
    to a KUBE-* chain or our guard from a chain that is not one of them, and the KUBE-* chains
    themselves. The kubelet writes KUBE-FIREWALL and canaries, kube-proxy everything else; with
    one node per machine (the host lock) every KUBE-* chain here is the node's."""
    ours = {GUARD_CHAIN}
    chains: list[str] = []
    for line in saved.splitlines():
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith("KUBE-") or name in ours:
                chains.append(name)
    owned = set(chains)
    jumps: list[list[str]] = []
    for line in saved.splitlines():
        if not line.startswith("-A "):
            continue
        words = shlex.split(line)
        if len(words) > 2 and words[0] == "-A" and words[1] not in owned:
            targets = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")}
            if targets & owned:
                jumps.append(words)
    return jumps, chains


def _remove_iptables(state: NodeState, errors: list[str]) -> None:
    if Path(state.kube_proxy).is_file():
        # kube-proxy's own clean-up removes the chains and rules it may have written.
        subprocess.run([state.kube_proxy, "--cleanup"], capture_output=True, check=False)
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            saved = subprocess.run(
                [f"{command}-save", "-t", table], capture_output=True, text=True, check=False
            )
            if saved.returncode != 0:
                continue
            jumps, chains = kube_rules(saved.stdout)
            for rule in jumps:
                _run([command, "-t", table, "-D", *rule[1:]], errors)
            for chain in chains:
                _run([command, "-t", table, "-F", chain], errors)
            for chain in chains:
                _run([command, "-t", table, "-X", chain], errors)


def teardown(state: NodeState) -> list[str]:
    """Removes everything `state` names; returns what could not be removed (empty = clean)."""
    errors: list[str] = []
    _kill_shims(state)
    cgroups = _kill_cgroup_members(errors)
    _unmount(state.roots, errors)
    _delete_network_namespaces(state, errors)
    subprocess.run(["ip", "link", "delete", state.bridge], capture_output=True, check=False)
    _remove_iptables(state, errors)
    with contextlib.suppress(OSError):
        Path("/proc/sys/net/ipv4/ip_forward").write_text(state.ip_forward_before)
    _remove_cgroups(cgroups, errors)
    # The mount points are gone now, so removing these cannot reach into a container's files.
    for directory in state.scratch:
        shutil.rmtree(directory, ignore_errors=True)
    return errors
