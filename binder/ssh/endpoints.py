"""Where to SSH for a pod, or why nobody can: a pure function of the two pods.

`ssh_endpoint(pod=..., runpod=..., public_key=...)` takes the Kubernetes pod (its opt-out
annotation, phase, recorded RunPod pod id) and the RunPod pod as last listed (status, ports,
env, `ssh.direct`, runtime ports) and answers an `SshEndpoint`, or a `Refusal` whose message
names the cause and what to do. Checked in this order, the first that applies wins:

    runpod.io/ssh: disabled               OPTED_OUT          remove it and recreate the pod
    phase Succeeded / Failed              FINISHED
    being deleted, RunPod pod terminated  FINISHED
    no RunPod pod yet, or not RUNNING     NOT_RUNNING        retry when the pod is Running
    RunPod EXITED / ERROR / TERMINATED    FINISHED
    no 22/tcp, or not the binder's key    NO_SSH_ACCESS      created without it: recreate
    ssh.direct reported                   -> SshEndpoint
    22/tcp mapped publicly, no ssh.direct NO_SSHD            the image runs no sshd
    22/tcp not mapped publicly            NO_PUBLIC_ADDRESS  RunPod gives it no public port

(The dialer adds the failures only a connection shows: refused = no sshd, key refused, host
key changed, timeouts: `dialing`.) Nothing here awaits or reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from binder.ssh.access import PUBLIC_KEY_ENV, SSH_PORT, has_key, ssh_opted_out
from binder.ssh.dialing import SshEndpoint, SshUnavailable, Unavailability, no_sshd
from contract.annotations import POD_ID, SSH, SSH_DISABLED, TERMINATED
from runpod_api.models import Pod

__all__ = [
    "Refusal",
    "runpod_ssh_endpoint",
    "ssh_endpoint",
]

_FINISHED_PHASES: Final = frozenset({"Succeeded", "Failed"})
_RETRY: Final = "retry when the pod is Running"
_NEEDS_RUNNING: Final = "exec, attach and port-forward need a running pod"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Unavailability
    message: str

    def error(self) -> SshUnavailable:
        return SshUnavailable(self.message, reason=self.reason)


def ssh_endpoint(
    *, pod: Mapping[str, Any], runpod: Pod | None, public_key: str | None = None
) -> SshEndpoint | Refusal:
    """`public_key`: the binder's `authorized_keys` line, to tell a RunPod pod created without
    it (before SSH was set up, or after the key Secret was replaced); None skips that check."""
    metadata = pod.get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    ref = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    phase = (pod.get("status") or {}).get("phase") or "Pending"

    if ssh_opted_out(annotations):
        return Refusal(
            Unavailability.OPTED_OUT,
            f"pod {ref} opted out of SSH with {SSH}={SSH_DISABLED}; remove the annotation and recreate the pod",
        )
    if phase in _FINISHED_PHASES:
        return Refusal(Unavailability.FINISHED, f"pod {ref} has finished (phase {phase}); {_NEEDS_RUNNING}")
    if metadata.get("deletionTimestamp") or annotations.get(TERMINATED):
        return Refusal(
            Unavailability.FINISHED,
            f"pod {ref} is being deleted: its RunPod pod is terminated or terminating",
        )
    if runpod is None:
        why = (
            f"RunPod does not list its pod {annotations[POD_ID]} yet"
            if annotations.get(POD_ID)
            else "no RunPod pod is created for it yet"
        )
        return Refusal(Unavailability.NOT_RUNNING, f"pod {ref} is not running yet ({why}); {_RETRY}")
    return runpod_ssh_endpoint(runpod, ref=ref, public_key=public_key)


def runpod_ssh_endpoint(runpod: Pod, *, ref: str, public_key: str | None = None) -> SshEndpoint | Refusal:
    """The RunPod half of `ssh_endpoint`: where `runpod` (the RunPod pod of Kubernetes pod `ref`,
    "namespace/name") lets us in, or why it cannot."""
    where = f"RunPod pod {runpod.id} of pod {ref}"
    if runpod.status == "TERMINATED":
        return Refusal(Unavailability.FINISHED, f"{where} is terminated; {_NEEDS_RUNNING}")
    if runpod.status == "EXITED":
        return Refusal(
            Unavailability.FINISHED, f"{where} is stopped (RunPod status EXITED); {_NEEDS_RUNNING}"
        )
    if runpod.status == "ERROR":
        return Refusal(
            Unavailability.FINISHED,
            f"{where} failed on its host (RunPod status ERROR; see `kubectl logs`); {_NEEDS_RUNNING}",
        )
    if runpod.status != "RUNNING":
        return Refusal(
            Unavailability.NOT_RUNNING,
            f"pod {ref} is not running yet (RunPod status {runpod.status}); {_RETRY}",
        )

    if SSH_PORT not in runpod.ports:
        return Refusal(
            Unavailability.NO_SSH_ACCESS,
            f"{where} was created without {SSH_PORT} in its ports, so it has no SSH address; recreate the pod",
        )
    if public_key and not has_key(runpod.env.get(PUBLIC_KEY_ENV, ""), public_key):
        return Refusal(
            Unavailability.NO_SSH_ACCESS,
            f"{where} was created without the binder's SSH key in {PUBLIC_KEY_ENV} (before SSH was set "
            "up, or under an earlier key Secret); recreate the pod",
        )

    direct = runpod.ssh.direct if runpod.ssh is not None else None
    if direct is not None and direct.host and direct.port:
        return SshEndpoint(
            runpod_pod_id=runpod.id,
            host=direct.host,
            port=direct.port,
            username=direct.username or "root",
            image=runpod.image,
            pod=ref,
        )
    mapped = runpod.runtime is not None and any(
        p.private == 22 and p.public is not None for p in runpod.runtime.ports
    )
    if mapped:
        endpoint = SshEndpoint(runpod_pod_id=runpod.id, host="", port=0, image=runpod.image, pod=ref)
        error = no_sshd(endpoint, detail="RunPod reports no ssh.direct for it although 22/tcp is mapped")
        return Refusal(error.reason, str(error))
    return Refusal(
        Unavailability.NO_PUBLIC_ADDRESS,
        f"{where} has no public address for {SSH_PORT} (RunPod maps no public port to it: its host may "
        "have no public IP); exec, attach and port-forward need one, so recreate the pod to have it "
        "placed again",
    )
