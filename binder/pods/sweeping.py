"""Orphan sweeps: this cluster's RunPod pods whose Kubernetes pod no longer exists.

A Kubernetes pod can vanish without the binder's graceful path: `kubectl delete --force`, PodGC
after the node was deleted, eviction while the binder was down, a namespace deleted. Its RunPod
pod would bill forever. The sweep, on start and every `sweep_interval`, finds RunPod pods whose
marker names THIS cluster and a pod UID absent from the node's pods, and terminates each one
after it has been seen orphaned for `sweep_grace_seconds` (measured on the binder's clock from
the first sighting, so a clock skew with RunPod cannot shorten it, and a restart only delays).
RunPod pods without our marker, or with another cluster's, are never touched.

`find_orphans` is pure; `Sweeper.sweep` applies it to the latest snapshot (no list call of its
own: the sync loop's one list per tick is enough). Before terminating, the sweeper reads the
owner pod by the name in the marker: if a pod with that UID still exists anywhere (another
virtual node of the same cluster, a watch cache that lags), it is not an orphan. Only the leader
sweeps: `is_leading` is checked right before each DELETE (a deposed replica's snapshot is stale).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta

from binder.pods.decisions import GONE_STATUSES
from binder.pods.metrics import PodMetrics
from binder.pods.naming import owned_by_cluster
from kit.kube import KubeError
from runpod_api.client import RunPodClient
from runpod_api.errors import RunPodError
from runpod_api.models import Pod

log = logging.getLogger(__name__)


def find_orphans(
    pods: Iterable[Pod],
    *,
    cluster_id: str,
    live_uids: Collection[str],
    first_seen: Mapping[str, datetime],
    now: datetime,
    grace: timedelta,
) -> tuple[list[Pod], dict[str, datetime]]:
    """(pods to terminate now, updated first-seen map of the orphans still in their grace)."""
    due: list[Pod] = []
    seen: dict[str, datetime] = {}
    for pod in pods:
        owner = owned_by_cluster(pod.env, cluster_id)
        if owner is None or owner.uid in live_uids or pod.status in GONE_STATUSES:
            continue
        since = first_seen.get(pod.id, now)
        if now - since >= grace:
            due.append(pod)
        else:
            seen[pod.id] = since
    return due, seen


# (namespace, name) -> the UID of that pod now, None if there is no such pod.
OwnerLookup = Callable[[str, str], Awaitable[str | None]]


class Sweeper:
    def __init__(
        self,
        *,
        runpod: RunPodClient,
        owner_uid: OwnerLookup,
        cluster_id: str,
        grace: timedelta,
        metrics: PodMetrics,
        is_leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._runpod = runpod
        self._is_leading = is_leading
        self._owner_uid = owner_uid
        self._cluster_id = cluster_id
        self._grace = grace
        self._metrics = metrics
        self._first_seen: dict[str, datetime] = {}

    @property
    def pending(self) -> int:
        """Orphans seen and waiting out their grace period."""
        return len(self._first_seen)

    async def sweep(self, pods: Iterable[Pod], *, live_uids: Collection[str], now: datetime) -> list[str]:
        """Terminate due orphans; returns their ids. Errors are logged and retried next sweep."""
        due, self._first_seen = find_orphans(
            pods,
            cluster_id=self._cluster_id,
            live_uids=live_uids,
            first_seen=self._first_seen,
            now=now,
            grace=self._grace,
        )
        done: list[str] = []
        for pod in due:
            owner = owned_by_cluster(pod.env, self._cluster_id)
            if owner is None:
                continue
            try:
                if await self._owner_uid(owner.namespace, owner.name) == owner.uid:
                    continue  # alive, just not on this node or not in the cache yet
            except KubeError as exc:
                log.warning("sweep could not check the owner of RunPod pod %s (%s); skipping", pod.id, exc)
                continue
            if not self._is_leading():
                log.warning("no longer the leader; abandoning the orphan sweep")
                break
            try:
                await self._runpod.delete_pod(pod.id)
            except RunPodError as exc:
                log.warning("sweep could not terminate orphan RunPod pod %s: %s", pod.id, exc)
                self._first_seen[pod.id] = now - self._grace  # due again next sweep
                continue
            self._metrics.terminated("orphan")
            done.append(pod.id)
            log.warning(
                "terminated orphan RunPod pod %s: its Kubernetes pod %s (uid %s) no longer exists",
                pod.id,
                owner.key,
                owner.uid,
            )
        return done
