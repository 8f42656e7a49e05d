"""Termination on RunPod and graceful deletion of the Kubernetes pod.

`terminate_runpod` is the only place the pod lifecycle DELETEs a RunPod pod of a live
Kubernetes pod. It terminates every RunPod pod whose marker names this cluster AND this pod's
UID (the recorded id, duplicates, late-surfacing attempts). A recorded `runpod.io/pod-id` that
the list does not show is fetched and its marker checked first: a user could forge the
annotation to point at someone else's pod, which is then never touched. DELETE answering 404
counts as done. Terminating is never "stop": a stopped pod still bills its disk.

`finish_deletion` runs the graceful-delete contract (notes/kubernetes.md §11): RunPod DELETE ->
`runpod.io/terminated` -> terminal status -> final delete with grace 0 and a UID precondition
(404/409 tolerated). While a RunPod pod may still exist the Kubernetes pod stays Terminating: a
failed DELETE is retried with backoff, never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from binder.pods.completion import ExitWatcher
from binder.pods.context import PodContext
from binder.pods.decisions import GONE_STATUSES
from binder.pods.kubeapi import PodGone
from binder.pods.naming import owned_by_pod
from binder.pods.state import pod_annotations
from binder.pods.status import TERMINAL_PHASES, Observation, build_status, format_time, status_patch
from contract.annotations import POD_ID, TERMINATED
from contract.plan import plan_ports
from runpod_api.errors import RunPodError, RunPodNotFound
from runpod_api.models import Pod

log = logging.getLogger(__name__)

DELETE_RETRY: Final = 10.0


async def terminate_runpod(ctx: PodContext, pod: Mapping[str, Any], *, why: str) -> None:
    """Terminate every RunPod pod this cluster created for `pod`. Raises RunPodError to retry."""
    metadata = pod["metadata"]
    uid: str = metadata["uid"]
    known = ctx.known_for(uid)
    annotations = known.effective(pod_annotations(pod))
    snapshot = ctx.snapshot
    targets: dict[str, Pod] = {}
    if snapshot is not None:
        targets = {p.id: p for p in snapshot.ours(uid) if p.status not in GONE_STATUSES}
    pod_id = annotations.get(POD_ID)
    if pod_id and pod_id not in targets and pod_id not in known.deleted_ids and TERMINATED not in annotations:
        try:
            found: Pod | None = await ctx.runpod.get_pod(pod_id)
        except RunPodNotFound:
            found = None
        if found is not None and found.status not in GONE_STATUSES:
            if owned_by_pod(found.env, cluster_id=ctx.cluster_id, uid=uid):
                targets[pod_id] = found
            else:
                await ctx.event(
                    pod,
                    "Warning",
                    "ForeignPodId",
                    f"runpod.io/pod-id names RunPod pod {pod_id}, which this cluster did not create for "
                    "this pod; it is not touched",
                )
    for target in targets:
        if target in known.deleted_ids:
            continue
        # Only the leader terminates (see `PodContext.fence`): a deposed replica's DELETE could
        # race the new leader's view of the pod.
        ctx.fence()
        deleted = await ctx.runpod.delete_pod(target)
        known.deleted_ids.add(target)
        if deleted:
            ctx.metrics.terminated(why)
            log.info(
                "terminated RunPod pod %s of %s/%s (%s)", target, metadata["namespace"], metadata["name"], why
            )
    ctx.ledger.release(uid)
    known.terminated = True
    if TERMINATED not in annotations:
        await ctx.annotate(pod, {TERMINATED: format_time(ctx.clock())})


async def finish_deletion(
    ctx: PodContext, pod: Mapping[str, Any], watcher: ExitWatcher, key: str
) -> float | None:
    metadata = pod["metadata"]
    uid: str = metadata["uid"]
    try:
        await terminate_runpod(ctx, pod, why="deleted")
    except RunPodError as exc:
        await ctx.event(
            pod, "Warning", "ProviderDeleteFailed", f"terminating on RunPod failed, will retry: {exc.detail}"
        )
        return DELETE_RETRY
    except PodGone:
        ctx.known.pop(uid, None)
        return None
    watcher.forget(key)
    known = ctx.known_for(uid)
    try:
        if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            ports = plan_ports(known.effective(pod_annotations(pod)))
            observation = Observation(
                observed_at=ctx.clock(),
                restart_count=known.restart_count or 0,
                exit_code=known.exit_code,
                finished_at=known.finished_at,
                deleted=True,
            )
            desired = build_status(pod=pod, runpod=None, observation=observation, ports=ports)
            patch = status_patch(pod, desired)
            if patch is not None:
                ctx.fence()
                await ctx.kube.patch_status(metadata["namespace"], metadata["name"], patch, uid=uid)
        await ctx.event(pod, "Normal", "Terminated", "RunPod pod terminated; removing the pod")
        ctx.fence()
        await ctx.kube.delete_final(metadata["namespace"], metadata["name"], uid=uid)
    except PodGone:
        pass
    ctx.known.pop(uid, None)
    return None
