"""metrics-server for the local control plane: `kubectl top` and the resource metrics API.

The real metrics-server (`tools/metrics-server/build`, pinned in versions.env) runs as a host
process, wired the way its own manifests wire it in a cluster:

- its identity is the ServiceAccount `kube-system/metrics-server` (a TokenRequest token) with
  the upstream RBAC: `system:metrics-server` (pods, nodes, `nodes/metrics`), the
  `extension-apiserver-authentication-reader` Role and `system:auth-delegator`;
- the APIService `v1beta1.metrics.k8s.io` points at the Service `kube-system/metrics-server`,
  routed to its loopback port (`routing`); its serving certificate is self-signed, hence
  `insecureSkipTLSVerify` as in metrics-server's own test manifests;
- it scrapes each node's kubelet at the node's InternalIP and `daemonEndpoints` port, through
  the control plane's cluster network (`ControlPlane.cluster_network_proxy`, as
  `HTTPS_PROXY`), exactly where the apiserver reaches kubelets; kubelet serving certificates
  here are self-signed, hence `--kubelet-insecure-tls`.

`start()` returns once `GET /apis/metrics.k8s.io/v1beta1/nodes` answers; `stop()` removes the
APIService, the route and the process. Not owned: what kubelets answer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from controlplane.processes import ChildProcess, free_port
from controlplane.routing import ServiceRoute
from controlplane.running import ControlPlane, ControlPlaneError

__all__ = ["MetricsServer", "metrics_server_binary"]

_NAMESPACE: Final = "kube-system"
_NAME: Final = "metrics-server"
_API_SERVICE: Final = "v1beta1.metrics.k8s.io"
_READY_TIMEOUT: Final = 120.0
_SCRIPT: Final = Path(__file__).resolve().parent.parent / "tools" / "metrics-server" / "build"


def metrics_server_binary() -> Path:
    """The cached binary (`tools/metrics-server/build` builds it when missing)."""
    result = subprocess.run([str(_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ControlPlaneError(f"{_SCRIPT} failed with exit code {result.returncode}")
    return Path(lines[-1])


def _rbac() -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": _NAME, "namespace": _NAMESPACE}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": _NAME, "namespace": _NAMESPACE}},
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": "system:metrics-server"},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:metrics-server"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:metrics-server",
            },
            "subjects": subject,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "metrics-server:system:auth-delegator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": subject,
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-server-auth-reader", "namespace": _NAMESPACE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": subject,
        },
    ]


def _api_service() -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": _API_SERVICE},
        "spec": {
            "service": {"name": _NAME, "namespace": _NAMESPACE, "port": 443},
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }


class MetricsServer:
    def __init__(self, plane: ControlPlane, *, binary: Path, data_dir: Path) -> None:
        self.plane, self.binary, self.data_dir = plane, binary, data_dir
        self._process: ChildProcess | None = None
        self._route: ServiceRoute | None = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> MetricsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        plane = self.plane
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(_rbac()))
        kubeconfig = self._service_account_kubeconfig()
        port = free_port()
        self._route = plane.route_service_to_local_port(_NAMESPACE, _NAME, port)
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(_api_service()))
        proxy = plane.cluster_network_proxy()
        environment = {
            **os.environ,
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        self._process = ChildProcess(
            "metrics-server",
            [
                str(self.binary),
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.data_dir / 'certs'}",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-use-node-status-port",
                "--metric-resolution=15s",
                "--kubelet-request-timeout=5s",
                "--v=1",
            ],
            self.data_dir / "metrics-server.log",
            env=environment,
        )
        self._process.start()
        try:
            self._wait_until_served()
        except BaseException:
            self.stop()
            raise
        return self

    def _service_account_kubeconfig(self) -> Path:
        token = self.plane.kubectl(
            "create", "token", _NAME, "-n", _NAMESPACE, "--duration=24h"
        ).stdout.strip()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.plane.server,
                        "certificate-authority": str(self.plane.ca_file),
                    },
                }
            ],
            "users": [{"name": _NAME, "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": _NAME}}],
            "current-context": "local",
        }
        path = self.data_dir / "metrics-server.kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))
        return path

    def _wait_until_served(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        process = self._process
        while True:
            if process is not None and (code := process.exited()) is not None:
                raise ControlPlaneError(f"metrics-server exited with {code}:\n{process.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.plane.http().get("/apis/metrics.k8s.io/v1beta1/nodes").is_success:
                    return
            if time.monotonic() > deadline:
                tail = process.log_tail() if process is not None else ""
                raise ControlPlaneError(f"metrics API not served after {_READY_TIMEOUT:.0f}s:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        with contextlib.suppress(httpx.HTTPError, ControlPlaneError):
            self.plane.http().delete(f"/apis/apiregistration.k8s.io/v1/apiservices/{_API_SERVICE}")
        if self._route is not None:
            self._route.close()
            self._route = None
        if self._process is not None:
            self._process.stop()
            self._process = None
