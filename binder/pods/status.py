"""Pure mapping from what RunPod says (and what the binder saw) to a Kubernetes pod status.

One function builds the desired `status`, one computes the patch (None when nothing changed, so
a steady pod costs no API write), one computes the binder's state annotations. No I/O, no clock:
the observation time comes in as an argument.

Mapping (notes/runpod-api.md §9.4):

    no RunPod pod yet            Pending, container waiting ContainerCreating (message: why), or
                                 CreateContainerConfigError while a required Secret/ConfigMap
                                 reference is missing (as a kubelet says)
    PROVISIONING / STARTING      Pending, waiting ContainerCreating
    RUNNING                      Running, container running; Ready when every http port is up
                                 and every tcp port has a public mapping
    exit marker seen             Succeeded (code 0, Completed) / Failed (code, Error)
    ERROR, image pull failed     Failed, reason ErrImagePull, container waiting ErrImagePull with
                                 RunPod's system log line (read once, `diagnosing`)
    ERROR / EXITED unprompted    Failed; no exit code exists, reported as 1 with the reason
                                 (for ERROR: the last system log line, when there is one)
    failure (422, ProviderDeleted, ...)  Failed with the failure's reason and message
    deleted by the user          Failed, terminated exitCode 137 (killed from outside, as a
                                 kubelet reports a SIGKILLed container)
    unknown RunPod status        Unknown

One container runs (`contract.containers`): the first the plan's drop list does not name. Every
other container gets a status too, never silence: `waiting` with reason `NotRunOnRunPod` and a
message saying why, `ready: false`, so `kubectl get pod` shows READY 1/2 and the reason. Init
containers likewise (`initContainerStatuses`). The pod's Ready and ContainersReady follow the
container that runs (the user named the others as ones to leave out; a pod that could never be
Ready would be useless behind a Deployment), and say so: both carry reason
`ContainersNotRunOnRunPod` and a message naming the containers that do not run; Initialized
carries `InitContainersNotRunOnRunPod` when init containers were left out. Container statuses
are sorted by name, as the kubelet sorts them; init container statuses keep spec order.

Timestamps are real: container `startedAt` is RunPod's `startedAt`, or after a restart the
observation time minus RunPod's uptime; condition `lastTransitionTime` is the observation time of
the transition and is kept while the condition holds. `podIP` is only ever a real address of
the RunPod pod: its public IP, else its global-networking address.
Terminal phases are final: a Succeeded/Failed pod is never patched back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from binder.pods.containers import not_run_note, not_run_status
from binder.pods.diagnosing import Diagnosis
from contract.annotations import (
    CHOSEN_CPU_TYPE,
    CHOSEN_DATACENTER,
    CHOSEN_GPU_TYPE,
    CHOSEN_VCPU_COUNT,
    COST_PER_HOUR,
    PORT_MAPPINGS,
    PUBLIC_IP,
)
from contract.containers import split_containers
from contract.plan import Port, plan_drop_containers
from runpod_api.models import Pod

TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})
OUR_CONDITIONS: Final = ("Initialized", "ContainersReady", "Ready")
KILLED_EXIT_CODE: Final = 137
UNKNOWN_EXIT_CODE: Final = 1
PENDING_STATUSES: Final = frozenset({"PROVISIONING", "STARTING"})
CONTAINER_CREATING: Final = "ContainerCreating"
# The kubelet's waiting reason when a container's config (a required Secret/ConfigMap) is missing.
CREATE_CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


class Failure(BaseModel):
    """A terminal failure the binder decided: reason is CamelCase, message is for a person."""

    model_config = ConfigDict(frozen=True)

    reason: str
    message: str


class Observation(BaseModel):
    """What the binder knows about a pod beyond the RunPod pod object itself."""

    model_config = ConfigDict(frozen=True)

    observed_at: datetime
    restart_count: int = 0
    # From the completion wrapper's marker on the log stream.
    exit_code: int | None = None
    finished_at: datetime | None = None
    failure: Failure | None = None
    # Graceful deletion finished on RunPod's side.
    deleted: bool = False
    # Why RunPod reports ERROR, from its system log (`diagnosing`), when known.
    diagnosis: Diagnosis | None = None
    # Why a pod without a RunPod pod is still waiting (budget, missing Secret, ...).
    waiting_reason: str = "ContainerCreating"
    waiting_message: str | None = None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with second precision, as the API server stores times."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ports_ready(runpod: Pod, ports: Sequence[Port]) -> bool:
    """Every http port is up (listed in runtime.ports) and every tcp port has a public mapping."""
    if runpod.runtime is None:
        return False
    runtime = {p.private: p for p in runpod.runtime.ports}
    for port in ports:
        seen = runtime.get(port.number)
        if seen is None:
            return False
        if port.protocol == "tcp" and seen.public is None:
            return False
    return True


def count_restarts(*, previous_uptime: int | None, uptime: int | None, restart_count: int) -> int:
    """RunPod restarts exited containers silently; a falling uptime is the only sign of it."""
    if previous_uptime is not None and uptime is not None and uptime < previous_uptime:
        return restart_count + 1
    return restart_count


def build_status(
    *,
    pod: Mapping[str, Any],
    runpod: Pod | None,
    observation: Observation,
    ports: Sequence[Port],
) -> dict[str, Any]:
    """The full desired `status` for the fields the binder owns."""
    current: Mapping[str, Any] = pod.get("status") or {}
    now = observation.observed_at
    spec = pod.get("spec") or {}
    split = split_containers(spec, plan_drop_containers((pod.get("metadata") or {}).get("annotations") or {}))
    containers = spec.get("containers") or [{}]
    container = containers[split.runs_index or 0]
    previous = _container_status(current, container.get("name", ""))

    phase: Phase
    ready = False
    state: dict[str, Any]
    started_at = _started_at(runpod, observation, previous)
    reason: str | None = None
    message: str | None = None

    if observation.exit_code is not None:
        code = observation.exit_code
        phase = "Succeeded" if code == 0 else "Failed"
        state = {
            "terminated": _terminated(
                code=code,
                reason="Completed" if code == 0 else "Error",
                message=None,
                started_at=started_at,
                finished_at=observation.finished_at or now,
            )
        }
    elif observation.deleted:
        phase = "Failed"
        state = {
            "terminated": _terminated(
                code=KILLED_EXIT_CODE,
                reason="Terminated",
                message="RunPod pod terminated because the Kubernetes pod was deleted",
                started_at=started_at,
                finished_at=observation.finished_at or now,
            )
        }
    elif observation.failure is not None:
        phase, reason, message = "Failed", observation.failure.reason, observation.failure.message
        if started_at is not None:
            state = {
                "terminated": _terminated(
                    code=KILLED_EXIT_CODE,
                    reason=reason,
                    message=message,
                    started_at=started_at,
                    finished_at=observation.finished_at or now,
                )
            }
        else:
            state = {"waiting": {"reason": reason, "message": message}}
    elif runpod is None:
        phase = "Pending"
        state = {"waiting": _waiting(observation.waiting_reason, observation.waiting_message)}
    elif runpod.status in PENDING_STATUSES:
        phase = "Pending"
        state = {"waiting": _waiting("ContainerCreating", f"RunPod pod {runpod.id} is {runpod.status}")}
    elif runpod.status == "RUNNING":
        phase = "Running"
        ready = ports_ready(runpod, ports)
        state = {"running": {"startedAt": format_time(started_at or now)}}
    elif runpod.status == "ERROR" and observation.diagnosis is not None and observation.diagnosis.image_pull:
        # The container never started: waiting, as a kubelet shows a pull that failed.
        phase, reason, message = "Failed", observation.diagnosis.reason, observation.diagnosis.message
        state = {"waiting": {"reason": reason, "message": message}}
    elif runpod.status in ("ERROR", "EXITED"):
        phase = "Failed"
        reason = "ProviderError" if runpod.status == "ERROR" else "ProviderStopped"
        if runpod.status == "EXITED":
            message = "the RunPod pod was stopped outside Kubernetes (console, balance or maintenance)"
        elif observation.diagnosis is not None:
            message = observation.diagnosis.message
        else:
            message = "RunPod reports the pod ERROR; RunPod exposes no exit code or reason"
        state = {
            "terminated": _terminated(
                code=UNKNOWN_EXIT_CODE,
                reason=reason,
                message=message,
                started_at=started_at,
                finished_at=now,
            )
        }
    else:
        phase = "Unknown"
        state = {"waiting": _waiting("ContainerStatusUnknown", f"RunPod status {runpod.status!r}")}

    container_status: dict[str, Any] = {
        "name": container.get("name", ""),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": phase == "Running",
        "restartCount": observation.restart_count,
        "state": state,
    }
    if runpod is not None:
        container_status["containerID"] = f"runpod://{runpod.id}"

    ready_note = not_run_note(split)
    init_note = (
        (
            "InitContainersNotRunOnRunPod",
            "init containers not run on RunPod: " + ", ".join(split.not_run_init),
        )
        if split.not_run_init
        else None
    )
    conditions = [
        _condition(current, "Initialized", "True", now, init_note),
        _condition(current, "ContainersReady", "True" if ready else "False", now, ready_note),
        _condition(current, "Ready", "True" if ready else "False", now, ready_note),
    ]
    not_run = [
        not_run_status(c, runs=container.get("name", ""), named=c.get("name") in split.dropped)
        for c in spec.get("containers") or ()
        if isinstance(c, Mapping) and c.get("name") in split.not_run
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": _merge_conditions(current, conditions),
        "containerStatuses": sorted([container_status, *not_run], key=lambda c: str(c["name"])),
        "startTime": current.get("startTime") or format_time(now),
    }
    if split.not_run_init:
        status["initContainerStatuses"] = [
            not_run_status(c, runs=container.get("name", ""), named=c.get("name") in split.dropped_init)
            for c in spec.get("initContainers") or ()
            if isinstance(c, Mapping)
        ]
    # A real address of the RunPod pod (public, else global networking), never a made-up one.
    pod_ip = runpod.pod_ip if runpod is not None else None
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if reason is not None:
        status["reason"] = reason
        status["message"] = message
    return status


def status_patch(pod: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch of `status`, or None when the pod already shows `desired`.

    Terminal phases are final: once Succeeded/Failed nothing is patched any more.
    """
    current: Mapping[str, Any] = pod.get("status") or {}
    if current.get("phase") in TERMINAL_PHASES:
        return None
    changed = {
        key: value for key, value in desired.items() if _normalize(current.get(key)) != _normalize(value)
    }
    return {"status": changed} if changed else None


def state_annotations(runpod: Pod, ports: Sequence[Port]) -> dict[str, str]:
    """The binder's state annotations that mirror the RunPod pod (id and attempt are set elsewhere)."""
    annotations: dict[str, str] = {}
    if runpod.gpu is not None:
        annotations[CHOSEN_GPU_TYPE] = runpod.gpu.id
    if runpod.cpu is not None:
        annotations[CHOSEN_CPU_TYPE] = runpod.cpu.id
        if runpod.cpu.vcpu_count:
            annotations[CHOSEN_VCPU_COUNT] = str(runpod.cpu.vcpu_count)
    if runpod.data_center_id:
        annotations[CHOSEN_DATACENTER] = runpod.data_center_id
    if runpod.cost > 0:
        annotations[COST_PER_HOUR] = f"{runpod.cost:.4f}".rstrip("0").rstrip(".")
    if runpod.public_ip:
        annotations[PUBLIC_IP] = runpod.public_ip
    mappings = port_mappings(runpod, ports)
    if mappings:
        annotations[PORT_MAPPINGS] = mappings
    return annotations


def port_mappings(runpod: Pod, ports: Sequence[Port]) -> str:
    """`8888/http=https://<id>-8888.proxy.runpod.net,22/tcp=1.2.3.4:34446` for the ports reachable now."""
    if runpod.runtime is None:
        return ""
    runtime = {p.private: p for p in runpod.runtime.ports}
    parts: list[str] = []
    for port in ports:
        seen = runtime.get(port.number)
        if seen is None:
            continue
        if port.protocol == "http":
            parts.append(f"{port}=https://{runpod.id}-{port.number}.proxy.runpod.net")
        elif seen.public is not None and (seen.ip or runpod.public_ip):
            parts.append(f"{port}={seen.ip or runpod.public_ip}:{seen.public}")
    return ",".join(parts)


def is_settling(runpod: Pod | None) -> bool:
    """Is this RunPod pod in a state that changes soon (the sync loop then ticks fast)?"""
    return runpod is not None and runpod.status in PENDING_STATUSES


def _started_at(runpod: Pod | None, observation: Observation, previous: Mapping[str, Any]) -> datetime | None:
    prior = ((previous.get("state") or {}).get("running") or {}).get("startedAt") or (
        (previous.get("state") or {}).get("terminated") or {}
    ).get("startedAt")
    if prior and previous.get("restartCount", 0) == observation.restart_count:
        return _parse_time(prior)
    if runpod is None:
        return _parse_time(prior) if prior else None
    if observation.restart_count > 0 and runpod.runtime is not None and runpod.runtime.uptime is not None:
        # After a silent restart RunPod's startedAt still names the first start.
        return observation.observed_at - timedelta(seconds=runpod.runtime.uptime)
    return runpod.started_at


def _terminated(
    *, code: int, reason: str, message: str | None, started_at: datetime | None, finished_at: datetime
) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "finishedAt": format_time(finished_at),
    }
    if message:
        terminated["message"] = message
    if started_at is not None:
        terminated["startedAt"] = format_time(started_at)
    return terminated


def _waiting(reason: str, message: str | None) -> dict[str, Any]:
    return {"reason": reason, "message": message} if message else {"reason": reason}


def _container_status(current: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for status in current.get("containerStatuses") or ():
        if status.get("name") == name:
            return dict(status)
    return {}


def _condition(
    current: Mapping[str, Any], kind: str, value: str, now: datetime, note: tuple[str, str] | None = None
) -> dict[str, Any]:
    """A condition; its lastTransitionTime is kept while its status holds. `note` = (reason, message)."""
    built: dict[str, Any] = {"type": kind, "status": value, "lastTransitionTime": format_time(now)}
    for condition in current.get("conditions") or ():
        if condition.get("type") == kind and condition.get("status") == value:
            built.pop("lastTransitionTime")
            if condition.get("lastTransitionTime"):
                built["lastTransitionTime"] = condition["lastTransitionTime"]
            break
    if note is not None:
        built["reason"], built["message"] = note
    return built


def _merge_conditions(current: Mapping[str, Any], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep conditions others own (PodScheduled, DisruptionTarget) as they are, ours after them."""
    others = [dict(c) for c in current.get("conditions") or () if c.get("type") not in OUR_CONDITIONS]
    return others + ours


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _normalize(value: Any) -> Any:
    """Drop null fields: the API server echoes `lastProbeTime: null` that we never send."""
    if isinstance(value, Mapping):
        return {k: _normalize(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value
