"""The cluster network of a control plane that has no nodes: an HTTP CONNECT egress proxy.

kube-apiserver sends every connection it makes *into the cluster* — admission webhooks resolved
through Services, kubelet APIs (`kubectl logs`), aggregated APIs — through its egress selector's
`cluster` network when one is configured (`--egress-selector-config-file`, the mechanism
Konnectivity uses in real clusters). We configure that network as an HTTP CONNECT proxy on a
unix socket and implement the proxy here, so:

- EndpointSlices and Node addresses can carry `CLUSTER_NETWORK_IP`, a TEST-NET-2 address
  (RFC 5737) that validation accepts (loopback is refused there: the CVE-2021-25737 fix) but that
  is never dialled: the proxy maps it to 127.0.0.1 on the same port;
- 127.0.0.1/localhost targets pass through unchanged;
- addresses of networks that live on this machine and were allowed with `allow_network` (a
  worker node's pod bridge, see `node.py`) are dialled as they are;
- every other destination is refused with 403, so no test traffic ever leaves this machine.

The apiserver keeps doing everything else for real: service resolution through EndpointSlices
(aggregator routing), TLS verification for `<service>.<namespace>.svc` against the caBundle,
timeouts. Runs on daemon threads (one acceptor, two pumps per connection).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from pathlib import Path
from typing import Final

__all__ = ["CLUSTER_NETWORK_IP", "EgressProxy", "SpliceServer", "egress_selector_config", "pump"]

CLUSTER_NETWORK_IP: Final = "198.51.100.7"
_LOCAL: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", CLUSTER_NETWORK_IP})
_ACCEPT_POLL: Final = 0.25
_CHUNK: Final = 65536
_MAX_HEADER: Final = 16384


def egress_selector_config(socket_path: Path) -> str:
    """The apiserver's EgressSelectorConfiguration: `cluster` traffic via our CONNECT proxy."""
    return (
        "apiVersion: apiserver.k8s.io/v1beta1\n"
        "kind: EgressSelectorConfiguration\n"
        "egressSelections:\n"
        "- name: cluster\n"
        "  connection:\n"
        "    proxyProtocol: HTTPConnect\n"
        "    transport:\n"
        "      uds:\n"
        f"        udsName: {socket_path}\n"
    )


class SpliceServer:
    """An acceptor thread plus the spliced connection pairs it opened; `close()` ends them all.

    Subclasses decide, per accepted client, where it goes (`_serve`) and then call `splice`.
    """

    def __init__(self, server: socket.socket, *, name: str) -> None:
        self._server = server
        self._server.settimeout(_ACCEPT_POLL)
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name=name, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def splice(self, client: socket.socket, upstream: socket.socket, *, greeting: bytes = b"") -> None:
        """Pumps bytes both ways until both sides are done, then closes both."""
        client.settimeout(None)
        upstream.settimeout(None)
        # Small writes (HTTP headers, TLS records) must not wait for Nagle + delayed ACK.
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed.is_set():
                client.close()
                upstream.close()
                return
            self._open.update((client, upstream))
        if greeting:
            client.sendall(greeting)
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=2)


class EgressProxy(SpliceServer):
    """Answers `CONNECT host:port` by splicing to 127.0.0.1:port (or a `direct` network).

    Listens on a unix socket (`socket_path`: the apiserver's egress selector) or, with
    `socket_path=None`, on a free loopback TCP port (`url`: an `HTTPS_PROXY` for cluster
    components run as host processes, such as metrics-server, to reach node addresses).
    """

    def __init__(self, socket_path: Path | None) -> None:
        self.socket_path = socket_path
        if socket_path is None:
            server = socket.create_server(("127.0.0.1", 0))
        else:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(socket_path))
            server.listen(128)
        self.url = f"http://127.0.0.1:{server.getsockname()[1]}" if socket_path is None else ""
        self._direct: tuple[ipaddress.IPv4Network, ...] = ()
        super().__init__(server, name="egress-proxy")

    def allow_network(self, cidr: str) -> None:
        """Dial addresses of `cidr` directly: a network that exists on this machine only."""
        self._direct = (*self._direct, ipaddress.IPv4Network(cidr))

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            head = _read_head(client)
            target = _connect_target(head, self._direct)
            if target is None:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                client.close()
                return
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            client.close()
            return
        self.splice(client, upstream, greeting=b"HTTP/1.1 200 Connection established\r\n\r\n")

    def close(self) -> None:
        super().close()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()


def _read_head(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(1024)
        if not chunk or len(data) > _MAX_HEADER:
            raise OSError("incomplete CONNECT request")
        data += chunk
    return data


def _connect_target(head: bytes, direct: tuple[ipaddress.IPv4Network, ...] = ()) -> tuple[str, int] | None:
    """`CONNECT 198.51.100.7:8443 HTTP/1.1` -> ("127.0.0.1", 8443); an address of a `direct`
    network as it is; None for anything not on this machine."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != "CONNECT":
        return None
    host, _, port = parts[1].rpartition(":")
    if not port.isdigit():
        return None
    if host in _LOCAL:
        return "127.0.0.1", int(port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if any(address in network for network in direct):
        return host, int(port)
    return None


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    # Half-close so the other direction can finish its response.
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
