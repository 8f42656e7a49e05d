"""Putting the SSH parts together for the composition root: the key pair, then the dialer.

    pair = await load_key_pair(api, settings)          # before the binder leads; waits out an
                                                       # apiserver that does not answer yet
    PodController(..., ssh_public_key=pair.public_key) # every create carries it
    dialer = build_dialer(key_pair=pair, api=api,      # the kubelet API's exec/attach/
                          pods=lambda: reflector.items.values(),   # port-forward routes
                          fence=write_fence(is_leading))

Does not own what the parts do: `keys`, `access`, `pinning`, `dialing`, `endpoints`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from binder.pods.kubeapi import KubePods
from binder.settings import BinderSettings
from binder.ssh.dialing import AsyncsshDialer
from binder.ssh.keys import SshKeyPair, ensure_key_pair
from binder.ssh.pinning import PodAnnotationPins
from kit.kube import TransientKubeError

__all__ = ["build_dialer", "load_key_pair"]

log = logging.getLogger(__name__)


async def load_key_pair(api: Any, settings: BinderSettings) -> SshKeyPair:
    """The cluster's key pair from `--ssh-key-secret` (created if absent). Retries while the
    apiserver does not answer (readyz stays false meanwhile); any other failure (RBAC, a Secret
    edited into something unusable: `keys.SshKeyError`) is raised, and the binder exits saying so."""
    failures = 0
    while True:
        try:
            return await ensure_key_pair(
                api, namespace=settings.ssh_key_secret_namespace, name=settings.ssh_key_secret
            )
        except TransientKubeError as exc:
            failures += 1
            log.warning("cannot read the SSH key Secret yet", extra={"error": str(exc), "failures": failures})
            await asyncio.sleep(min(30.0, 0.5 * 2**failures))


def build_dialer(
    *,
    key_pair: SshKeyPair,
    api: Any,
    pods: Callable[[], Iterable[Mapping[str, Any]]],
    fence: Callable[[], None] = lambda: None,
) -> AsyncsshDialer:
    """The dialer of the kubelet API: the binder's key, host keys pinned on the node's pods."""
    return AsyncsshDialer(
        client_key=key_pair.private_key, pins=PodAnnotationPins(kube=KubePods(api), pods=pods, fence=fence)
    )
