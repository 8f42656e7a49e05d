"""Ownership of RunPod pods: deterministic names and the env markers that prove who owns one.

RunPod v2 has no tags, labels or idempotency keys, and `GET /v2/pods` lists the whole account
(console pods, other clusters, other tools). Every RunPod pod this binder creates therefore
carries, in `env` (returned verbatim by every list):

    RPVK_OWNER=<cluster id>/<namespace>/<pod name>
    RPVK_POD_UID=<Kubernetes pod UID>
    RPVK_ATTEMPT=<n>

and a deterministic name `rpvk-<cluster8>-<uid8>-<n>`, unique per create attempt. The name is
recorded on the Kubernetes pod before the POST (`runpod.io/create-attempt`) so a crash between
POST and recording the id is recovered by finding that name in one list call.

A RunPod pod is ours only when its marker names this cluster id. Nothing here, nor anywhere in the
binder, ever deletes a pod without checking the marker: a `runpod.io/pod-id` annotation alone is
not proof (a user could forge it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict

OWNER_ENV: Final = "RPVK_OWNER"
POD_UID_ENV: Final = "RPVK_POD_UID"
ATTEMPT_ENV: Final = "RPVK_ATTEMPT"
MARKER_KEYS: Final[frozenset[str]] = frozenset({OWNER_ENV, POD_UID_ENV, ATTEMPT_ENV})
NAME_PREFIX: Final = "rpvk-"


class Owner(BaseModel):
    """Who a RunPod pod belongs to, read back from its env marker."""

    model_config = ConfigDict(frozen=True)

    cluster_id: str
    namespace: str
    name: str
    uid: str
    attempt: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def cluster_tag(cluster_id: str) -> str:
    """8 hex chars standing for the cluster in RunPod pod names (any cluster id string fits)."""
    return hashlib.sha256(cluster_id.encode()).hexdigest()[:8]


def runpod_pod_name(*, cluster_id: str, uid: str, attempt: int) -> str:
    """`rpvk-<cluster8>-<uid8>-<attempt>`: the same inputs always give the same name."""
    uid8 = uid.replace("-", "")[:8].lower()
    return f"{NAME_PREFIX}{cluster_tag(cluster_id)}-{uid8}-{attempt}"


def attempt_of(runpod_name: str) -> int | None:
    """The attempt number at the end of one of our names, None for any other name."""
    if not runpod_name.startswith(NAME_PREFIX):
        return None
    _, _, tail = runpod_name.rpartition("-")
    return int(tail) if tail.isdigit() else None


def owner_markers(*, cluster_id: str, namespace: str, name: str, uid: str, attempt: int) -> dict[str, str]:
    return {
        OWNER_ENV: f"{cluster_id}/{namespace}/{name}",
        POD_UID_ENV: uid,
        ATTEMPT_ENV: str(attempt),
    }


def owner_of(env: Mapping[str, str] | None) -> Owner | None:
    """The owner named by a RunPod pod's env marker, or None if it carries no valid marker."""
    if not env:
        return None
    owner = env.get(OWNER_ENV)
    uid = env.get(POD_UID_ENV)
    if not owner or not uid:
        return None
    # Split from the right: namespace and pod name never contain "/", a cluster id might.
    parts = owner.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    attempt_text = env.get(ATTEMPT_ENV, "")
    return Owner(
        cluster_id=parts[0],
        namespace=parts[1],
        name=parts[2],
        uid=uid,
        attempt=int(attempt_text) if attempt_text.isdigit() else None,
    )


def owned_by_cluster(env: Mapping[str, str] | None, cluster_id: str) -> Owner | None:
    """The owner if this cluster owns the RunPod pod, else None (foreign: never touch it)."""
    owner = owner_of(env)
    return owner if owner is not None and owner.cluster_id == cluster_id else None


def owned_by_pod(env: Mapping[str, str] | None, *, cluster_id: str, uid: str) -> bool:
    """True only when the marker names this cluster AND this Kubernetes pod UID."""
    owner = owned_by_cluster(env, cluster_id)
    return owner is not None and owner.uid == uid
