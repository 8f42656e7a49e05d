"""The binder's SSH key pair: one per cluster, generated once, kept in a Secret in its namespace.

Every RunPod pod the binder creates carries the public half in `PUBLIC_KEY` (`access`); the
private half authenticates the kubelet API's SSH sessions to those pods (`dialing`). The pair
must outlive any one binder process: a pod created by one replica is exec'd into through
another after a failover, and through the same pair after a restart.

Created if absent, then read back: two binders that start together (or a failover racing a
slow first start) may both find no Secret and both generate a pair; the apiserver lets one
create win (409 AlreadyExists for the other), and both use what they read back. So the pair
in use is always the stored one; a binder never holds a pair that is not in the Secret.

The Secret is `kubernetes.io/ssh-auth` (`ssh-privatekey`: OpenSSH private key; plus
`ssh-publickey`: the `authorized_keys` line). The private key never leaves this module as
text except in the create body: `SshKeyPair` shows only its fingerprint in `repr`, and no log
line names more than the Secret and that fingerprint.

Errors: `SshKeyError` (the Secret exists but holds no usable pair: someone edited it) is
permanent; `kit.kube.TransientKubeError` is left to the caller to retry; other
`kit.kube.KubeError`s (403: RBAC) are permanent.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncssh

from kit.kube import AlreadyExists, NotFound, get_json, post_json

__all__ = [
    "KEY_COMMENT",
    "SshKeyError",
    "SshKeyPair",
    "ensure_key_pair",
    "generate_key_pair",
    "key_pair_from_secret",
    "secret_manifest",
]

log = logging.getLogger(__name__)

SECRET_TYPE: Final = "kubernetes.io/ssh-auth"
PRIVATE_KEY_FIELD: Final = "ssh-privatekey"
PUBLIC_KEY_FIELD: Final = "ssh-publickey"
# The comment of the public key line: how a person reading a pod's PUBLIC_KEY tells ours apart.
KEY_COMMENT: Final = "runpod-kubelet"
_LABELS: Final = {"app.kubernetes.io/managed-by": "runpod-kubelet", "app.kubernetes.io/component": "ssh"}


class SshKeyError(Exception):
    """The Secret exists but holds no usable key pair; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class SshKeyPair:
    """The binder's client key (for asyncssh) and its public half as an `authorized_keys` line."""

    private_key: asyncssh.SSHKey = field(repr=False)
    public_key: str
    fingerprint: str

    @classmethod
    def of(cls, private_key: asyncssh.SSHKey) -> SshKeyPair:
        public = private_key.export_public_key().decode("ascii").strip()
        return cls(private_key=private_key, public_key=public, fingerprint=private_key.get_fingerprint())


def generate_key_pair() -> SshKeyPair:
    """A fresh Ed25519 pair (short keys, fast, accepted by every OpenSSH since 6.5)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=KEY_COMMENT)
    return SshKeyPair.of(key)


def secret_manifest(*, name: str, namespace: str, pair: SshKeyPair) -> dict[str, Any]:
    private = pair.private_key.export_private_key("openssh")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_LABELS)},
        "type": SECRET_TYPE,
        "data": {
            PRIVATE_KEY_FIELD: base64.b64encode(private).decode("ascii"),
            PUBLIC_KEY_FIELD: base64.b64encode(pair.public_key.encode("ascii") + b"\n").decode("ascii"),
        },
    }


def key_pair_from_secret(secret: Mapping[str, Any]) -> SshKeyPair:
    """The pair a Secret holds; the public half is derived from the private key (the stored
    `ssh-publickey` is for people). Raises `SshKeyError` naming the Secret, never its content."""
    metadata = secret.get("metadata") or {}
    where = f"Secret {metadata.get('namespace', '')}/{metadata.get('name', '')}"
    remedy = (
        "delete it to have a new pair generated (pods created before then accept only the old key: "
        "recreate them for exec)"
    )
    raw = (secret.get("data") or {}).get(PRIVATE_KEY_FIELD)
    if not raw:
        raise SshKeyError(f"{where} has no {PRIVATE_KEY_FIELD}; {remedy}")
    try:
        key = asyncssh.import_private_key(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, asyncssh.KeyImportError):
        # The exception text may quote the key material: never chained or shown.
        raise SshKeyError(
            f"{where}: {PRIVATE_KEY_FIELD} is not an unencrypted OpenSSH private key; {remedy}"
        ) from None
    return SshKeyPair.of(key)


async def ensure_key_pair(
    api: Any, *, namespace: str, name: str, generate: Callable[[], SshKeyPair] = generate_key_pair
) -> SshKeyPair:
    """The cluster's pair: read the Secret, else create it, then read back what was stored."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    try:
        secret = await get_json(api, path)
    except NotFound:
        try:
            await post_json(
                api,
                f"/api/v1/namespaces/{namespace}/secrets",
                secret_manifest(name=name, namespace=namespace, pair=generate()),
            )
            log.info("created the SSH key Secret", extra={"secret": f"{namespace}/{name}"})
        except AlreadyExists:
            log.info(
                "another binder created the SSH key Secret first", extra={"secret": f"{namespace}/{name}"}
            )
        secret = await get_json(api, path)
    pair = key_pair_from_secret(secret)
    log.info("SSH key pair loaded", extra={"secret": f"{namespace}/{name}", "fingerprint": pair.fingerprint})
    return pair
