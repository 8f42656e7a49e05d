"""The binder's composition root: builds the shared objects and runs every long-lived task.

Order of events:

1. Connect: the kubernetes_asyncio ApiClient (kubeconfig or in-cluster) and the RunPodClient.
   The cluster id (owner marker of every RunPod pod we create) is `--cluster-id` or the UID of
   namespace kube-system, which survives binder restarts and reinstalls. The SSH key pair
   (`binder.ssh.keys`) is read from its Secret, which is created if absent.
2. Serve /healthz /readyz /metrics at once, standby or not.
3. Campaign for the leader Lease (unless `--no-leader-election`). A standby waits here, ready.
4. While leading, run the leader tasks, each under a readable name: `node-status`,
   `node-lease`, `catalog-publisher`, `pod-controller`, `kubelet-api`, `volume-provisioner`
   (claims of the network-volume StorageClass), plus `leader-renewal`.
   All are essential: when any of them ends or fails, or leadership is lost, the others are
   cancelled and the process exits non-zero, so the Deployment restarts it as a standby while
   the other replica takes over. Nothing is ever retried "in place" as a half-leader.
5. On SIGTERM/SIGINT: cancel the leader tasks, release the leader Lease (shielded) so a standby
   takes over at once, close the clients, exit 0.

Does not own what the tasks do: see `node`, `leasing`, `catalog_publisher`, `binder.pods`,
`binder.kubelet_api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from binder.catalog_publisher import CatalogPublisher
from binder.election import LeaderElector, LeadershipLost, leader_lease_name
from binder.events import EventRecorder
from binder.health import HealthState, Role, start_health_server
from binder.kubelet_api.app import NodeView
from binder.kubelet_api.server import serve_kubelet_api
from binder.leasing import NodeLeaseLoop
from binder.node import NodeStatusLoop
from binder.pods.context import always_leading, write_fence
from binder.pods.controller import PodController
from binder.registries.credentials import RegistryCredentials
from binder.retained_logs import RetainedLogs
from binder.settings import BinderSettings
from binder.ssh.keys import SshKeyPair
from binder.ssh.setup import build_dialer, load_key_pair
from binder.volumes.provisioner import VolumeProvisioner
from contract.catalog import Catalog
from kit.kube import TransientKubeError, get_json, load_api_client
from runpod_api.client import RunPodClient

__all__ = ["EXIT_LEADER_TASK_ENDED", "EXIT_LOST_LEADERSHIP", "resolve_cluster_id", "run_binder"]

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_LOST_LEADERSHIP: Final = 3
EXIT_LEADER_TASK_ENDED: Final = 4
# Release the leader Lease even when shutdown is slow, but never hang on it.
RELEASE_TIMEOUT: Final = 5.0


async def resolve_cluster_id(api: Any, settings: BinderSettings) -> str:
    """`--cluster-id`, else the kube-system namespace UID; waits (readyz false) while the
    apiserver cannot answer, rather than crash-looping."""
    if settings.cluster_id:
        return settings.cluster_id
    failures = 0
    while True:
        try:
            namespace = await get_json(api, "/api/v1/namespaces/kube-system")
        except TransientKubeError as exc:
            failures += 1
            log.warning("apiserver not answering yet", extra={"error": str(exc), "failures": failures})
            await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            continue
        uid: str = namespace["metadata"]["uid"]
        return uid


def leader_tasks(
    *,
    api: Any,
    runpod: RunPodClient,
    settings: BinderSettings,
    cluster_id: str,
    is_leading: Callable[[], bool],
    ssh_keys: SshKeyPair,
) -> tuple[dict[str, Callable[[], Coroutine[Any, Any, Any]]], NodeStatusLoop]:
    """name -> coroutine factory of every task that runs only while this replica leads, and the
    node status loop (whose clean pushes prove apiserver contact when election is off).
    `is_leading` fences the pod controller's writes (a replica frozen past its lease must not
    write when it wakes, before `leader-renewal` notices); `ssh_dialer` carries the kubelet
    API's exec, attach and port-forward (None: they answer 501)."""
    node_status = NodeStatusLoop(
        api=api,
        runpod=runpod,
        settings=settings,
        cluster_id=cluster_id,
        interval=settings.node_status_interval,
    )
    node_lease = NodeLeaseLoop(
        api=api, node_name=settings.node_name, status=node_status, interval=settings.node_status_interval
    )
    catalog = CatalogPublisher(
        api=api, runpod=runpod, namespace=settings.namespace, interval=settings.catalog_refresh_interval
    )
    provisioner = VolumeProvisioner(
        api=api,
        runpod=runpod,
        events=EventRecorder(api, component="runpod-kubelet-binder", host=settings.node_name),
        policy=settings.node_policy(),
        node_name=settings.node_name,
        cluster_id=cluster_id,
        fence=write_fence(is_leading),
        catalog=lambda: catalog.published,
    )
    tasks: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
        "node-status": node_status.run,
        "node-lease": node_lease.run,
        "catalog-publisher": catalog.run,
        "volume-provisioner": provisioner.run,
    }
    tasks.update(
        _pod_tasks(
            api=api,
            runpod=runpod,
            settings=settings,
            cluster_id=cluster_id,
            is_leading=is_leading,
            request_catalog_refresh=catalog.refresh_requested.set,
            published_catalog=lambda: catalog.published,
            ssh_keys=ssh_keys,
        )
    )
    return tasks, node_status


def _pod_tasks(
    *,
    api: Any,
    runpod: RunPodClient,
    settings: BinderSettings,
    cluster_id: str,
    is_leading: Callable[[], bool],
    request_catalog_refresh: Callable[[], None],
    published_catalog: Callable[[], Catalog | None],
    ssh_keys: SshKeyPair,
) -> dict[str, Callable[[], Coroutine[Any, Any, Any]]]:
    """The pod controller and the kubelet API, from their owners' packages."""
    # Finished pods' logs: filled by the controller's completion readers, served by the kubelet API.
    retained = RetainedLogs()
    controller = PodController(
        api=api,
        runpod=runpod,
        settings=settings,
        cluster_id=cluster_id,
        retained_logs=retained,
        is_leading=is_leading,
        request_catalog_refresh=request_catalog_refresh,
        catalog=published_catalog,
        ssh_public_key=ssh_keys.public_key,
        registries=RegistryCredentials(
            runpod=runpod,
            # Per cluster and node: each virtual node's binder sweeps only the credentials it
            # made, whose users it sees (another node's pods are not in its pod watch).
            cluster_id=f"{cluster_id}/{settings.node_name}",
            grace=timedelta(seconds=settings.sweep_grace_seconds),
            fence=write_fence(is_leading),
        ),
    )

    view = NodeView(
        pods=lambda: controller.reflector.items.values(),
        usage=lambda: controller.ctx.usage,
        started_at=datetime.now(UTC),
    )

    # exec/attach/port-forward: the binder's key, host keys pinned on the node's pods; pins are
    # written only while leading (the same fence as every other write of the leader).
    ssh_dialer = build_dialer(
        key_pair=ssh_keys,
        api=api,
        pods=lambda: controller.reflector.items.values(),
        fence=write_fence(is_leading),
    )

    async def kubelet_api() -> None:
        await serve_kubelet_api(
            api=api,
            runpod=runpod,
            settings=settings,
            retained_logs=retained,
            view=view,
            ssh_dialer=ssh_dialer,
        )

    return {"pod-controller": controller.run, "kubelet-api": kubelet_api}


async def supervise(
    factories: Mapping[str, Callable[[], Awaitable[Any]]],
) -> tuple[str, BaseException | None]:
    """Run the tasks until the first one ends; cancel the rest. Returns (name, its exception)."""
    tasks = {asyncio.ensure_future(factory()): name for name, factory in factories.items()}
    for task, name in tasks.items():
        task.set_name(name)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(iter(done))
    error = None if first.cancelled() else first.exception()
    return tasks[first], error


async def run_binder(settings: BinderSettings) -> int:
    """Run until a signal (exit 0), lost leadership or a dead leader task (non-zero)."""
    api = await load_api_client(settings.kubeconfig)
    elector = LeaderElector(
        api=api,
        namespace=settings.namespace,
        name=leader_lease_name(settings.node_name),
        identity=settings.identity,
        lease_duration=settings.lease_duration,
        renew_deadline=settings.renew_deadline,
        retry_period=settings.retry_period,
    )
    try:
        # Every RunPod write is fenced on the wire too: a request that waited inside the client
        # (pacing) while this replica was frozen is refused if leadership lapsed meanwhile.
        async with RunPodClient(
            api_key=settings.runpod_api_key.get_secret_value(),
            base_url=settings.runpod_base_url,
            before_write=write_fence(_is_leading(elector, settings)),
        ) as runpod:
            return await _run(api, runpod, settings, elector)
    finally:
        await api.close()


def _is_leading(elector: LeaderElector, settings: BinderSettings) -> Callable[[], bool]:
    # Without election this replica is the only writer by configuration.
    return elector.leading if settings.leader_election else always_leading


async def _run(api: Any, runpod: RunPodClient, settings: BinderSettings, elector: LeaderElector) -> int:
    health = HealthState(stale_after=max(60.0, 3 * settings.lease_duration))
    runner, port = await start_health_server(health, host=settings.health_host, port=settings.health_port)
    log.info("health endpoints up", extra={"port": port})
    try:
        cluster_id = await resolve_cluster_id(api, settings)
        # Before leading, so a standby that takes over has it: pods are created with its public
        # half, and the kubelet API's SSH sessions use it (binder.ssh).
        ssh_keys = await load_key_pair(api, settings)
        started = time.monotonic()
        health.contact = lambda: elector.last_contact or started
        health.role = Role.STANDBY
        log.info(
            "connected to the apiserver",
            extra={"node": settings.node_name, "identity": settings.identity, "cluster_id": cluster_id},
        )
        if settings.leader_election:
            await elector.acquire()
        health.role = Role.LEADER
        factories, node_status = leader_tasks(
            api=api,
            runpod=runpod,
            settings=settings,
            cluster_id=cluster_id,
            is_leading=_is_leading(elector, settings),
            ssh_keys=ssh_keys,
        )
        if not settings.leader_election:
            health.contact = lambda: node_status.last_clean_push or started
        if settings.leader_election:
            factories["leader-renewal"] = elector.hold
        try:
            name, error = await supervise(factories)
        except asyncio.CancelledError:
            health.role = Role.STOPPING
            await asyncio.shield(_release(elector))
            raise
        health.role = Role.STOPPING
        if isinstance(error, LeadershipLost):
            log.error("lost leadership; exiting so a standby takes over", extra={"error": str(error)})
            return EXIT_LOST_LEADERSHIP
        log.error(
            "essential task ended; exiting",
            extra={"task": name, "error": repr(error) if error else "returned"},
            exc_info=error,
        )
        # Another replica should take over without waiting out the lease.
        await asyncio.shield(_release(elector))
        return EXIT_LEADER_TASK_ENDED
    finally:
        await runner.cleanup()


async def _release(elector: LeaderElector) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RELEASE_TIMEOUT):
            await elector.release()


def run_until_signalled(settings: BinderSettings) -> int:
    """asyncio.run with SIGTERM/SIGINT turned into a clean cancellation (exit 0)."""

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stopping = False

        def stop(signame: str) -> None:
            nonlocal stopping
            if not stopping and task is not None:
                stopping = True
                log.info("received %s; shutting down", signame)
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig.name)
        try:
            return await run_binder(settings)
        except asyncio.CancelledError:
            if stopping:
                return EXIT_OK
            raise

    return asyncio.run(main())
