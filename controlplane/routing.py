"""Making a Service reach a process that listens on 127.0.0.1:<port> (webhook and chart tests).

What the real kube-apiserver v1.37 does, verified against its source and in
tests/controlplane/test_webhook_routing.py:

- With `--enable-aggregator-routing=true` the apiserver resolves a webhook's
  `clientConfig.service` through the Service's **EndpointSlices** (`proxy.ResolveEndpoint`): it
  dials `<endpoint address>:<EndpointSlice port>` of a ready endpoint whose port name equals the
  Service port's name, and verifies TLS for the host `<service>.<namespace>.svc` against the
  `caBundle`. So the port the process listens on may be anything: only the slice carries it.
- A Service of type **ExternalName does not work** with aggregator routing: the endpoint
  resolver answers `unsupported service type "ExternalName"` (only the ClusterIP resolver, used
  when aggregator routing is off, maps ExternalName to `<externalName>:<webhook port>`, and then
  the process would have to listen on the webhook port, 443).
- EndpointSlice (and Endpoints) validation rejects loopback, link-local and unspecified
  addresses (the CVE-2021-25737 fix), so the slice cannot say 127.0.0.1.

The trick, therefore: the slice points at this machine's own non-loopback address (the source
address of its default route, e.g. eth0's) on a port where a small TCP forwarder listens, and
the forwarder splices each connection to 127.0.0.1:<port>. TLS passes through untouched. The
slice is labelled `kubernetes.io/service-name` (so the apiserver finds it) and carries our own
`endpointslice.kubernetes.io/managed-by`, so the EndpointSlice controller leaves it alone even
when the Service has a selector whose pods never run. A machine without any non-loopback
IPv4 address cannot use this (pass `route_ip` explicitly where one exists).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from contextlib import suppress
from typing import Any, Final

import httpx

__all__ = ["MANAGED_BY", "RouteUnavailable", "ServiceRoute", "TcpForwarder", "default_route_ip"]

MANAGED_BY: Final = "controlplane.runpod-kubelet.local"
_PROBES: Final = ("10.255.255.255", "192.0.2.255", "8.8.8.8")
_ACCEPT_POLL: Final = 0.25
_CHUNK: Final = 65536


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


class TcpForwarder:
    """Accepts on `listen_host`:<ephemeral port> and splices each connection to 127.0.0.1:`target_port`.

    Runs on daemon threads (one acceptor, two pumps per connection) so it works under any event
    loop or none. `close()` stops accepting and closes every open connection.
    """

    def __init__(self, *, listen_host: str, target_port: int) -> None:
        self._target_port = target_port
        self._server = socket.create_server((listen_host, 0))
        self._server.settimeout(_ACCEPT_POLL)
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name=f"forward-{target_port}", daemon=True)
        self._acceptor.start()

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        # Small writes (HTTP headers, TLS records) must not wait for Nagle + delayed ACK (~40 ms
        # per stall): the apiserver and the webhook both disable Nagle; the splice must too.
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed.is_set():
                client.close()
                upstream.close()
                return
            self._open.update((client, upstream))
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        # Half-close so the other direction can finish its response.
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=2)


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
        route_ip: str,
        service_port: int = 443,
    ) -> None:
        self.namespace, self.service, self.local_port = namespace, service, port
        self.slice_name = f"{service}-local-route"
        self._http = http
        self._created_service = False
        self._forwarder = TcpForwarder(listen_host=route_ip, target_port=port)
        try:
            ports = self._ensure_service(service_port)
            self._put_slice(route_ip, ports)
        except BaseException:
            self._forwarder.close()
            raise

    @property
    def forwarder_port(self) -> int:
        return self._forwarder.port

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
            "ports": [{"name": name, "port": self.forwarder_port, "protocol": "TCP"} for name in port_names],
        }
        collection = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        created = self._http.post(collection, json=body)
        if created.status_code == 409:
            self._http.put(f"{collection}/{self.slice_name}", json=body).raise_for_status()
        else:
            created.raise_for_status()

    def close(self) -> None:
        """Deletes the slice (and the Service if this route created it), stops forwarding."""
        try:
            with suppress(httpx.HTTPError):
                self._http.delete(
                    f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices/{self.slice_name}"
                )
                if self._created_service:
                    self._http.delete(f"/api/v1/namespaces/{self.namespace}/services/{self.service}")
        finally:
            self._forwarder.close()

    def __enter__(self) -> ServiceRoute:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
