"""What every step of the pod lifecycle shares: clients, recorder, ledger and the state cells.

Built once by `PodController`; steps (`creating`, `syncing`, `deleting`) receive it. It holds no
logic beyond small helpers that write an annotation and remember the write (so a lagging watch
cache can never make a worker forget it), and the leadership fence.

Fencing: only the leader replica writes (SPEC §4 HA). A leader that was frozen (GC pause,
SIGSTOP, an overloaded node) wakes up with every due timer and answered socket runnable at once,
and each of its workers may take one more step before the renewal loop notices that another
replica took over and cancels them. `fence()` is checked immediately before every write that
spends money or records intent (RunPod create/DELETE, annotation patches, status patches, final
deletes, Events): when this replica can no longer prove it leads, it raises `NotLeading` and the
worker abandons the item without side effects (the process exits right after and the new leader
recovers the pod from the RunPod list and the pod's annotations).
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
from binder.pods.usage import UsageLedger
from binder.registries.credentials import RegistryCredentials
from binder.settings import BinderSettings
from contract.annotations import CREATE_ATTEMPT
from contract.catalog import Catalog
from contract.policy import NodePolicy
from runpod_api.client import RunPodClient


def utcnow() -> datetime:
    return datetime.now(UTC)


def always_leading() -> bool:
    """For a controller run alone (tests, `--no-leader-election`): it is the only writer."""
    return True


class NotLeading(Exception):
    """This replica can no longer prove it leads: abandon the work item, write nothing more."""


def write_fence(is_leading: Callable[[], bool]) -> Callable[[], None]:
    """A check raising `NotLeading` when `is_leading()` is false. The composition root hands it
    to the RunPod client (`before_write`), which calls it right before each POST/PATCH/DELETE
    goes on the wire: a create that waited in the client's pacing while this replica was frozen
    is stopped there, after the step's own `fence()` check had passed."""

    def check() -> None:
        if not is_leading():
            raise NotLeading("this binder replica no longer holds the leader lease")

    return check


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
    # Resource usage of the node's pods as of the latest tick (`usage`), read by the kubelet API.
    usage: UsageLedger = field(default_factory=UsageLedger.empty)
    # After a 402 every create waits until this monotonic time (RunPod: "stop all creates").
    creates_paused_until: float = 0.0
    # The leader elector's cheap, no-I/O check (`LeaderElector.leading`); see `fence`.
    is_leading: Callable[[], bool] = always_leading
    # Asks the catalog publisher for a fresh catalog now (a create found no capacity anywhere).
    request_catalog_refresh: Callable[[], None] = lambda: None
    # The catalog the publisher last published (None before the first): which data centers
    # offer global networking.
    catalog: Callable[[], Catalog | None] = lambda: None
    # The binder's SSH public key, added to every RunPod pod it creates (None: SSH not set up).
    ssh_public_key: str | None = None
    # RunPod registry credentials made from image pull secrets (None: pull secrets are ignored).
    registries: RegistryCredentials | None = None

    def fence(self) -> None:
        """Raise `NotLeading` unless this replica still leads. Call right before each write."""
        write_fence(self.is_leading)()

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
        self.fence()
        return await self.kube.patch_annotations(
            metadata.get("namespace", ""), metadata.get("name", ""), changes, uid=uid
        )

    async def record_intent(
        self, pod: Mapping[str, Any], attempt: str, also: Mapping[str, str] | None = None
    ) -> Mapping[str, Any]:
        """Write `runpod.io/create-attempt` as a compare-and-swap on the pod's resourceVersion.

        Raises `kit.kube.Conflict` when the pod changed since `pod` was read: of two writers
        racing to create for one pod (a deposed leader waking up, the new leader) only one can
        record intent, so only one may POST. Unlike `annotate`, the value is remembered only once
        written: a write that did not land must never be re-sent unconditionally by the next
        sync (which would bypass this very check). `also`: state written in the same patch
        (the registry credential and network volume the create will use).
        """
        metadata = pod.get("metadata") or {}
        uid = metadata.get("uid", "")
        self.fence()
        written = await self.kube.patch_annotations(
            metadata.get("namespace", ""),
            metadata.get("name", ""),
            {CREATE_ATTEMPT: attempt, **(also or {})},
            uid=uid,
            resource_version=metadata.get("resourceVersion"),
        )
        self.known_for(uid).wrote({CREATE_ATTEMPT: attempt, **(also or {})})
        return written

    async def event(self, pod: Mapping[str, Any], kind: EventType, reason: str, message: str) -> None:
        self.fence()
        await self.events.record(pod, type=kind, reason=reason, message=message)
