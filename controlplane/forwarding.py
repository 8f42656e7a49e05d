"""A TCP port of the apiserver on the node's bridge address, for pods.

kube-apiserver listens on loopback only, which a pod in its own network namespace cannot
reach. `TcpForwarder` listens on `NODE_IP:<port>` (an address of the node's bridge, on this
machine only) and splices each connection to `127.0.0.1:<port>`; the `kubernetes` Service's
EndpointSlice points at it, so in-cluster clients (`KUBERNETES_SERVICE_HOST`) reach the real
apiserver as in any cluster. TLS passes through untouched. Daemon threads: one acceptor, two
pumps per connection (`egress.SpliceServer`, as the egress proxy).
"""

from __future__ import annotations

import socket

from controlplane.egress import SpliceServer

__all__ = ["TcpForwarder"]


class TcpForwarder(SpliceServer):
    def __init__(self, *, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen, self.target = listen, target
        super().__init__(socket.create_server(listen), name="node-forwarder")

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.splice(client, upstream)
