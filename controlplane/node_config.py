"""Configuration of the local worker node, as pure functions of paths and ports.

Owns the choice of every setting of containerd, the CNI network, the kubelet, kube-proxy and
CoreDNS (nothing here starts a process or writes a file; `node` does), so the whole node can
be read in one place. The layout, all on this machine:

- Pods get addresses from `POD_CIDR` on the bridge `BRIDGE`, whose own address `NODE_IP` is the
  node's InternalIP; Services get ClusterIPs from `flags.SERVICE_CIDR`. Both lie in
  198.18.0.0/15 (reserved for benchmark tests), so nothing is ever addressed to a real network.
- The kubelet serves on `NODE_IP` (the apiserver reaches it through its egress proxy, which is
  allowed to dial `POD_CIDR`); CoreDNS listens on `NODE_IP:53` and is the pods' nameserver;
  kube-proxy programs the ClusterIPs with `masqueradeAll` (every Service connection is
  source-NATed to the bridge address, so replies always come back through the host), and
  NodePorts only on the bridge address.

Settings this machine needs, verified here (`../shared/notes/real-node.md`):
- containerd's `restrict_oom_score_adj`: processes here cannot lower `oom_score_adj`, and runc
  dies trying when the kubelet asks for -998 for the pause container;
- `failCgroupV1: false` (the host has a hybrid cgroup hierarchy) and `cgroupfs` (no systemd);
- no swap check, no node-allocatable enforcement, no local-storage isolation, no eviction
  thresholds and no image garbage collection (imported images cannot be pulled again: no
  registry is reachable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BRIDGE",
    "CLUSTER_DOMAIN",
    "CNI_NETWORK",
    "NODE_IP",
    "NODE_NAME",
    "POD_CIDR",
    "NodeFiles",
    "NodePorts",
    "cni_conflist",
    "containerd_config",
    "corefile",
    "kube_proxy_config",
    "kubelet_config",
]

NODE_NAME: Final = "local-worker"
POD_CIDR: Final = "198.18.0.0/24"
NODE_IP: Final = "198.18.0.1"
BRIDGE: Final = "rpvk0"
CNI_NETWORK: Final = "rpvk-pods"
CLUSTER_DOMAIN: Final = "cluster.local"
PAUSE_IMAGE: Final = "localhost/rpvk-pause:3.10"


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    dns_health: int
    dns_ready: int
    apiserver_forward: int


@dataclass(frozen=True)
class NodeFiles:
    """Where the node's files live: `root` (kept with the logs) and `run` (short paths for
    sockets, which are limited to about 100 bytes)."""

    root: Path
    run: Path
    containerd_root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    def config(self, name: str) -> Path:
        return self.root / name

    def kubeconfig(self, user: str) -> Path:
        return self.root / f"{user}.kubeconfig"


def containerd_config(files: NodeFiles, *, cni_bin_dir: str) -> str:
    """containerd 1.6 config (version 2 schema): CRI with runc, CNI and our pause image."""
    return f"""version = 2
root = "{files.containerd_root}"
state = "{files.containerd_state}"
oom_score = 0

[grpc]
  address = "{files.containerd_socket}"

[ttrpc]
  address = "{files.containerd_socket}.ttrpc"

[debug]
  level = "warn"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "{files.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(files: NodeFiles) -> str:
    """bridge + host-local addresses from POD_CIDR, portmap for hostPorts; no IP masquerade
    (nothing may leave the machine, so there is nothing to masquerade for)."""
    conflist = {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(files.cni_ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    return json.dumps(conflist, indent=2)


def kubelet_config(files: NodeFiles, ports: NodePorts, *, client_ca: Path) -> dict[str, Any]:
    """KubeletConfiguration: webhook authn/authz like a kubeadm node, this machine's quirks."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(files.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(files.pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "10s"},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{files.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "evictionHard": {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(files.config("resolv.conf")),
        "podLogsDir": str(files.pod_logs),
        "serializeImagePulls": False,
        "registerNode": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "maxPods": 50,
        "podPidsLimit": -1,
    }


def kube_proxy_config(files: NodeFiles, ports: NodePorts) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(files.kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"masqueradeAll": True, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        # Leave the host's conntrack table size alone (kube-proxy would raise it).
        "conntrack": {"maxPerCore": 0, "min": 0},
    }


def corefile(files: NodeFiles, ports: NodePorts) -> str:
    """Cluster names only; no `forward`: a name outside the cluster gets NXDOMAIN/REFUSED, and
    no query leaves the machine."""
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{ports.dns_health}
    ready 127.0.0.1:{ports.dns_ready}
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {files.kubeconfig("coredns")}
        pods insecure
    }}
}}
"""
