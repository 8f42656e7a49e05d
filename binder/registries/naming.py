"""The RunPod name of a registry credential: deterministic, per distinct credential. Pure.

    rpvk-<cluster16>-<digest24>

`cluster16` stands for the cluster and node (a hash of both), so this binder finds its own credentials
in the account's list again after a restart or a failover, and never touches another cluster's.
`digest24` is a slow, salted hash (scrypt) of (registry, username, password): the same Secret
content always gives the same name (never a second credential for it), a rotated password a new
one, and the name, visible to anyone holding the RunPod key, is no cheap oracle for guessing the
password.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final

__all__ = ["CREDENTIAL_PREFIX", "credential_name", "credential_prefix", "is_ours"]

CREDENTIAL_PREFIX: Final = "rpvk-"
_DIGEST_CHARS: Final = 24


def credential_prefix(cluster_id: str) -> str:
    return f"{CREDENTIAL_PREFIX}{hashlib.sha256(cluster_id.encode()).hexdigest()[:16]}-"


@functools.lru_cache(maxsize=256)
def credential_name(*, cluster_id: str, registry: str, username: str, password: str) -> str:
    """`rpvk-<cluster16>-<digest24>`; memoised (scrypt costs a few ms on purpose)."""
    digest = hashlib.scrypt(
        "\0".join((registry, username, password)).encode(),
        salt=("rpvk-registry\0" + cluster_id).encode(),
        n=2**14,
        r=8,
        p=1,
        dklen=16,
    ).hex()[:_DIGEST_CHARS]
    return credential_prefix(cluster_id) + digest


def is_ours(name: str, cluster_id: str) -> bool:
    """A credential this cluster's binder made (by its name's shape)."""
    prefix = credential_prefix(cluster_id)
    tail = name[len(prefix) :]
    return (
        name.startswith(prefix) and len(tail) == _DIGEST_CHARS and all(c in "0123456789abcdef" for c in tail)
    )
