"""Which sshd an `exec`, `attach` or `portForward` request reaches, or why none can be reached.

The kubelet routes (`pkg/kubelet/server/server.go`):
    /exec/{namespace}/{pod}[/{uid}]/{container}?command=..&input=1&output=1&error=1&tty=1
    /attach/{namespace}/{pod}[/{uid}]/{container}?input=1&output=1&error=1&tty=1
    /portForward/{namespace}/{pod}[/{uid}]
`parse_stream_path` reads them. `check_pod` then judges the Kubernetes pod (exists, bound to
this node, the container is the one RunPod runs, not finished, not opted out of SSH, has a
RunPod pod) and `stream_target` the RunPod pod (ours, RUNNING, reporting `ssh.direct`), giving
the `SshEndpoint` to dial. Every refusal is a `StreamRefusal` whose message names the cause and
what to do; it is answered before any upgrade, so kubectl shows it ("unable to upgrade
connection: ...").

Pure: the caller fetches both pods. Where a RunPod pod's sshd is, or why it has none, is
`binder.ssh.endpoints.runpod_ssh_endpoint`'s judgement; the opt-out annotation is
`contract.annotations.SSH` (`runpod.io/ssh: disabled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote

from binder.pods.naming import owner_of
from binder.ssh.dialing import SshEndpoint
from binder.ssh.endpoints import Refusal, runpod_ssh_endpoint
from contract.annotations import POD_ID, SSH, SSH_DISABLED, TERMINATED
from contract.containers import split_containers
from contract.plan import plan_drop_containers
from runpod_api.models import Pod

__all__ = [
    "SSH_OPT_OUT",
    "StreamPath",
    "StreamPod",
    "StreamRefusal",
    "check_pod",
    "parse_stream_path",
    "stream_target",
]

Kind = Literal["exec", "attach", "portForward"]
# `runpod.io/ssh: disabled`: the binder added neither its key nor 22/tcp (`binder.ssh.access`).
SSH_OPT_OUT: Final = (SSH, SSH_DISABLED)
_VERB: Final[Mapping[str, str]] = {
    "exec": "exec into",
    "attach": "attach to",
    "portForward": "port-forward to",
}
_COMMAND: Final[Mapping[str, str]] = {
    "exec": "kubectl exec",
    "attach": "kubectl attach",
    "portForward": "kubectl port-forward",
}


class StreamRefusal(Exception):
    """The request cannot be served; answer `status` with `message` before upgrading."""

    def __init__(self, message: str, *, status: int = 400, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class StreamPath:
    kind: Kind
    namespace: str
    pod: str
    uid: str | None
    container: str | None  # None for portForward


@dataclass(frozen=True, slots=True)
class StreamPod:
    """What the Kubernetes pod says: its RunPod pod and its UID (the owner marker to match)."""

    runpod_pod_id: str
    pod_uid: str


def parse_stream_path(path: str) -> StreamPath | None:
    """The route of a streaming request, None when the path is none of them."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    kind, args = parts[0], parts[1:]
    if any(not p for p in args):
        return None
    if kind in ("exec", "attach") and len(args) in (3, 4):
        uid = args[2] if len(args) == 4 else None
        return StreamPath(kind=kind, namespace=args[0], pod=args[1], uid=uid, container=args[-1])  # type: ignore[arg-type]
    if kind == "portForward" and len(args) in (2, 3):
        return StreamPath(
            kind="portForward",
            namespace=args[0],
            pod=args[1],
            uid=args[2] if len(args) == 3 else None,
            container=None,
        )
    return None


def _names(containers: Any) -> list[str]:
    if not isinstance(containers, list):
        return []
    return [str(c.get("name")) for c in containers if isinstance(c, Mapping) and c.get("name")]


def check_pod(pod: Mapping[str, Any] | None, route: StreamPath, *, node_name: str) -> StreamPod:
    """The RunPod pod behind the Kubernetes pod of `route`, or `StreamRefusal`."""
    name, namespace, verb = route.pod, route.namespace, _VERB[route.kind]
    full = f"{namespace}/{name}"
    if pod is None:
        raise StreamRefusal(f'pods "{name}" not found', status=404)
    meta: Mapping[str, Any] = pod.get("metadata") or {}
    spec: Mapping[str, Any] = pod.get("spec") or {}
    status: Mapping[str, Any] = pod.get("status") or {}
    if spec.get("nodeName") != node_name:
        raise StreamRefusal(f"pod {full} is not on node {node_name}", status=404)
    if route.uid is not None and route.uid != meta.get("uid"):
        raise StreamRefusal(f"pod {full} with UID {route.uid} not found (it was replaced)", status=404)
    annotations: Mapping[str, Any] = meta.get("annotations") or {}
    if route.container is not None:
        split = split_containers(spec, plan_drop_containers(annotations))
        if route.container not in _names(spec.get("containers")):
            others = _names(spec.get("initContainers")) + _names(spec.get("ephemeralContainers"))
            if route.container in others:
                raise StreamRefusal(
                    f'cannot {verb} container "{route.container}" of pod {full}: init and ephemeral '
                    "containers do not run on a RunPod node"
                )
            raise StreamRefusal(f'container "{route.container}" is not valid for pod "{name}"')
        if route.container != split.runs:
            raise StreamRefusal(
                f'cannot {verb} container "{route.container}" of pod {full}: it does not run on RunPod '
                f'(a RunPod pod runs one container, "{split.runs}")'
            )
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed") or annotations.get(TERMINATED):
        shown = phase if phase in ("Succeeded", "Failed") else "finished"
        raise StreamRefusal(
            f"cannot {verb} pod {full}: it has completed (phase {shown}) and its RunPod pod was "
            f"terminated; {_COMMAND[route.kind]} reaches running pods only (kubectl logs {name} "
            "still shows its output)"
        )
    key, disabled = SSH_OPT_OUT
    if str(annotations.get(key, "")).strip() == disabled:
        raise StreamRefusal(
            f"cannot {verb} pod {full}: it opted out of SSH ({key}: {disabled}), so its RunPod pod "
            f"has no SSH access; remove the annotation and recreate the pod to use {_COMMAND[route.kind]}"
        )
    pod_id = annotations.get(POD_ID)
    if not pod_id:
        raise StreamRefusal(
            f"cannot {verb} pod {full}: it is not running yet (its RunPod pod is still being "
            "created); retry once kubectl get pod shows it Running"
        )
    return StreamPod(runpod_pod_id=str(pod_id), pod_uid=str(meta.get("uid") or ""))


_NOT_RUNNING: Final[Mapping[str, str]] = {
    "PROVISIONING": "is still being provisioned; retry once kubectl get pod shows it Running",
    "STARTING": "is still starting; retry once kubectl get pod shows it Running",
    "EXITED": "has exited (its container is not running); kubectl logs shows its output",
    "ERROR": "failed on RunPod; kubectl describe pod shows why",
    "TERMINATED": "was terminated",
}


def stream_target(runpod_pod: Pod, target: StreamPod, route: StreamPath) -> SshEndpoint:
    """Where the pod's sshd listens (its `ssh.direct`), or `StreamRefusal`."""
    full, verb = f"{route.namespace}/{route.pod}", _VERB[route.kind]
    owner = owner_of(runpod_pod.env)
    if owner is None or owner.uid != target.pod_uid:
        raise StreamRefusal(f"RunPod pod {target.runpod_pod_id} does not belong to pod {full}")
    status = runpod_pod.status or "UNKNOWN"
    if status != "RUNNING":
        reason = _NOT_RUNNING.get(status, f"is {status}, not RUNNING")
        raise StreamRefusal(f"cannot {verb} pod {full}: its RunPod pod {target.runpod_pod_id} {reason}")
    direct = runpod_pod.ssh.direct if runpod_pod.ssh is not None else None
    if direct is not None and direct.host and direct.port:
        return SshEndpoint(
            runpod_pod_id=target.runpod_pod_id,
            host=direct.host,
            port=direct.port,
            username=direct.username or "root",
        )
    # Why there is none (no 22/tcp, an image without sshd, no public port): the SSH plumbing's
    # judgement (`binder.ssh.endpoints`).
    found = runpod_ssh_endpoint(runpod_pod, ref=full)
    why = found.message if isinstance(found, Refusal) else "it reports none"
    raise StreamRefusal(
        f"cannot {verb} pod {full}: RunPod reports no SSH endpoint for its pod {target.runpod_pod_id}"
        f" (ssh.direct): {why}"
    )
