"""Command lines of the four components, as pure functions of ports and file paths.

Owns the choice of flags only (nothing here starts a process or writes a file), so the
configuration can be read in one place:

- etcd: loopback client and peer URLs on free ports (never the default 2379/2380, which other
  engineers' etcds may hold), `--unsafe-no-fsync` because the data is throw-away and fsync is
  the slowest part of every write.
- kube-apiserver: client-certificate auth against the cluster CA, `Node,RBAC` authorization,
  the default admission plugins (none enabled or disabled explicitly), service-account tokens
  signed with our ECDSA key, a kubelet client certificate (so `kubectl logs` through a virtual
  node's kubelet API works), front-proxy material for the aggregation layer,
  `--enable-aggregator-routing=true` (services are resolved through their EndpointSlices, which
  is what `routing` relies on), an egress selector sending cluster traffic through
  `egress.EgressProxy` and kubelet addresses preferred as InternalIP first (a virtual
  node has no resolvable hostname), and no endpoint reconciler (the advertise address is
  loopback, which EndpointSlices may not carry; nothing runs in-cluster to use it).
- kube-controller-manager: every default controller, per-controller service-account
  credentials, the service-account token controller (private key + root CA), the CSR signer
  backed by the cluster CA (so `kubernetes.io/kubelet-serving` CSRs get signed), no leader
  election (one instance; election only delays start-up).
- kube-scheduler: defaults, no leader election.

Health endpoints of scheduler and controller-manager serve self-signed certificates generated
in memory; they are only polled for start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "CLUSTER_NAME",
    "SERVICE_CIDR",
    "Files",
    "Ports",
    "apiserver_args",
    "controller_manager_args",
    "etcd_args",
    "scheduler_args",
]

CLUSTER_NAME: Final = "runpod-kubelet-local"
# Service and pod addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmark tests):
# a packet that missed a rule can never reach anybody's real network.
SERVICE_CIDR: Final = "198.18.128.0/24"
# First address of SERVICE_CIDR: the `kubernetes` Service's ClusterIP, a SAN of the serving cert.
KUBERNETES_SERVICE_IP: Final = "198.18.128.1"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
FRONT_PROXY_CLIENT: Final = "front-proxy-client"
LOOPBACK: Final = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    controller_manager: int


@dataclass(frozen=True)
class Files:
    """Every file the components read, all under one data directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    def cert(self, stem: str) -> Path:
        return self.pki / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.pki / f"{stem}.key"

    @property
    def sa_public(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def sa_private(self) -> Path:
        return self.pki / "sa.key"

    def kubeconfig(self, user: str) -> Path:
        return self.root / f"{user}.kubeconfig"

    @property
    def egress_config(self) -> Path:
        return self.root / "egress-selector.yaml"


def etcd_args(bin_dir: Path, files: Files, ports: Ports) -> list[str]:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=default",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(bin_dir: Path, files: Files, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        # The endpoint reconciler refuses a loopback advertise address (EndpointSlice validation);
        # nothing runs in-cluster here, so the `kubernetes` Service needs no endpoints.
        "--endpoint-reconciler-type=none",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={files.root / 'apiserver'}",
        f"--tls-cert-file={files.cert('apiserver')}",
        f"--tls-private-key-file={files.key('apiserver')}",
        f"--client-ca-file={files.cert('ca')}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={files.sa_public}",
        f"--service-account-signing-key-file={files.sa_private}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        f"--kubelet-client-certificate={files.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={files.key('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        f"--requestheader-client-ca-file={files.cert('front-proxy-ca')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={files.cert('front-proxy-client')}",
        f"--proxy-client-key-file={files.key('front-proxy-client')}",
        "--enable-aggregator-routing=true",
        # Traffic into the cluster (webhooks, kubelet APIs) goes through our egress proxy, which
        # maps the TEST-NET cluster address to loopback (see controlplane/egress.py).
        f"--egress-selector-config-file={files.egress_config}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_args(bin_dir: Path, files: Files, ports: Ports) -> list[str]:
    return [
        *_component_args(
            bin_dir / "kube-controller-manager",
            files.kubeconfig("controller-manager"),
            ports.controller_manager,
        ),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={files.sa_private}",
        f"--root-ca-file={files.cert('ca')}",
        f"--cluster-signing-cert-file={files.cert('ca')}",
        f"--cluster-signing-key-file={files.key('ca')}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cluster-name={CLUSTER_NAME}",
    ]


def scheduler_args(bin_dir: Path, files: Files, ports: Ports) -> list[str]:
    return _component_args(bin_dir / "kube-scheduler", files.kubeconfig("scheduler"), ports.scheduler)


def _component_args(binary: Path, kubeconfig: Path, port: int) -> list[str]:
    """What the scheduler and controller-manager share: one kubeconfig for the API and for
    delegated authn/authz of their own health endpoint, loopback only, a single instance."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
