"""PodController: the pod lifecycle's loops, run only while this binder replica leads.

Loops, each with one job (and one writer per object):

- reflector: list-then-watch of the pods bound to the node (`spec.nodeName=<node>`); its
  callback only enqueues the pod's key.
- sync tick: ONE `runpod.list_pods()` per tick for all pods -> `Snapshot`, then every pod key is
  enqueued. Every `reconcile_interval` seconds, every `fast_interval` while anything is
  provisioning, starting, finishing or terminating.
- sweep: orphan sweep on start and every `sweep_interval` (uses the latest snapshot), then the
  sweep of registry credentials no live pod uses (`binder.registries.credentials`).
- workers: take one key at a time from the `WorkQueue` (never two workers on one pod), dispatch:
  deletionTimestamp -> `deleting.finish_deletion`; terminal phase -> `syncing.finish_terminal`;
  no RunPod id -> `creating.ensure_created`; then `syncing.sync_pod`. A step returns when to look
  again; an exception backs off per key (1 s doubling to 5 min).
- exit watcher: log readers of running wrapped pods (`completion.ExitWatcher`), which enqueue
  the key when an exit marker shows up.

Leadership fence: `is_leading` (the elector's no-I/O check) reaches every step through
`PodContext.fence` and the sweeper; a step that finds this replica deposed raises `NotLeading`
and its worker drops the item, neither retrying nor writing (the process exits right after).

Restart = recover: workers wait until the reflector listed the pods AND the first RunPod list
arrived, so every decision (adopt an attempt, terminate, sweep) sees both. Nothing is ever
redeployed: a recorded id is mirrored, a recorded attempt is looked up in the list first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient

from binder.events import EventRecorder
from binder.pods.budgets import SpendLedger
from binder.pods.completion import ExitWatcher
from binder.pods.context import NotLeading, PodContext, always_leading, utcnow
from binder.pods.creating import ensure_created
from binder.pods.decisions import VISIBILITY_WINDOW
from binder.pods.deleting import finish_deletion
from binder.pods.kubeapi import KubePods, PodGone
from binder.pods.metrics import PodMetrics, default_pod_metrics
from binder.pods.queue import WorkQueue
from binder.pods.state import Snapshot, pod_annotations
from binder.pods.status import TERMINAL_PHASES, is_settling
from binder.pods.sweeping import Sweeper
from binder.pods.syncing import finish_terminal, record_exit, sync_pod
from binder.pods.usage import advance as advance_usage
from binder.registries.credentials import RegistryCredentials
from binder.retained_logs import RetainedLogs
from binder.settings import BinderSettings
from contract.annotations import CREATE_ATTEMPT, EXIT_CODE, POD_ID, REGISTRY_AUTH_ID, TERMINATED
from contract.catalog import Catalog
from kit.kube import KubeError, Reflector, object_key
from runpod_api.client import RunPodClient
from runpod_api.errors import RunPodError

log = logging.getLogger(__name__)

DEFAULT_WORKERS: Final = 10
COMPONENT: Final = "runpod-kubelet-binder"


class PodController:
    """Executes plans on RunPod for the pods bound to the node. `run()` until cancelled."""

    def __init__(
        self,
        api: ApiClient,
        runpod: RunPodClient,
        settings: BinderSettings,
        cluster_id: str,
        *,
        workers: int = DEFAULT_WORKERS,
        metrics: PodMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        visibility_window: timedelta = VISIBILITY_WINDOW,
        retained_logs: RetainedLogs | None = None,
        is_leading: Callable[[], bool] = always_leading,
        request_catalog_refresh: Callable[[], None] = lambda: None,
        catalog: Callable[[], Catalog | None] = lambda: None,
        ssh_public_key: str | None = None,
        registries: RegistryCredentials | None = None,
    ) -> None:
        """`visibility_window`: how long RunPod may take to list a pod it just created (the
        wait before a recorded create attempt that the list does not show is given up).
        `is_leading`: checked right before every write (see `PodContext.fence`); the default
        suits only a controller that runs alone. `request_catalog_refresh`: called when a create
        found every candidate out of capacity. `ssh_public_key`: the binder's SSH key, added to
        every RunPod pod it creates (`binder.ssh.access`)."""
        self._api = api
        self._settings = settings
        self._workers = workers
        self._queue = WorkQueue()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self.reflector = Reflector(
            api,
            path="/api/v1/pods",
            field_selector=f"spec.nodeName={settings.node_name}",
            on_event=self._on_event,
        )
        self.ctx = PodContext(
            runpod=runpod,
            kube=KubePods(api),
            events=EventRecorder(api, component=COMPONENT, host=settings.node_name),
            ledger=SpendLedger(cluster_id=cluster_id),
            metrics=metrics or default_pod_metrics(),
            settings=settings,
            policy=settings.node_policy(),
            cluster_id=cluster_id,
            started_at=clock(),
            clock=clock,
            visibility_window=visibility_window,
            is_leading=is_leading,
            request_catalog_refresh=request_catalog_refresh,
            catalog=catalog,
            ssh_public_key=ssh_public_key,
            registries=registries,
        )
        self.sweeper = Sweeper(
            runpod=runpod,
            owner_uid=self.ctx.kube.pod_uid,
            cluster_id=cluster_id,
            grace=timedelta(seconds=settings.sweep_grace_seconds),
            metrics=self.ctx.metrics,
            is_leading=is_leading,
        )
        self.watcher = ExitWatcher(runpod=runpod, on_exit=self._on_exit, retained=retained_logs)
        self.ticks = 0

    @property
    def ready(self) -> asyncio.Event:
        """Set once pods are listed and the first RunPod list arrived (work may begin)."""
        return self._ready

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.reflector.run(), name="pods-reflector")
                group.create_task(self._tick_loop(), name="pods-sync")
                group.create_task(self._sweep_loop(), name="pods-sweep")
                for index in range(self._workers):
                    group.create_task(self._worker(), name=f"pods-worker-{index}")
        finally:
            self._queue.close()
            await asyncio.shield(self.watcher.aclose())

    # ---- callbacks: only enqueue -------------------------------------------------------------

    def _on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        self._queue.add(object_key(obj))

    def _on_exit(self, key: str, uid: str, code: int) -> None:
        record_exit(self.ctx, uid, code)
        self._queue.add(key)
        self._wake.set()

    # ---- sync tick -----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        await self.reflector.synced.wait()
        while True:
            interval = self._settings.fast_interval
            try:
                pods = await self.ctx.runpod.list_pods()
                taken_at = self.ctx.clock()
                snapshot = Snapshot.build(pods, cluster_id=self.ctx.cluster_id, taken_at=taken_at)
                self.ctx.snapshot = snapshot
                self.ctx.usage = advance_usage(
                    self.ctx.usage,
                    runpod_pods=snapshot.by_id,
                    pods=self.reflector.items.values(),
                    now=taken_at,
                )
                self.ctx.metrics.set_gpu_usage(self.ctx.usage)
                self.ctx.ledger.rebuild(pods, taken_at=taken_at)
                self.ctx.metrics.spend.set(self.ctx.ledger.usage().usd_per_hour)
                self.ticks += 1
                self._ready.set()
                for key in self.reflector.items:
                    self._queue.add(key)
                self._forget_vanished()
                self._count_phases()
                if not self._settling(snapshot):
                    interval = self._settings.reconcile_interval
            except RunPodError as exc:
                log.warning("RunPod pod list failed (%s); keeping the previous snapshot", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)

    def _settling(self, snapshot: Snapshot) -> bool:
        """Is any pod provisioning, starting, finishing or terminating (tick fast)?"""
        for uid_pods in snapshot.by_uid.values():
            if any(is_settling(p) for p in uid_pods):
                return True
        for pod in self.reflector.items.values():
            metadata = pod.get("metadata") or {}
            if metadata.get("deletionTimestamp"):
                return True
            known = self.ctx.known.get(metadata.get("uid", ""))
            annotations = known.effective(pod_annotations(pod)) if known else pod_annotations(pod)
            phase = (pod.get("status") or {}).get("phase")
            if annotations.get(POD_ID) and phase == "Pending":
                return True
            if (
                annotations.get(CREATE_ATTEMPT)
                and not annotations.get(POD_ID)
                and known
                and not known.attempt_resolved
            ):
                return True
            if (
                annotations.get(EXIT_CODE) or (known and known.exit_code is not None)
            ) and TERMINATED not in annotations:
                return True
        return False

    def _forget_vanished(self) -> None:
        live = {(p.get("metadata") or {}).get("uid") for p in self.reflector.items.values()}
        self.watcher.retain_only(live)  # a deleted pod's retained logs go with it
        for uid in [uid for uid in self.ctx.known if uid not in live]:
            del self.ctx.known[uid]

    def _count_phases(self) -> None:
        counts: dict[str, int] = {}
        for pod in self.reflector.items.values():
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                phase = "Terminating"
            else:
                phase = (pod.get("status") or {}).get("phase") or "Pending"
            counts[phase] = counts.get(phase, 0) + 1
        self.ctx.metrics.set_phases(counts)

    def wake(self) -> None:
        """Ask for a sync tick now (a fresh RunPod list) instead of at the next interval."""
        self._wake.set()

    # ---- sweep ---------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        await self._ready.wait()
        while True:
            snapshot = self.ctx.snapshot
            if snapshot is not None:
                live_uids = {(p.get("metadata") or {}).get("uid", "") for p in self.reflector.items.values()}
                await self.sweeper.sweep(snapshot.pods, live_uids=live_uids, now=self.ctx.clock())
                if self.ctx.registries is not None:
                    in_use = self._registries_in_use(snapshot)
                    await self.ctx.registries.sweep(in_use=in_use, now=self.ctx.clock())
            # While orphans wait out their grace, look again when it ends rather than a full period later.
            delay = self._settings.sweep_interval
            if self.sweeper.pending:
                delay = min(delay, max(1.0, self._settings.sweep_grace_seconds / 2))
            await asyncio.sleep(delay)

    def _registries_in_use(self, snapshot: Snapshot) -> set[str]:
        """Credential ids a live pod of the node records (until its RunPod pod is terminated) or
        any RunPod pod of the account names."""
        used = {p.registry for p in snapshot.pods if p.registry and p.status != "TERMINATED"}
        for pod in self.reflector.items.values():
            known = self.ctx.known.get((pod.get("metadata") or {}).get("uid", ""))
            annotations = known.effective(pod_annotations(pod)) if known else pod_annotations(pod)
            if annotations.get(REGISTRY_AUTH_ID) and TERMINATED not in annotations:
                used.add(annotations[REGISTRY_AUTH_ID])
        return used

    # ---- workers -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        await self._ready.wait()
        while True:
            key = await self._queue.get()
            try:
                delay = await self._handle(key)
            except PodGone:
                delay = None
            except NotLeading:
                # Deposed: drop the item without retrying; the new leader recovers the pod.
                log.warning("no longer the leader; abandoning pod %s", key)
                delay = None
            except (KubeError, RunPodError) as exc:
                delay = self._queue.backoff(key)
                log.warning("handling pod %s failed (%s); retrying in %.0fs", key, exc, delay)
            except Exception:
                delay = self._queue.backoff(key)
                log.exception("unexpected error handling pod %s; retrying in %.0fs", key, delay)
            else:
                self._queue.forget(key)
            finally:
                self._queue.done(key)
            if delay is not None:
                self._queue.add_after(key, delay)

    async def _handle(self, key: str) -> float | None:
        pod: Mapping[str, Any] | None = self.reflector.items.get(key)
        if pod is None:
            self.watcher.forget(key)
            return None
        metadata = pod.get("metadata") or {}
        uid = metadata.get("uid", "")
        if metadata.get("deletionTimestamp"):
            return await finish_deletion(self.ctx, pod, self.watcher, key)
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            self.watcher.forget(key)
            return await finish_terminal(self.ctx, pod)
        known = self.ctx.known_for(uid)
        delay: float | None = None
        if not known.effective(pod_annotations(pod)).get(POD_ID) and known.failure is None:
            had_id = False
            delay = await ensure_created(self.ctx, pod)
        else:
            had_id = True
        after_sync = await sync_pod(self.ctx, pod, self.watcher, key)
        if not had_id and known.effective(pod_annotations(pod)).get(POD_ID):
            self.wake()  # a new RunPod pod: list soon to mirror its progress
        if delay is None:
            return after_sync
        if after_sync is None:
            return delay
        return min(delay, after_sync)
