"""SSH access in the create body: the binder's public key in `PUBLIC_KEY`, `22/tcp` in the ports.

RunPod's convention (its official images' start script): sshd runs when `PUBLIC_KEY` is set,
and every line of it goes to root's `authorized_keys`. `ssh.direct` (the public address of port
22) is reported only for a pod that exposes `22/tcp`. So the binder adds both to every pod it
creates, keeping what the user set: a user's own `PUBLIC_KEY` stays, with the binder's key on a
line of its own after it; a `22` the plan already exposes is not added twice. It never uses
`startSsh` (that fills `PUBLIC_KEY` from the account's keys) nor `PUT /v2/account/ssh-keys`
(which replaces every key of the account).

A pod opts out with `runpod.io/ssh: disabled` (`contract.annotations.SSH`, validated at
admission): then the body is left exactly as the plan made it, and `kubectl exec` says why it
cannot reach the pod (`endpoints`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from contract.annotations import SSH, SSH_DISABLED
from runpod_api.models import CreatePodRequest

__all__ = ["PUBLIC_KEY_ENV", "SSH_PORT", "has_key", "merge_public_keys", "ssh_opted_out", "with_ssh_access"]

PUBLIC_KEY_ENV: Final = "PUBLIC_KEY"
SSH_PORT: Final = "22/tcp"


def ssh_opted_out(annotations: Mapping[str, str]) -> bool:
    """Did the pod opt out of SSH (`runpod.io/ssh: disabled`)? Read from the pod only."""
    return annotations.get(SSH, "").strip() == SSH_DISABLED


def has_key(public_keys: str, public_key: str) -> bool:
    """Is `public_key` (an `authorized_keys` line) one of the lines of `public_keys`? Compared
    by type and key, whatever the comments."""
    wanted = public_key.split()[:2]
    return any(line.split()[:2] == wanted for line in public_keys.splitlines())


def merge_public_keys(existing: str | None, public_key: str) -> str:
    """`PUBLIC_KEY` with `public_key` on a line of its own after what was there."""
    if not existing or not existing.strip():
        return public_key
    if has_key(existing, public_key):
        return existing
    return existing.rstrip("\n") + "\n" + public_key


def with_ssh_access(
    request: CreatePodRequest, *, public_key: str | None, annotations: Mapping[str, str]
) -> CreatePodRequest:
    """The create body with the binder's SSH access added; unchanged when there is no key (SSH
    not configured) or the pod opted out."""
    if not public_key or ssh_opted_out(annotations):
        return request
    env = dict(request.env or {})
    env[PUBLIC_KEY_ENV] = merge_public_keys(env.get(PUBLIC_KEY_ENV), public_key)
    ports = list(request.ports or [])
    if not any(port.partition("/")[0] == "22" for port in ports):
        ports.append(SSH_PORT)
    return request.model_copy(update={"env": env, "ports": ports})
