"""Status sync of one pod against the latest RunPod list, and the per-tick bookkeeping.

The sync loop (in `controller`) makes ONE `list_pods()` call per tick and stores it as the
`Snapshot`; this module never lists. Per pod it reads the pod's RunPod pod from the snapshot,
and calls RunPod for that pod only when the list does not show a recorded id (one GET to tell
"not visible yet" from "gone", then never again for that pod), and once when the pod turns
ERROR (one read of its system log for the reason, `diagnosing`).

Per pod and tick at most one annotation patch and one status patch, each only when something
changed. Decisions come from `status` (pure); this module applies them and records Events for
transitions a person wants in `kubectl describe pod`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from binder.pods.completion import ExitWatcher, wants_wrapper
from binder.pods.context import PodContext
from binder.pods.decisions import GONE_STATUSES
from binder.pods.deleting import terminate_runpod
from binder.pods.diagnosing import Diagnosis, diagnose_error, read_system_tail
from binder.pods.naming import owned_by_pod
from binder.pods.state import pod_annotations
from binder.pods.status import (
    TERMINAL_PHASES,
    Failure,
    Observation,
    build_status,
    count_restarts,
    state_annotations,
    status_patch,
)
from contract.annotations import EXIT_CODE, POD_ID, TERMINATED
from contract.containers import running_container
from contract.plan import plan_drop_containers, plan_ports
from runpod_api.errors import RunPodError, RunPodNotFound
from runpod_api.models import Pod

log = logging.getLogger(__name__)


async def sync_pod(ctx: PodContext, pod: Mapping[str, Any], watcher: ExitWatcher, key: str) -> float | None:
    """Mirror RunPod into the pod's status; finish it when its exit code is known."""
    metadata = pod["metadata"]
    uid: str = metadata["uid"]
    known = ctx.known_for(uid)
    annotations = known.effective(pod_annotations(pod))
    ports = plan_ports(annotations)
    container = running_container(pod, plan_drop_containers(annotations))
    snapshot = ctx.snapshot
    if snapshot is None:
        return 1.0
    pod_id = annotations.get(POD_ID)
    runpod: Pod | None = snapshot.by_id.get(pod_id) if pod_id else None

    if pod_id and runpod is None and known.failure is None and known.exit_code is None:
        recorded_at = known.id_recorded_at
        if recorded_at is not None and snapshot.taken_at - recorded_at < ctx.visibility_window:
            return None  # just created: the list may not show it yet
        try:
            runpod = await ctx.runpod.get_pod(pod_id)
        except RunPodNotFound:
            runpod = None
        if runpod is None or runpod.status in GONE_STATUSES:
            known.failure = Failure(
                reason="ProviderDeleted",
                message=f"RunPod pod {pod_id} was terminated outside Kubernetes",
            )
            await ctx.event(pod, "Warning", "ProviderDeleted", known.failure.message)
            runpod = None

    if runpod is not None and not owned_by_pod(runpod.env, cluster_id=ctx.cluster_id, uid=uid):
        known.failure = Failure(
            reason="ForeignPodId",
            message=f"runpod.io/pod-id names RunPod pod {runpod.id}, which this cluster did not create for this pod",
        )
        await ctx.event(pod, "Warning", "ForeignPodId", known.failure.message + "; it is not touched")
        runpod = None

    # Never two billing: extra RunPod pods carrying this pod's UID are terminated.
    if runpod is not None:
        extras = [p for p in snapshot.ours(uid) if p.id != runpod.id and p.status not in GONE_STATUSES]
        for extra in extras:
            if extra.id in known.deleted_ids:
                continue
            ctx.fence()  # only the leader terminates (see PodContext.fence)
            if await ctx.runpod.delete_pod(extra.id):
                ctx.metrics.terminated("duplicate")
            known.deleted_ids.add(extra.id)
            await ctx.event(pod, "Warning", "DuplicateTerminated", f"terminated extra RunPod pod {extra.id}")

    if (
        runpod is not None
        and runpod.status == "ERROR"
        and not known.diagnosed
        and known.failure is None
        and known.exit_code is None
        and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
    ):
        # Once per pod: RunPod's only clue to an ERROR is the pod's system log (`diagnosing`).
        known.diagnosed = True
        lines = await read_system_tail(ctx.runpod, runpod.id)
        known.diagnosis = diagnose_error(lines, image=container.get("image", ""))

    exit_text = annotations.get(EXIT_CODE)
    if known.exit_code is None and exit_text is not None and exit_text.lstrip("-").isdigit():
        known.exit_code = int(exit_text)

    uptime = runpod.runtime.uptime if runpod is not None and runpod.runtime is not None else None
    current_restarts = _restart_count(pod, container.get("name", ""))
    restarts = count_restarts(
        previous_uptime=known.last_uptime,
        uptime=uptime,
        restart_count=max(current_restarts, known.restart_count or 0),
    )
    if restarts > current_restarts:
        await ctx.event(pod, "Warning", "Restarted", "RunPod restarted the container (its uptime went back)")
    known.restart_count = restarts
    if uptime is not None:
        known.last_uptime = uptime

    observation = Observation(
        observed_at=snapshot.taken_at if runpod is not None else ctx.clock(),
        restart_count=restarts,
        exit_code=known.exit_code,
        finished_at=known.finished_at,
        failure=known.failure,
        diagnosis=known.diagnosis,
        waiting_reason=known.waiting_reason,
        waiting_message=known.waiting_message,
    )
    desired = build_status(pod=pod, runpod=runpod, observation=observation, ports=ports)

    changes: dict[str, str | None] = {k: v for k, v in known.annotations.items()}
    if runpod is not None:
        changes.update(state_annotations(runpod, ports))
    if known.exit_code is not None:
        changes[EXIT_CODE] = str(known.exit_code)
    known.wrote(changes)
    cached = pod_annotations(pod)
    annotation_changes = {k: v for k, v in changes.items() if cached.get(k) != v}

    # One write per pod and tick: the status subresource also takes the binder's annotations,
    # so an exit code and the terminal status it causes land atomically.
    status_changes = status_patch(pod, desired)
    patch: dict[str, Any] = dict(status_changes or {})
    if annotation_changes:
        patch["metadata"] = {"annotations": annotation_changes}
    if patch:
        ctx.fence()
        await ctx.kube.patch_status(metadata["namespace"], metadata["name"], patch, uid=uid)
    if status_changes is not None:
        await _transition_events(ctx, pod, desired, runpod, known.diagnosis)

    restart_policy = (pod.get("spec") or {}).get("restartPolicy")
    if (
        runpod is not None
        and runpod.status == "RUNNING"
        and known.exit_code is None
        and wants_wrapper(restart_policy=restart_policy, container=container)
    ):
        watcher.watch(key, pod_id=runpod.id, uid=uid)

    if desired["phase"] in TERMINAL_PHASES:
        watcher.forget(key)
        return await finish_terminal(ctx, pod)
    return None


async def finish_terminal(ctx: PodContext, pod: Mapping[str, Any]) -> float | None:
    """A Succeeded/Failed pod keeps no RunPod pod: terminate it (the Kubernetes pod stays for Jobs)."""
    uid: str = pod["metadata"]["uid"]
    known = ctx.known_for(uid)
    annotations = known.effective(pod_annotations(pod))
    snapshot = ctx.snapshot
    live_ours = [
        p
        for p in (snapshot.ours(uid) if snapshot is not None else ())
        if p.status not in GONE_STATUSES and p.id not in known.deleted_ids
    ]
    if TERMINATED in annotations and not live_ours:
        return None
    if not annotations.get(POD_ID) and not live_ours:
        known.terminated = True
        return None
    why = "completed" if known.exit_code == 0 else "failed"
    try:
        await terminate_runpod(ctx, pod, why=why)
    except RunPodError as exc:
        await ctx.event(
            pod, "Warning", "ProviderDeleteFailed", f"terminating on RunPod failed, will retry: {exc.detail}"
        )
        return 10.0
    await ctx.event(pod, "Normal", "Terminated", "RunPod pod terminated: the workload finished")
    return None


def record_exit(ctx: PodContext, uid: str, code: int) -> None:
    """Called by the exit watcher (via the controller) when the marker shows up."""
    known = ctx.known_for(uid)
    if known.exit_code is None:
        known.exit_code = code
        known.finished_at = ctx.clock()


async def _transition_events(
    ctx: PodContext,
    pod: Mapping[str, Any],
    desired: Mapping[str, Any],
    runpod: Pod | None,
    diagnosis: Diagnosis | None,
) -> None:
    before = (pod.get("status") or {}).get("phase")
    after = desired.get("phase")
    if before == after:
        if _ready(desired) and not _ready(pod.get("status") or {}):
            await ctx.event(pod, "Normal", "Ready", "every port is reachable")
        return
    if after == "Running" and runpod is not None:
        await ctx.event(pod, "Normal", "Started", f"RunPod pod {runpod.id} is running")
    elif after == "Succeeded":
        await ctx.event(pod, "Normal", "Completed", "the container exited with code 0")
    elif after == "Failed" and diagnosis is not None and desired.get("reason") == diagnosis.reason:
        await ctx.event(pod, "Warning", diagnosis.event_reason, diagnosis.event_message)
    elif after == "Failed":
        message = desired.get("message") or _exit_message(desired)
        await ctx.event(pod, "Warning", desired.get("reason") or "Failed", message)


def _exit_message(status: Mapping[str, Any]) -> str:
    for container in status.get("containerStatuses") or ():
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return f"the container exited with code {terminated.get('exitCode')}"
    return "the pod failed"


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())


def _restart_count(pod: Mapping[str, Any], name: str) -> int:
    """The restart count the pod shows for the container that runs (statuses are sorted by name)."""
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        if container.get("name") == name:
            return int(container.get("restartCount") or 0)
    return 0
