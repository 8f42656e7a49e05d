"""Host-key trust for RunPod pods' sshd: pinned on first use, per RunPod pod id.

Why trust on first use: RunPod's API reports no host key or fingerprint for a pod (`ssh.direct`
is host, port and user only), and the images make their host keys when the container first
starts, so nothing is known to check the first key against. The first key a connection is
offered is pinned; a later connection offered another key for the same RunPod pod is refused
(`dialing`), never connected.

Where the pin lives, and why: a binder state annotation on the Kubernetes pod,
`runpod.io/ssh-host-key` = `"<RunPod pod id> <key type> <base64 key>"`. It survives binder
restarts and failovers (the next leader reads it from the pod), goes away with the pod, needs no
object or permission beyond the pod patches the binder already makes, and only the binder's
identity may write it (the admission policy guards every state key), so a user cannot plant a
host key of their choosing. The RunPod pod id in the value keeps the pin of one RunPod pod from
applying to another (a pod recreated under a new id starts afresh). Host keys are public: the
annotation holds nothing secret.

`PodAnnotationPins` remembers what it pinned in this process too, so a second connection made
before the pod cache shows the first write still checks against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import asyncssh

from binder.pods.context import NotLeading
from binder.pods.kubeapi import KubePods, PodGone
from binder.ssh.dialing import SshEndpoint
from contract.annotations import POD_ID, SSH_HOST_KEY
from kit.kube import KubeError

__all__ = ["PodAnnotationPins", "format_pin", "pinned_key"]

log = logging.getLogger(__name__)


def format_pin(runpod_pod_id: str, key: asyncssh.SSHKey) -> str:
    """`"<RunPod pod id> ssh-ed25519 AAAA..."` (the key without its comment)."""
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{runpod_pod_id} {algorithm} {blob}"


def pinned_key(annotations: Mapping[str, str], runpod_pod_id: str) -> asyncssh.SSHKey | None:
    """The host key pinned for this RunPod pod, if any. A pin of another RunPod pod id, or one
    that does not parse (not written by us), pins nothing."""
    parts = annotations.get(SSH_HOST_KEY, "").split()
    if len(parts) != 3 or parts[0] != runpod_pod_id:
        return None
    try:
        return asyncssh.import_public_key(f"{parts[1]} {parts[2]}")
    except (asyncssh.KeyImportError, ValueError):
        return None


class PodAnnotationPins:
    """`binder.ssh.dialing.HostKeyPins` on the Kubernetes pods of the node, found by their `runpod.io/pod-id`.

    `pods` gives the node's pods as last seen (the pod controller's cache); `fence` raises when
    this replica no longer leads (the pin is a state write like any other)."""

    def __init__(
        self,
        *,
        kube: KubePods,
        pods: Callable[[], Iterable[Mapping[str, Any]]],
        fence: Callable[[], None] = lambda: None,
    ) -> None:
        self._kube = kube
        self._pods = pods
        self._fence = fence
        self._written: dict[str, asyncssh.SSHKey] = {}

    def _pod_of(self, runpod_pod_id: str) -> Mapping[str, Any] | None:
        for pod in self._pods():
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if annotations.get(POD_ID) == runpod_pod_id:
                return pod
        return None

    async def pinned(self, endpoint: SshEndpoint) -> asyncssh.SSHKey | None:
        if (key := self._written.get(endpoint.runpod_pod_id)) is not None:
            return key
        pod = self._pod_of(endpoint.runpod_pod_id)
        if pod is None:
            return None
        return pinned_key((pod.get("metadata") or {}).get("annotations") or {}, endpoint.runpod_pod_id)

    async def pin(self, endpoint: SshEndpoint, key: asyncssh.SSHKey) -> None:
        self._written[endpoint.runpod_pod_id] = key
        pod = self._pod_of(endpoint.runpod_pod_id)
        if pod is None:
            return
        metadata = pod.get("metadata") or {}
        try:
            self._fence()
            await self._kube.patch_annotations(
                metadata.get("namespace", ""),
                metadata.get("name", ""),
                {SSH_HOST_KEY: format_pin(endpoint.runpod_pod_id, key)},
                uid=metadata.get("uid", ""),
            )
        except PodGone:
            return
        except (KubeError, NotLeading) as exc:  # the session goes on; the pin is kept in memory
            log.warning(
                "could not record the SSH host key on the pod",
                extra={"pod": f"{metadata.get('namespace')}/{metadata.get('name')}", "error": str(exc)},
            )
