"""A real worker node for the local control plane: containerd, kubelet, kube-proxy, CoreDNS.

    with ControlPlane(bin_dir, data_dir) as plane, WorkerNode(plane, ...) as node:
        node.import_image(archive)          # no registry is reachable: images are imported
        plane.kubectl("apply", "-f", ...)   # pods run in containers on `local-worker`

`WorkerNode` owns the node's processes (containerd, CoreDNS, kubelet, kube-proxy: the kubelet
and kube-proxy built from the same pinned module as the control plane, containerd, runc and the
CNI plugins from Debian), its host network (the pod bridge, a forwarder that gives pods the
apiserver, an iptables guard that drops any pod packet bound off this machine) and the cluster
objects that make it a node (its Node, the `kubernetes` Service's EndpointSlice, CoreDNS's RBAC).
The configuration itself is in `node_config`; taking it all apart in `node_cleanup`.

One node per machine at a time: the bridge, the pod range and kube-proxy's iptables chains are
host-wide, so `start()` takes a host-wide lock (`/run/lock/rpvk-node.lock`) and waits for it.
Needs root (mounts, network namespaces, iptables), like any kubelet.

`start()` first tears down what a previous, killed run left (its state file), then starts
everything and returns once the Node is Ready and kube-proxy serves. `stop()` stops the
processes, removes every mount, namespace, chain, cgroup and directory the node made, deletes
its Node, and is idempotent. Blocking; call from a thread that lives as long as the node.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Final, Protocol

import httpx
import yaml

from controlplane import node_config as config
from controlplane import pki
from controlplane.forwarding import TcpForwarder
from controlplane.node_cleanup import GUARD_CHAIN, NodeState, teardown
from controlplane.oci import write_image_archive
from controlplane.processes import ChildProcess, free_port
from controlplane.running import ControlPlaneError, kubeconfig_document

__all__ = ["NodeCluster", "NodeError", "WorkerNode", "node_binaries_dir"]

_RUN_DIR: Final = Path("/run/rpvk-node")
_LOCK_FILE: Final = Path("/run/lock/rpvk-node.lock")
_LOCK_TIMEOUT: Final = 1800.0
_READY_TIMEOUT: Final = 180.0
_POLL: Final = 0.2
_CNI_BIN_DIR: Final = "/usr/lib/cni"
_COREDNS_RBAC: Final = "system:rpvk-coredns"
_MANAGED_BY: Final = "node.controlplane.runpod-kubelet.local"


class NodeError(ControlPlaneError):
    """The node could not start (the message names the component and its log)."""


class _Ports(Protocol):
    @property
    def apiserver(self) -> int: ...


class NodeCluster(Protocol):
    """What a node needs of its control plane (`running.ControlPlane` is one)."""

    @property
    def bin_dir(self) -> Path: ...
    @property
    def server(self) -> str: ...
    @property
    def ports(self) -> _Ports: ...
    @property
    def ca_file(self) -> Path: ...
    @property
    def ca_key_file(self) -> Path: ...
    def http(self) -> httpx.Client: ...
    def allow_cluster_network(self, cidr: str) -> None: ...


def _default_containerd_root() -> Path:
    # Kept between runs: imported images survive, so a warm run imports nothing.
    return Path.home() / ".cache" / "runpod-kubelet" / "node" / "containerd"


class WorkerNode:
    def __init__(
        self,
        plane: NodeCluster,
        *,
        node_bin_dir: Path,
        data_dir: Path,
        containerd_root: Path | None = None,
    ) -> None:
        self.plane = plane
        self.bin_dir = plane.bin_dir
        self.node_bin_dir = node_bin_dir
        self.files = config.NodeFiles(
            root=data_dir, run=_RUN_DIR, containerd_root=containerd_root or _default_containerd_root()
        )
        self._lock: IO[str] | None = None
        self._state: NodeState | None = None
        self._forwarder: TcpForwarder | None = None
        self._processes: dict[str, ChildProcess] = {}
        self._ports: config.NodePorts | None = None

    name: Final = config.NODE_NAME
    ip: Final = config.NODE_IP

    @property
    def log_dir(self) -> Path:
        return self.files.logs

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> WorkerNode:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> WorkerNode:
        self._take_host_lock()
        try:
            self._sweep_previous_run()
            for directory in (self.files.root, self.files.logs, self.files.pki, self.files.run):
                directory.mkdir(parents=True, exist_ok=True)
            self._ports = config.NodePorts(
                kubelet=free_port(),
                kubelet_healthz=free_port(),
                proxy_healthz=free_port(),
                proxy_metrics=free_port(),
                dns_health=free_port(),
                dns_ready=free_port(),
                # Pods reach the apiserver on the node's address at the apiserver's own port.
                apiserver_forward=self.plane.ports.apiserver,
            )
            self._record_state()
            self._write_files()
            self._start_network()
            self._start_containerd()
            self.import_image(self._pause_archive())
            self._start_coredns()
            self._start_kubelet()
            self._start_kube_proxy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops everything and removes what the node made (see module doc). Idempotent."""
        for name in ("kube-proxy", "kubelet", "coredns", "containerd"):
            process = self._processes.pop(name, None)
            if process is not None:
                process.stop(grace=5.0)
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._state is not None:
            problems = teardown(self._state)
            self._state = None
            (self.files.logs / "teardown.log").write_text("\n".join(problems) + "\n")
        with contextlib.suppress(httpx.HTTPError, ControlPlaneError):
            http = self.plane.http()
            http.delete(f"/api/v1/nodes/{self.name}")
            http.delete("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes-node")
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def import_image(self, archive: Path) -> None:
        """Loads a docker-archive or OCI archive into the node's containerd (the CRI namespace)."""
        self._ctr("images", "import", "--snapshotter", "overlayfs", str(archive))

    def images(self) -> list[str]:
        listing = self._ctr("images", "ls", "--quiet").stdout
        return [line.strip() for line in listing.splitlines() if line.strip()]

    # --- host ------------------------------------------------------------------------------

    def _take_host_lock(self) -> None:
        _LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        lock = _LOCK_FILE.open("w")
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise NodeError(
                        f"another worker node holds {_LOCK_FILE} (one node per machine)"
                    ) from None
                time.sleep(1.0)
        self._lock = lock

    def _state_file(self) -> Path:
        return self.files.run / "state.json"

    def _sweep_previous_run(self) -> None:
        previous = NodeState.load(self._state_file())
        if previous is not None:
            teardown(previous)

    def _record_state(self) -> None:
        netns = Path("/run/netns")
        self._state = NodeState(
            roots=[str(self.files.root), str(self.files.run), str(self.files.containerd_root)],
            scratch=[str(self.files.run), str(self.files.kubelet_root)],
            bridge=config.BRIDGE,
            pod_cidr=config.POD_CIDR,
            containerd_socket=str(self.files.containerd_socket),
            kube_proxy=str(self.bin_dir / "kube-proxy"),
            netns_before=sorted(p.name for p in netns.iterdir()) if netns.is_dir() else [],
            ip_forward_before=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        )
        self._state.save(self._state_file())

    def _start_network(self) -> None:
        """The bridge with the node's address (made here, not by CNI, so the forwarder and CoreDNS
        can bind to it before the first pod), forwarding for Service traffic, and the guard."""
        _sh("ip", "link", "add", config.BRIDGE, "type", "bridge")
        _sh("ip", "addr", "add", f"{config.NODE_IP}/{config.POD_CIDR.split('/')[1]}", "dev", config.BRIDGE)
        _sh("ip", "link", "set", config.BRIDGE, "up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        # Pods may talk to each other, to Services and to this host, never beyond 198.18.0.0/15.
        _sh("iptables", "-N", GUARD_CHAIN)
        _sh("iptables", "-A", GUARD_CHAIN, "-s", config.POD_CIDR, "!", "-d", "198.18.0.0/15", "-j", "DROP")
        _sh("iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
        self.plane.allow_cluster_network(config.POD_CIDR)
        self._forwarder = TcpForwarder(
            listen=(config.NODE_IP, self.ports.apiserver_forward),
            target=("127.0.0.1", self.plane.ports.apiserver),
        )
        self._put_kubernetes_endpoints()

    def _put_kubernetes_endpoints(self) -> None:
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes-node",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": _MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [config.NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.ports.apiserver_forward, "protocol": "TCP"}],
        }
        _apply(self.plane.http(), "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", body)

    # --- files -----------------------------------------------------------------------------

    @property
    def ports(self) -> config.NodePorts:
        if self._ports is None:
            raise NodeError("node not started")
        return self._ports

    def _write_files(self) -> None:
        files = self.files
        files.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        files.config("containerd.toml").write_text(config.containerd_config(files, cni_bin_dir=_CNI_BIN_DIR))
        (files.cni_conf_dir / "10-rpvk.conflist").write_text(config.cni_conflist(files))
        files.config("resolv.conf").write_text(f"nameserver {config.NODE_IP}\n")
        kubelet = config.kubelet_config(files, self.ports, client_ca=self.plane.ca_file)
        files.config("kubelet.yaml").write_text(yaml.safe_dump(kubelet))
        files.config("kube-proxy.yaml").write_text(
            yaml.safe_dump(config.kube_proxy_config(files, self.ports))
        )
        files.config("Corefile").write_text(config.corefile(files, self.ports))
        ca = pki.load_pair(self.plane.ca_file, self.plane.ca_key_file)
        serving = pki.issue(ca, common_name=config.NODE_NAME, ip_addresses=(config.NODE_IP,), server=True)
        pki.write_pair(serving, files.pki, "kubelet-serving")
        users = {
            "kubelet": (f"system:node:{config.NODE_NAME}", ("system:nodes",)),
            "kube-proxy": ("system:kube-proxy", ()),
            "coredns": (_COREDNS_RBAC, ()),
        }
        for file_name, (user, groups) in users.items():
            client = pki.issue(ca, common_name=user, organizations=groups, client=True)
            path = files.kubeconfig(file_name)
            path.touch(mode=0o600)
            path.write_text(
                yaml.safe_dump(kubeconfig_document(self.plane.server, ca.cert_pem, client, user=user))
            )

    def _pause_archive(self) -> Path:
        archive = self.files.containerd_root.parent / "pause-image.tar"
        if not archive.is_file():
            archive.parent.mkdir(parents=True, exist_ok=True)
            binary = (self.node_bin_dir / "pause").read_bytes()
            write_image_archive(
                archive, reference=config.PAUSE_IMAGE, files={"pause": (binary, 0o755)}, entrypoint=["/pause"]
            )
        return archive

    # --- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> ChildProcess:
        process = ChildProcess(name, argv, self.files.logs / f"{name}.log")
        process.start()
        self._processes[name] = process
        return process

    def _wait(self, name: str, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        process = self._processes[name]
        while True:
            code = process.exited()
            if code is not None:
                raise NodeError(
                    f"{name} exited with code {code} before {what}; log {process.log_path}:\n{process.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError, OSError, subprocess.SubprocessError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"{name}: {what} not after {_READY_TIMEOUT:.0f}s; log {process.log_path}:\n{process.log_tail()}"
                )
            time.sleep(_POLL)

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.files.containerd_socket), "--namespace", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0:
            raise NodeError(f"{' '.join(argv)} failed: {result.stderr.strip()[-2000:]}")
        return result

    def _start_containerd(self) -> None:
        self.files.containerd_root.mkdir(parents=True, exist_ok=True)
        self._spawn("containerd", ["containerd", "--config", str(self.files.config("containerd.toml"))])
        self._wait("containerd", "its socket answers", lambda: self._ctr("version").returncode == 0)

    def _start_coredns(self) -> None:
        http = self.plane.http()
        _apply(
            http,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": _COREDNS_RBAC},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
        )
        _apply(
            http,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": _COREDNS_RBAC},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": _COREDNS_RBAC,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": _COREDNS_RBAC}
                ],
            },
        )
        self._spawn(
            "coredns", [str(self.node_bin_dir / "coredns"), "-conf", str(self.files.config("Corefile"))]
        )
        url = f"http://127.0.0.1:{self.ports.dns_ready}/ready"
        self._wait("coredns", "/ready", lambda: httpx.get(url, timeout=2).is_success)

    def _start_kubelet(self) -> None:
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={self.files.config('kubelet.yaml')}",
                f"--kubeconfig={self.files.kubeconfig('kubelet')}",
                f"--root-dir={self.files.kubelet_root}",
                f"--hostname-override={config.NODE_NAME}",
                f"--node-ip={config.NODE_IP}",
                "--v=1",
            ],
        )
        self._wait("kubelet", f"Node {self.name} Ready", self._node_ready)

    def _node_ready(self) -> bool:
        found = self.plane.http().get(f"/api/v1/nodes/{self.name}")
        if not found.is_success:
            return False
        conditions = found.json().get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _start_kube_proxy(self) -> None:
        self._spawn(
            "kube-proxy",
            [str(self.bin_dir / "kube-proxy"), f"--config={self.files.config('kube-proxy.yaml')}", "--v=1"],
        )
        url = f"http://127.0.0.1:{self.ports.proxy_healthz}/healthz"
        self._wait("kube-proxy", "/healthz", lambda: httpx.get(url, timeout=2).is_success)


def _sh(*argv: str) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _apply(http: httpx.Client, collection: str, body: dict[str, Any]) -> None:
    created = http.post(collection, json=body)
    if created.status_code == 409:
        http.put(f"{collection}/{body['metadata']['name']}", json=body).raise_for_status()
    else:
        created.raise_for_status()


def node_binaries_dir() -> Path:
    """`tools/node/build`'s output directory (builds pause and CoreDNS when missing)."""
    script = Path(__file__).resolve().parent.parent / "tools" / "node" / "build"
    result = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise NodeError(f"{script} failed with exit code {result.returncode}")
    return Path(lines[-1])
