"""A bare Node whose kubelet endpoint is a kubelet API server of ours on this machine, so that
`kubectl logs` of pods bound to it reaches that server through the real apiserver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from controlplane import ControlPlane


async def register_node(plane: ControlPlane, name: str, port: int, *, features: Sequence[str] = ()) -> None:
    """`features`: the node's `status.declaredFeatures`; with `ExtendWebSocketsToKubelet`
    kube-apiserver proxies kubectl's WebSocket streams (exec, attach, port-forward) straight to
    the node instead of translating them to SPDY."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    await asyncio.to_thread(plane.kubectl, "create", "-f", "-", input=json.dumps(node))
    status: dict[str, Any] = {
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }
    }
    if features:
        status["status"]["declaredFeatures"] = list(features)
    await asyncio.to_thread(
        plane.kubectl,
        *("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)),
    )


async def remove_node(plane: ControlPlane, name: str) -> None:
    await asyncio.to_thread(plane.kubectl, "delete", "node", name, "--wait=false", check=False)
