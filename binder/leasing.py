"""The node's heartbeat: Lease `kube-node-lease/<node>`, renewed every 10 s, 40 s duration.

Owns the heartbeat Lease only (the leader-election Lease is `election`'s). Virtual Kubelet's
semantics: the lease says "this node's agent is alive and reporting", so it is renewed only
while the status loop's last clean push is recent. A binder that cannot write node status stops
renewing, and the node controller marks the node Unknown as it would for a dead kubelet.
A NotReady push is still a clean push: the binder is alive and honestly reporting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from kit.kube import MERGE_PATCH, KubeError, patch_json, post_json

__all__ = [
    "NODE_LEASE_DURATION",
    "NODE_LEASE_NAMESPACE",
    "NODE_LEASE_RENEW_INTERVAL",
    "NodeLeaseLoop",
    "build_node_lease",
    "format_micro_time",
    "lease_may_renew",
]

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE: Final = "kube-node-lease"
NODE_LEASE_DURATION: Final = 40  # seconds; Virtual Kubelet's DefaultLeaseDuration
NODE_LEASE_RENEW_INTERVAL: Final = 10.0  # 0.25 x duration, as VK and the kubelet do


class StatusPushes(Protocol):
    """What the lease loop reads from the status loop (latest-value cells, never written here)."""

    node_uid: str | None
    last_clean_push: float | None


def lease_may_renew(*, last_clean_push: float | None, now: float, max_age: float) -> bool:
    """Renew only after a clean status push no older than `max_age` seconds."""
    return last_clean_push is not None and now - last_clean_push <= max_age


def format_micro_time(moment: datetime) -> str:
    """Kubernetes `MicroTime` (Lease renewTime): RFC 3339, microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_node_lease(*, node_name: str, node_uid: str | None, now: datetime) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": node_name, "namespace": NODE_LEASE_NAMESPACE}
    if node_uid:
        # As the kubelet does: the lease goes away with the node.
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
        ]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": NODE_LEASE_DURATION,
            "renewTime": format_micro_time(now),
        },
    }


class NodeLeaseLoop:
    """The only writer of the node Lease. Renews every `interval` while status pushes are clean."""

    def __init__(
        self,
        *,
        api: Any,
        node_name: str,
        status: StatusPushes,
        interval: float = NODE_LEASE_RENEW_INTERVAL,
        max_push_age: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._node_name = node_name
        self._status = status
        self._interval = interval
        # Two missed status ticks (plus slack) and the heartbeat stops.
        self._max_push_age = max_push_age if max_push_age is not None else 2.5 * max(interval, 10.0)
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self.renewals = 0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{self._node_name}"

    async def run(self) -> None:
        while True:
            if lease_may_renew(
                last_clean_push=self._status.last_clean_push,
                now=self._monotonic(),
                max_age=self._max_push_age,
            ):
                try:
                    await self.renew()
                except KubeError as exc:
                    log.warning(
                        "node lease renewal failed", extra={"status": exc.status, "reason": exc.reason}
                    )
            elif self._status.last_clean_push is not None:
                log.warning("node status is stale; not renewing the node lease")
            await asyncio.sleep(self._interval)

    async def renew(self) -> None:
        """Create the Lease, or move its renewTime (and holder/owner) forward."""
        desired = build_node_lease(
            node_name=self._node_name, node_uid=self._status.node_uid, now=self._wall_clock()
        )
        patch: dict[str, Any] = {"spec": desired["spec"]}
        if "ownerReferences" in desired["metadata"]:
            patch["metadata"] = {"ownerReferences": desired["metadata"]["ownerReferences"]}
        try:
            # Single writer (the leader's lease loop), so no resourceVersion race to guard.
            await patch_json(self._api, self.path, patch, MERGE_PATCH)
        except KubeError as exc:
            if exc.status != 404:
                raise
            await post_json(
                self._api, f"/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases", desired
            )
        self.renewals += 1
