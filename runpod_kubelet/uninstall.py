"""`runpod-kubelet uninstall {drain,remove}`: what `helm uninstall` must do beyond deleting the chart.

The chart's own objects go with the release. Two things do not, and both matter:

- **RunPod pods.** Deleting the binder while pods run on its node would leave their RunPod pods
  billing with nobody to terminate them. `drain` (the chart's pre-delete hook, while the binder
  still runs) deletes every pod on the virtual node and waits until they are gone: the binder
  removes a pod only after RunPod confirmed its termination. If that does not happen in time
  (RunPod down, binder NotReady), `drain` fails, so does `helm uninstall`, and the pods it
  names are still there to look at: a loud failure instead of a silent leak.
- **What the processes made at run time.** The virtual Node and its Lease, the leader Lease,
  the catalog ConfigMap and the SSH key Secret (binder) and the webhook's TLS Secret (certs
  hooks). `remove` (the
  post-delete hook, once the binder is gone and cannot register its node again) deletes them
  by name; missing ones count as done.

Exit codes: 0 done, 1 a Kubernetes call failed or pods remained, 2 bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

from binder.election import leader_lease_name
from binder.leasing import NODE_LEASE_NAMESPACE
from contract.policy import CATALOG_CONFIGMAP
from kit.kube import KubeError, NotFound, delete_json, get_json, load_api_client

__all__ = ["main", "run_time_objects"]

_POLL: Final = 2.0


def run_time_objects(
    *, node_name: str, namespace: str, secret_name: str, secret_namespace: str, ssh_secret_name: str = ""
) -> list[str]:
    """API paths of what the binder and the certs hooks create outside the chart's manifests.
    Both Secrets are in `secret_namespace` (the chart's release namespace)."""
    secrets = [name for name in (secret_name, ssh_secret_name) if name]
    return [
        f"/api/v1/nodes/{node_name}",
        f"/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{node_name}",
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{leader_lease_name(node_name)}",
        f"/api/v1/namespaces/{namespace}/configmaps/{CATALOG_CONFIGMAP}",
    ] + [f"/api/v1/namespaces/{secret_namespace}/secrets/{name}" for name in secrets]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runpod-kubelet uninstall", description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("drain", "remove"))
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME", "virtual-runpod"))
    parser.add_argument("--namespace", default=os.environ.get("NAMESPACE") or os.environ.get("POD_NAMESPACE"))
    parser.add_argument("--secret-name", default="", help="remove: the webhook's TLS Secret")
    parser.add_argument(
        "--ssh-secret-name", default="", help="remove: the binder's SSH key Secret (binder --ssh-key-secret)"
    )
    parser.add_argument(
        "--secret-namespace", default=None, help="remove: the Secrets' namespace (default: --namespace)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="drain: seconds to wait (default 600)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.namespace:
        parser.error("--namespace is required (or set NAMESPACE / POD_NAMESPACE)")
    try:
        if args.phase == "drain":
            return asyncio.run(
                _drain(kubeconfig=args.kubeconfig, node_name=args.node_name, within=args.timeout)
            )
        paths = run_time_objects(
            node_name=args.node_name,
            namespace=args.namespace,
            secret_name=args.secret_name,
            secret_namespace=args.secret_namespace or args.namespace,
            ssh_secret_name=args.ssh_secret_name,
        )
        return asyncio.run(_remove(kubeconfig=args.kubeconfig, paths=paths))
    except KubeError as exc:
        print(f"runpod-kubelet uninstall: {exc}", file=sys.stderr)
        return 1


async def _pods_on(api: Any, node_name: str) -> list[dict[str, Any]]:
    listing = await get_json(api, "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node_name}"})
    return list(listing.get("items", []))


def _name(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


async def _drain(*, kubeconfig: str | None, node_name: str, within: float) -> int:
    async with await load_api_client(kubeconfig) as api:
        pods = await _pods_on(api, node_name)
        print(f"draining {len(pods)} pod(s) from node {node_name}", flush=True)
        for pod in pods:
            metadata = pod["metadata"]
            path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
            try:
                # Graceful: the binder terminates the RunPod pod, then removes the pod.
                await delete_json(api, path)
            except NotFound:
                continue
        deadline = time.monotonic() + within
        while pods := await _pods_on(api, node_name):
            if time.monotonic() > deadline:
                names = ", ".join(_name(p) for p in pods[:20])
                print(
                    f"runpod-kubelet uninstall: {len(pods)} pod(s) still on {node_name} after {within:.0f}s "
                    f"(their RunPod pods may still run; check `kubectl describe pod`): {names}",
                    file=sys.stderr,
                )
                return 1
            await asyncio.sleep(_POLL)
        print(f"node {node_name} is empty: no RunPod pod of it is left", flush=True)
        return 0


async def _remove(*, kubeconfig: str | None, paths: Sequence[str]) -> int:
    async with await load_api_client(kubeconfig) as api:
        for path in paths:
            try:
                await delete_json(api, path)
                print(f"deleted {path}", flush=True)
            except NotFound:
                pass
        return 0
