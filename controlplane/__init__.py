"""A real local Kubernetes control plane for tests and the demo.

etcd, kube-apiserver, kube-scheduler and kube-controller-manager built from the official Go
modules (`tools/control-plane/build`), started on free loopback ports with a generated PKI:

    with ControlPlane(binaries_dir(), data_dir) as cp:
        cp.kubectl("get", "--raw", "/readyz")
        route = cp.route_service_to_local_port("ns", "webhook", 8443)

Modules: `binaries` (finding/building the binaries), `pki` (certificates), `flags` (command
lines), `processes` (child processes), `running` (the control plane), `routing` (a Service
reaching a local port), `egress` (the apiserver's cluster network), and for a real worker
node: `node` (containerd, kubelet, kube-proxy, CoreDNS), `node_config` (their settings),
`node_cleanup` (taking it apart), `forwarding` (the apiserver for pods), `oci` (the pause
image), `images` (the project's image, built from the Dockerfile).
"""

from controlplane.binaries import BinariesMissing, binaries_dir
from controlplane.routing import RouteUnavailable, ServiceRoute
from controlplane.running import ALL_COMPONENTS, ControlPlane, ControlPlaneError, KubectlError

__all__ = [
    "ALL_COMPONENTS",
    "BinariesMissing",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "RouteUnavailable",
    "ServiceRoute",
    "binaries_dir",
]
