"""The seam between the kubelet API's streaming routes and SSH.

`SshEndpoint` is where one RunPod pod's sshd listens (its `ssh.direct`); `SshDialer` opens an
authenticated connection to it with the binder's key and the pod's pinned host key. The
streaming routes depend on this Protocol only, so they are tested against any SSH server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import asyncssh

__all__ = ["SshDialer", "SshEndpoint", "SshUnavailable"]


@dataclass(frozen=True, slots=True)
class SshEndpoint:
    runpod_pod_id: str
    host: str
    port: int
    username: str = "root"


class SshUnavailable(Exception):
    """No SSH session can be had for this pod; `str(self)` is the message for the user."""


class SshDialer(Protocol):
    async def connect(self, endpoint: SshEndpoint) -> asyncssh.SSHClientConnection:
        """A connected, authenticated client, within bounded connect time, or `SshUnavailable`."""
        ...
