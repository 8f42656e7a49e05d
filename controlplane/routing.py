"""Making a Service reach a process that listens on 127.0.0.1:<port> (webhook and chart tests).

What the real kube-apiserver v1.37 does, verified against its source and in
tests/controlplane/test_webhook_routing.py:

- With `--enable-aggregator-routing=true` the apiserver resolves a webhook's
  `clientConfig.service` through the Service's **EndpointSlices** (`proxy.ResolveEndpoint`): it
  dials `<endpoint address>:<EndpointSlice port>` of a ready endpoint whose port name equals the
  Service port's name, and verifies TLS for the host `<service>.<namespace>.svc` against the
  `caBundle`. So the port the process listens on may be anything: only the slice carries it.
- A Service of type **ExternalName does not work** with aggregator routing: the endpoint
  resolver answers `unsupported service type "ExternalName"`.
- EndpointSlice (and Endpoints) validation rejects loopback, link-local and unspecified
  addresses (the CVE-2021-25737 fix), so the slice cannot say 127.0.0.1.

The route, therefore: the slice points at `egress.CLUSTER_NETWORK_IP` (a TEST-NET address that
validation accepts) on the local port, and the apiserver's egress proxy (`egress.py`, the
cluster network of this node-less control plane) maps that address to 127.0.0.1. No packet is
ever sent to a non-loopback address. The slice is labelled `kubernetes.io/service-name` (so the
apiserver finds it) and carries our own `endpointslice.kubernetes.io/managed-by`, so the
EndpointSlice controller leaves it alone even when the Service has a selector whose pods never
run.

`default_route_ip()` is kept for one other use: `make demo` against an *external* cluster, whose
apiserver must dial this machine's own address for `kubectl logs`.
"""

from __future__ import annotations

import ipaddress
import socket
from contextlib import suppress
from typing import Any, Final

import httpx

from controlplane.egress import CLUSTER_NETWORK_IP

__all__ = ["MANAGED_BY", "RouteUnavailable", "ServiceRoute", "default_route_ip"]

MANAGED_BY: Final = "controlplane.runpod-kubelet.local"
_PROBES: Final = ("10.255.255.255", "192.0.2.255", "8.8.8.8")


class RouteUnavailable(RuntimeError):
    """No address exists that the apiserver may dial and that reaches this machine."""


def _routable(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def default_route_ip() -> str:
    """This machine's source address towards the outside (no packet is sent: UDP connect)."""
    for probe in _PROBES:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.connect((probe, 9))
            except OSError:
                continue
            address = str(udp.getsockname()[0])
        if _routable(address):
            return address
    raise RouteUnavailable(
        "this machine has no non-loopback IPv4 address; EndpointSlices cannot point at loopback"
    )


class ServiceRoute:
    """A Service in the control plane routed to 127.0.0.1:`port`; `close()` withdraws the route.

    Creates the Service (ClusterIP, no selector, one port `service_port`, default 443 = the
    webhook default) when it does not exist, and deletes it again on close only in that case.
    An existing Service (e.g. one a chart installed) keeps its spec; every one of its ports is
    routed to the same local port.
    """

    def __init__(
        self,
        *,
        http: httpx.Client,
        namespace: str,
        service: str,
        port: int,
        service_port: int = 443,
    ) -> None:
        self.namespace, self.service, self.local_port = namespace, service, port
        self.slice_name = f"{service}-local-route"
        self._http = http
        self._created_service = False
        ports = self._ensure_service(service_port)
        self._put_slice(CLUSTER_NETWORK_IP, ports)

    def _ensure_service(self, service_port: int) -> list[str]:
        path = f"/api/v1/namespaces/{self.namespace}/services/{self.service}"
        found = self._http.get(path)
        if found.status_code == 404:
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": self.service, "namespace": self.namespace},
                "spec": {"ports": [{"port": service_port, "protocol": "TCP"}]},
            }
            self._http.post(f"/api/v1/namespaces/{self.namespace}/services", json=body).raise_for_status()
            self._created_service = True
            return [""]
        found.raise_for_status()
        spec: dict[str, Any] = found.json().get("spec", {})
        return [str(p.get("name", "")) for p in spec.get("ports", [])] or [""]

    def _put_slice(self, route_ip: str, port_names: list[str]) -> None:
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.slice_name,
                "namespace": self.namespace,
                "labels": {
                    "kubernetes.io/service-name": self.service,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [route_ip], "conditions": {"ready": True}}],
            # The resolver matches the port *name* (a nil name never matches), so "" is explicit.
            "ports": [{"name": name, "port": self.local_port, "protocol": "TCP"} for name in port_names],
        }
        collection = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        created = self._http.post(collection, json=body)
        if created.status_code == 409:
            self._http.put(f"{collection}/{self.slice_name}", json=body).raise_for_status()
        else:
            created.raise_for_status()

    def close(self) -> None:
        """Deletes the slice (and the Service if this route created it)."""
        with suppress(httpx.HTTPError):
            self._http.delete(
                f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices/{self.slice_name}"
            )
            if self._created_service:
                self._http.delete(f"/api/v1/namespaces/{self.namespace}/services/{self.service}")

    def __enter__(self) -> ServiceRoute:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
