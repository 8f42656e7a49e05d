"""What every step of the pod lifecycle shares: clients, recorder, ledger and the state cells.

Built once by `PodController`; steps (`creating`, `syncing`, `deleting`) receive it. It holds no
logic beyond small helpers that write an annotation and remember the write (so a lagging watch
cache can never make a worker forget it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from binder.events import EventRecorder, EventType
from binder.pods.budgets import SpendLedger
from binder.pods.decisions import VISIBILITY_WINDOW
from binder.pods.kubeapi import KubePods
from binder.pods.metrics import PodMetrics
from binder.pods.state import Known, Snapshot, pod_annotations
from binder.settings import BinderSettings
from contract.policy import NodePolicy
from runpod_api.client import RunPodClient


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PodContext:
    runpod: RunPodClient
    kube: KubePods
    events: EventRecorder
    ledger: SpendLedger
    metrics: PodMetrics
    settings: BinderSettings
    policy: NodePolicy
    cluster_id: str
    started_at: datetime
    clock: Callable[[], datetime] = utcnow
    # How long a just-POSTed RunPod pod may stay missing from the list (see decisions).
    visibility_window: timedelta = VISIBILITY_WINDOW
    known: dict[str, Known] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    # After a 402 every create waits until this monotonic time (RunPod: "stop all creates").
    creates_paused_until: float = 0.0

    def known_for(self, uid: str) -> Known:
        return self.known.setdefault(uid, Known())

    def creates_paused(self) -> float:
        """Seconds left of a create pause (0 = creates allowed)."""
        return max(0.0, self.creates_paused_until - time.monotonic())

    def pause_creates(self, seconds: float) -> None:
        self.creates_paused_until = max(self.creates_paused_until, time.monotonic() + seconds)

    async def annotate(self, pod: Mapping[str, Any], changes: Mapping[str, str | None]) -> Mapping[str, Any]:
        """Write annotations, remembered first so a failed write is retried by the next sync.

        Compared with the cached pod (not with what we remember): a write the cache does not
        show yet is simply sent again, which is idempotent. Returns the pod as the API server
        now has it (the cached pod when nothing needed writing).
        """
        metadata = pod.get("metadata") or {}
        uid = metadata.get("uid", "")
        known = self.known_for(uid)
        known.wrote(changes)
        current = pod_annotations(pod)
        if all(current.get(k) == v for k, v in changes.items()):
            return pod
        return await self.kube.patch_annotations(
            metadata.get("namespace", ""), metadata.get("name", ""), changes, uid=uid
        )

    async def event(self, pod: Mapping[str, Any], kind: EventType, reason: str, message: str) -> None:
        await self.events.record(pod, type=kind, reason=reason, message=message)
