"""`python -m tests.node.node_child HANDOFF DATA_DIR`: run a worker node until killed.

For the killed-run test: the node joins a control plane that another process owns, described
by HANDOFF (JSON: binaries, server, CA, admin client certificate). `READY` appears in DATA_DIR
once the node is Ready; then the process sleeps until it is SIGKILLed.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from controlplane.node import WorkerNode, node_binaries_dir


@dataclass(frozen=True)
class _Ports:
    apiserver: int


@dataclass(frozen=True)
class HandedOverPlane:
    bin_dir: Path
    server: str
    ports: _Ports
    ca_file: Path
    ca_key_file: Path
    admin_cert: Path
    admin_key: Path

    def http(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.admin_cert, self.admin_key)
        return httpx.Client(base_url=self.server, verify=context, timeout=30.0)

    def allow_cluster_network(self, cidr: str) -> None:
        """The owner of the egress proxy allowed the pod network before starting us."""


def main(handoff: Path, data_dir: Path) -> None:
    spec = json.loads(handoff.read_text())
    plane = HandedOverPlane(
        bin_dir=Path(spec["bin_dir"]),
        server=spec["server"],
        ports=_Ports(apiserver=spec["apiserver_port"]),
        ca_file=Path(spec["ca_file"]),
        ca_key_file=Path(spec["ca_key_file"]),
        admin_cert=Path(spec["admin_cert"]),
        admin_key=Path(spec["admin_key"]),
    )
    node = WorkerNode(plane, node_bin_dir=node_binaries_dir(), data_dir=data_dir)
    node.start()
    (data_dir / "READY").write_text("ready\n")
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
