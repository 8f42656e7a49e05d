"""The seam between the kubelet API's streaming routes and SSH, and its asyncssh implementation.

`SshEndpoint` is where one RunPod pod's sshd listens (its `ssh.direct`; `endpoints` builds it
or says why there is none); `SshDialer` opens an authenticated connection to it with the
binder's key and the pod's pinned host key. The streaming routes depend on this Protocol only,
so they are tested against any SSH server.

`AsyncsshDialer` is the one implementation: the binder's client key (`keys`), host keys pinned
on first use (`pinning`, where the reason for TOFU is given), connect and authentication
bounded by `connect_timeout` (10 s), and keepalives so a pod that vanishes mid-session is
noticed within `keepalive_interval x keepalive_count_max` (15 s x 4) instead of hanging the
stream. Nothing else of the machine is consulted: no `~/.ssh/config`, no agent, no
`known_hosts` file, no password or keyboard-interactive authentication.

Errors: every failure to connect is one `SshUnavailable` whose `str()` is the message for the
user (it names the pod and what to do, never key material) and whose `reason` says what
happened; foreign exceptions are translated here, once:

    SshUnavailable(reason)
      NOT_RUNNING        the pod is not running yet: retry later (`endpoints`)
      FINISHED           the pod or its RunPod pod ended (`endpoints`)
      OPTED_OUT          `runpod.io/ssh: disabled` (`endpoints`)
      NO_SSH_ACCESS      the RunPod pod was created without the binder's key or 22/tcp
      NO_PUBLIC_ADDRESS  RunPod maps no public port for 22/tcp
      NO_SSHD            the image runs no sshd (no `ssh.direct`, or the connection is refused)
      KEY_REFUSED        sshd does not accept the binder's key
      HOST_KEY_CHANGED   the pod's host key is not the one pinned: never connected
      TIMEOUT            no answer within `connect_timeout`: retry later
      UNREACHABLE        any other network or SSH protocol failure: retry later
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import asyncssh

__all__ = [
    "AsyncsshDialer",
    "HostKeyPins",
    "SshDialer",
    "SshEndpoint",
    "SshUnavailable",
    "Unavailability",
    "no_sshd",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0
KEEPALIVE_INTERVAL: Final = 15.0
KEEPALIVE_COUNT_MAX: Final = 4


@dataclass(frozen=True, slots=True)
class SshEndpoint:
    runpod_pod_id: str
    host: str
    port: int
    username: str = "root"
    # For messages only: the image that should run sshd, and the Kubernetes pod (namespace/name).
    image: str = ""
    pod: str = ""

    def describe(self) -> str:
        return f"pod {self.pod}" if self.pod else f"RunPod pod {self.runpod_pod_id}"


class Unavailability(StrEnum):
    NOT_RUNNING = "NotRunning"
    FINISHED = "Finished"
    OPTED_OUT = "OptedOut"
    NO_SSH_ACCESS = "NoSshAccess"
    NO_PUBLIC_ADDRESS = "NoPublicAddress"
    NO_SSHD = "NoSshd"
    KEY_REFUSED = "KeyRefused"
    HOST_KEY_CHANGED = "HostKeyChanged"
    TIMEOUT = "Timeout"
    UNREACHABLE = "Unreachable"

    @property
    def temporary(self) -> bool:
        """Might the same request succeed later without anyone changing anything?"""
        return self in (Unavailability.NOT_RUNNING, Unavailability.TIMEOUT, Unavailability.UNREACHABLE)


class SshUnavailable(Exception):
    """No SSH session can be had for this pod; `str(self)` is the message for the user."""

    def __init__(self, message: str, *, reason: Unavailability = Unavailability.UNREACHABLE) -> None:
        super().__init__(message)
        self.reason = reason


class SshDialer(Protocol):
    async def connect(self, endpoint: SshEndpoint) -> asyncssh.SSHClientConnection:
        """A connected, authenticated client, within bounded connect time, or `SshUnavailable`."""
        ...


class HostKeyPins(Protocol):
    """Where host keys are remembered (`pinning.PodAnnotationPins`). `pinned` may be called
    concurrently; `pin` is called after each first connection and must not raise (a pin that
    could not be stored is logged by the implementation)."""

    async def pinned(self, endpoint: SshEndpoint) -> asyncssh.SSHKey | None: ...

    async def pin(self, endpoint: SshEndpoint, key: asyncssh.SSHKey) -> None: ...


class _HostKeyCheck(asyncssh.SSHClient):
    """Sees the host key the server offers; accepts it only when nothing is pinned (asyncssh
    accepts the pinned key itself, from `known_hosts`, without asking)."""

    def __init__(self, pinned: asyncssh.SSHKey | None) -> None:
        self.pinned = pinned
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = key
        return self.pinned is None


class AsyncsshDialer:
    def __init__(
        self,
        *,
        client_key: asyncssh.SSHKey,
        pins: HostKeyPins,
        connect_timeout: float = CONNECT_TIMEOUT,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        keepalive_count_max: int = KEEPALIVE_COUNT_MAX,
    ) -> None:
        self._key = client_key
        self._pins = pins
        self.connect_timeout = connect_timeout
        self._keepalive_interval = keepalive_interval
        self._keepalive_count_max = keepalive_count_max

    async def connect(self, endpoint: SshEndpoint) -> asyncssh.SSHClientConnection:
        pinned = await self._pins.pinned(endpoint)
        check = _HostKeyCheck(pinned)
        # Offer only the pinned key's algorithms, so the server shows the key that was pinned
        # rather than another of its host keys.
        algorithms = [a.decode("ascii") for a in pinned.sig_algorithms] if pinned is not None else ()
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await asyncssh.connect(
                    endpoint.host,
                    endpoint.port,
                    username=endpoint.username or "root",
                    client_factory=lambda: check,
                    client_keys=[self._key],
                    known_hosts=([pinned] if pinned is not None else [], [], []),
                    server_host_key_algs=algorithms or "default",
                    preferred_auth="publickey",
                    agent_path=None,
                    config=None,
                    password=None,
                    kbdint_auth=False,
                    gss_auth=False,
                    connect_timeout=self.connect_timeout,
                    login_timeout=self.connect_timeout,
                    keepalive_interval=self._keepalive_interval,
                    keepalive_count_max=self._keepalive_count_max,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise _host_key_changed(endpoint, pinned, check.offered) from exc
        except asyncssh.PermissionDenied as exc:
            raise SshUnavailable(
                f"the sshd of {endpoint.describe()} does not accept the binder's SSH key: the image "
                f"{endpoint.image or '(unknown)'} must add every line of PUBLIC_KEY to root's "
                "authorized_keys (RunPod's official images do)",
                reason=Unavailability.KEY_REFUSED,
            ) from exc
        except ConnectionRefusedError as exc:
            raise no_sshd(endpoint, detail=f"connection to {endpoint.host}:{endpoint.port} refused") from exc
        except TimeoutError as exc:
            raise SshUnavailable(
                f"the sshd of {endpoint.describe()} at {endpoint.host}:{endpoint.port} did not answer "
                f"within {self.connect_timeout:g} s; retry, or check that the pod is reachable",
                reason=Unavailability.TIMEOUT,
            ) from exc
        except asyncssh.Error as exc:
            raise SshUnavailable(
                f"SSH to {endpoint.describe()} at {endpoint.host}:{endpoint.port} failed: {exc.reason}",
                reason=Unavailability.UNREACHABLE,
            ) from exc
        except OSError as exc:
            raise SshUnavailable(
                f"cannot reach the sshd of {endpoint.describe()} at {endpoint.host}:{endpoint.port}: "
                f"{exc.strerror or exc}",
                reason=Unavailability.UNREACHABLE,
            ) from exc
        if pinned is None:
            offered = conn.get_server_host_key()
            if offered is not None:
                await self._pins.pin(endpoint, offered)
                log.info(
                    "pinned the SSH host key of a RunPod pod on first use",
                    extra={"runpod_pod_id": endpoint.runpod_pod_id, "fingerprint": offered.get_fingerprint()},
                )
        return conn


def no_sshd(endpoint: SshEndpoint, *, detail: str) -> SshUnavailable:
    """The refusal for an image that runs no sshd (`detail`: how that showed)."""
    return SshUnavailable(
        f"the image {endpoint.image or '(unknown)'} of {endpoint.describe()} runs no sshd ({detail}); "
        "use an image that starts sshd with PUBLIC_KEY, such as RunPod's official images",
        reason=Unavailability.NO_SSHD,
    )


def _host_key_changed(
    endpoint: SshEndpoint, pinned: asyncssh.SSHKey | None, offered: asyncssh.SSHKey | None
) -> SshUnavailable:
    was = pinned.get_fingerprint() if pinned is not None else "a pinned key"
    now = offered.get_fingerprint() if offered is not None else "another key"
    return SshUnavailable(
        f"the SSH host key of {endpoint.describe()} (RunPod pod {endpoint.runpod_pod_id}) is not the one "
        f"trusted on first use (pinned {was}, offered {now}); not connecting. If the pod's container "
        "was recreated with new host keys, recreate the pod",
        reason=Unavailability.HOST_KEY_CHANGED,
    )
