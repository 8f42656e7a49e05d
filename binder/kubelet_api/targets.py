"""Which RunPod pod's logs a `containerLogs/{namespace}/{pod}/{container}` request means.

Owns the checks on the Kubernetes pod (it exists, is bound to this node, names the container
that runs on RunPod, has a RunPod pod) and on the RunPod pod (its owner marker names this
Kubernetes pod's UID: a `runpod.io/pod-id` annotation alone is not proof, see
`binder.pods.naming`). A pod whose RunPod pod was terminated (`runpod.io/terminated`) has no
RunPod logs left: `resolve_target` refuses it, or, with `accept_terminated`, marks the target
so the caller can answer from retained lines (`gone_error` is the answer when none are). Pure: the caller fetches both pods. Failures are `LogRequestError`s with
the kubelet's wording where the kubelet has one, status 400 so kubectl shows the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from binder.kubelet_api.options import LogRequestError
from binder.pods.naming import owner_of
from contract.annotations import POD_ID, TERMINATED
from contract.containers import split_containers
from contract.plan import plan_drop_containers

__all__ = ["LogTarget", "check_ownership", "gone_error", "resolve_target"]


@dataclass(frozen=True, slots=True)
class LogTarget:
    runpod_pod_id: str
    pod_uid: str
    created_at: datetime | None
    # The RunPod pod was terminated: only retained lines can answer.
    terminated: bool = False


def _parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _names(containers: Any) -> list[str]:
    if not isinstance(containers, list):
        return []
    return [str(c.get("name")) for c in containers if isinstance(c, Mapping) and c.get("name")]


def _waiting_reason(pod: Mapping[str, Any], container: str) -> str:
    """The container's waiting reason as its status shows it (e.g. CreateContainerConfigError)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if isinstance(status, Mapping) and status.get("name") == container:
            reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
            if isinstance(reason, str) and reason:
                return reason
    return "ContainerCreating"


def gone_error(*, namespace: str, name: str, pod_id: str) -> LogRequestError:
    """The answer for a finished pod whose lines were not retained (e.g. the binder restarted)."""
    return LogRequestError(
        f"logs of pod {namespace}/{name} are no longer available: its RunPod pod {pod_id} "
        "was terminated, and RunPod keeps no logs after that"
    )


def resolve_target(
    pod: Mapping[str, Any] | None,
    *,
    namespace: str,
    name: str,
    container: str,
    node_name: str,
    accept_terminated: bool = False,
) -> LogTarget:
    """The RunPod pod behind `namespace/name`'s `container`, or `LogRequestError`."""
    if pod is None:
        raise LogRequestError(f'pods "{name}" not found', status=404)
    meta: Mapping[str, Any] = pod.get("metadata") or {}
    spec: Mapping[str, Any] = pod.get("spec") or {}
    if spec.get("nodeName") != node_name:
        raise LogRequestError(f"pod {namespace}/{name} is not on node {node_name}", status=404)
    annotations: Mapping[str, Any] = meta.get("annotations") or {}
    split = split_containers(spec, plan_drop_containers(annotations))
    main = _names(spec.get("containers"))
    if container not in main:
        others = _names(spec.get("initContainers")) + _names(spec.get("ephemeralContainers"))
        if container in others:
            raise LogRequestError(
                f'container "{container}" of pod "{name}" does not run on RunPod: '
                "init and ephemeral containers are not supported on a RunPod node"
            )
        raise LogRequestError(f'container "{container}" is not valid for pod "{name}"')
    if container != split.runs:
        # One RunPod pod runs one container: the first one the plan's drop list does not name.
        raise LogRequestError(
            f'container "{container}" of pod "{name}" does not run on RunPod: '
            f'a RunPod pod runs one container ("{split.runs}")'
        )
    pod_id = annotations.get(POD_ID)
    if not pod_id:
        raise LogRequestError(
            f'container "{container}" in pod "{name}" is waiting to start: {_waiting_reason(pod, container)}'
        )
    terminated = bool(annotations.get(TERMINATED))
    if terminated and not accept_terminated:
        raise gone_error(namespace=namespace, name=name, pod_id=str(pod_id))
    return LogTarget(
        runpod_pod_id=str(pod_id),
        pod_uid=str(meta.get("uid") or ""),
        created_at=_parse_time(meta.get("creationTimestamp")),
        terminated=terminated,
    )


def check_ownership(env: Mapping[str, str] | None, *, target: LogTarget, namespace: str, name: str) -> None:
    """Refuses when the RunPod pod's marker does not name this Kubernetes pod's UID."""
    owner = owner_of(env)
    if owner is None or owner.uid != target.pod_uid:
        raise LogRequestError(f"RunPod pod {target.runpod_pod_id} does not belong to pod {namespace}/{name}")
