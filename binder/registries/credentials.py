"""RegistryCredentials: one RunPod registry credential per distinct pull credential, made once,
found again, deleted when no live pod of this cluster uses it.

Ensure (a worker, before a create): the credential's name is deterministic (`naming`), so the
binder looks it up before it creates: in its memory of the account's credentials, else in one
`GET /v2/registries`; only when absent does it `POST`. Per name one worker at a time (a lock), so
two pods with the same Secret never race to create two. A crash between the POST and anything
recorded leaves a credential the next lookup finds by name; an ambiguous POST (5xx, timeout) is
followed by a list before anything else is tried. Never duplicated, whatever dies when.

In use: a credential is in use while a worker holds it (`using`, from ensure to the intent write
that records `runpod.io/registry-auth-id` on the pod, before the POST), while a live pod of the
node records it and is not terminated, or while any pod in the latest RunPod list names it.
Sweep (on the binder's sweep cadence): this cluster's credentials in use by nobody for `grace`
are deleted; RunPod refuses one a pod still uses (400), which is retried next sweep. The list
is read only when something may be deletable (the first sweep, or a known credential fell out
of use): in steady state the sweep costs no RunPod call. Only the leader writes (`fence`).

`due_for_deletion` is the pure decision; this class gathers, calls it and applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime, timedelta

from binder.registries.keyring import PullCredential
from binder.registries.naming import credential_name, is_ours
from runpod_api.client import RunPodClient
from runpod_api.errors import RunPodBadRequest, RunPodError, RunPodServerError, RunPodTimeout
from runpod_api.models import CreateRegistryRequest

__all__ = ["RegistryCredentials", "due_for_deletion"]

log = logging.getLogger(__name__)


def due_for_deletion(
    ours: Mapping[str, str],
    *,
    in_use: Collection[str],
    unused_since: Mapping[str, datetime],
    now: datetime,
    grace: timedelta,
) -> tuple[list[str], dict[str, datetime]]:
    """(credential ids to delete now, first-seen-unused times of the others still waiting).

    `ours`: name -> id of this cluster's credentials. One in use is never due, and its clock
    restarts."""
    due: list[str] = []
    waiting: dict[str, datetime] = {}
    for credential_id in ours.values():
        if credential_id in in_use:
            continue
        since = unused_since.get(credential_id, now)
        if now - since >= grace:
            due.append(credential_id)
        else:
            waiting[credential_id] = since
    return sorted(due), waiting


class RegistryCredentials:
    def __init__(
        self,
        *,
        runpod: RunPodClient,
        cluster_id: str,
        grace: timedelta,
        fence: Callable[[], None],
    ) -> None:
        self._runpod = runpod
        self._cluster_id = cluster_id
        self._grace = grace
        self._fence = fence
        # name -> id of this cluster's credentials as last listed (plus our own creates).
        self._ours: dict[str, str] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: Counter[str] = Counter()
        self._unused_since: dict[str, datetime] = {}

    @property
    def known(self) -> Mapping[str, str]:
        return dict(self._ours or {})

    async def ensure(self, credential: PullCredential) -> str:
        """The id of the RunPod credential for `credential`, created only if the account has none."""
        name = credential_name(
            cluster_id=self._cluster_id,
            registry=credential.registry,
            username=credential.username,
            password=credential.password,
        )
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if self._ours is not None and name in self._ours:
                return self._ours[name]
            await self._list()
            if self._ours is not None and name in self._ours:
                return self._ours[name]
            self._fence()
            request = CreateRegistryRequest(
                name=name, username=credential.username, password=credential.password
            )
            try:
                created = await self._runpod.create_registry(request)
            except (RunPodServerError, RunPodTimeout):
                # It may exist: look before anything else is sent.
                await self._list()
                if self._ours is not None and name in self._ours:
                    return self._ours[name]
                raise
            if self._ours is None:
                self._ours = {}
            self._ours[name] = created.id
            log.info("created RunPod registry credential %s for %s", created.id, credential.registry)
            return created.id

    @contextlib.contextmanager
    def using(self, credential_id: str) -> Iterator[None]:
        """Hold the credential as in use (from ensure until the pod records it)."""
        self._held[credential_id] += 1
        try:
            yield
        finally:
            self._held[credential_id] -= 1
            if self._held[credential_id] <= 0:
                del self._held[credential_id]

    async def _list(self) -> None:
        listed = await self._runpod.list_registries()
        self._ours = {r.name: r.id for r in listed if is_ours(r.name, self._cluster_id)}

    async def sweep(self, *, in_use: Collection[str], now: datetime) -> list[str]:
        """Delete this cluster's credentials nobody uses any more; their ids. Never raises
        RunPod errors (logged; retried on the next sweep)."""
        busy = set(in_use) | set(self._held)
        try:
            if self._ours is None or any(i not in busy for i in self._ours.values()):
                await self._list()
        except RunPodError as exc:
            log.warning("registry credential sweep could not list credentials: %s", exc)
            return []
        due, self._unused_since = due_for_deletion(
            self._ours or {}, in_use=busy, unused_since=self._unused_since, now=now, grace=self._grace
        )
        deleted: list[str] = []
        for credential_id in due:
            if credential_id in self._held:
                continue  # a worker took it while we listed
            self._fence()
            try:
                await self._runpod.delete_registry(credential_id)
            except RunPodBadRequest as exc:
                log.info(
                    "registry credential %s still in use on RunPod (%s); retrying later", credential_id, exc
                )
                continue
            except RunPodError as exc:
                log.warning("deleting registry credential %s failed: %s", credential_id, exc)
                continue
            deleted.append(credential_id)
            self._unused_since.pop(credential_id, None)
            log.info("deleted RunPod registry credential %s: no live pod uses it", credential_id)
        if deleted and self._ours is not None:
            self._ours = {n: i for n, i in self._ours.items() if i not in deleted}
        return deleted
