"""In-memory state of the pod lifecycle: the latest RunPod list and what this process wrote.

Two latest-value cells, each with one writer:

- `Snapshot`: the result of the one `GET /v2/pods` per sync tick (written by the sync loop, read
  by workers). Indexed by RunPod id and by the owner marker's Kubernetes pod UID.
- `Known`: per Kubernetes pod UID, what this process wrote to the pod's annotations and what it
  observed outside the pod object (exit code, uptime for restart counting). Written only by the
  worker handling that pod. It exists because the watch cache lags our own patches: a worker
  must never read "no create attempt recorded" from a stale cache right after recording one.
  After a restart it starts empty and the freshly listed annotations are the truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from binder.pods.diagnosing import Diagnosis
from binder.pods.naming import owned_by_cluster
from binder.pods.status import CONTAINER_CREATING, Failure
from runpod_api.models import Pod


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    pods: tuple[Pod, ...]
    by_id: Mapping[str, Pod]
    # Kubernetes pod UID -> this cluster's RunPod pods carrying it in their marker.
    by_uid: Mapping[str, tuple[Pod, ...]]

    @classmethod
    def build(cls, pods: Iterable[Pod], *, cluster_id: str, taken_at: datetime) -> Snapshot:
        pods = tuple(pods)
        by_uid: dict[str, list[Pod]] = {}
        for pod in pods:
            owner = owned_by_cluster(pod.env, cluster_id)
            if owner is not None:
                by_uid.setdefault(owner.uid, []).append(pod)
        return cls(
            taken_at=taken_at,
            pods=pods,
            by_id={p.id: p for p in pods},
            by_uid={uid: tuple(found) for uid, found in by_uid.items()},
        )

    def ours(self, uid: str) -> tuple[Pod, ...]:
        return self.by_uid.get(uid, ())


@dataclass
class Known:
    """What this process knows about one Kubernetes pod beyond the (possibly stale) cache."""

    annotations: dict[str, str | None] = field(default_factory=dict)
    attempt_at: datetime | None = None
    attempt_resolved: bool = False
    exit_code: int | None = None
    finished_at: datetime | None = None
    failure: Failure | None = None
    # Read once from RunPod's system log when the pod turned ERROR (None: no reason found).
    diagnosed: bool = False
    diagnosis: Diagnosis | None = None
    # Why a pod without a RunPod pod waits: the container's waiting reason and message.
    waiting_reason: str = CONTAINER_CREATING
    waiting_message: str | None = None
    last_uptime: int | None = None
    restart_count: int | None = None
    id_recorded_at: datetime | None = None
    # RunPod id confirmed gone (DELETE answered) even if the annotation write is still pending.
    terminated: bool = False
    # RunPod ids this process already sent DELETE for (the list may still show them until the next tick).
    deleted_ids: set[str] = field(default_factory=set)

    def wait(self, message: str | None, *, reason: str = CONTAINER_CREATING) -> None:
        """Record why the pod waits (reason and message change together, never one alone)."""
        self.waiting_reason, self.waiting_message = reason, message

    def effective(self, annotations: Mapping[str, str] | None) -> dict[str, str]:
        """The pod's annotations with this process's own writes laid over them."""
        merged = dict(annotations or {})
        for key, value in self.annotations.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def wrote(self, annotations: Mapping[str, str | None]) -> None:
        self.annotations.update(annotations)


def pod_annotations(pod: Mapping[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("annotations") or {})
