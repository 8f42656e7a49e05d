"""What the binder says about containers RunPod does not run (one container per RunPod pod).

`contract.containers.split_containers` decides which container runs; this module words the rest
for a person: the container status of each container left out (`waiting`, reason
`NotRunOnRunPod`, never ready), the note on the Ready/ContainersReady conditions, the Event at
create time and the failure of a pod whose extra containers nobody named. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from contract.annotations import DROP_CONTAINERS
from contract.containers import ContainerSplit

__all__ = ["NOT_RUN_REASON", "not_run_message", "not_run_note", "not_run_status", "unsupported_containers"]

# The waiting reason of a container RunPod does not run.
NOT_RUN_REASON: Final = "NotRunOnRunPod"


def not_run_status(container: Mapping[str, Any], *, runs: str, named: bool) -> dict[str, Any]:
    """A container RunPod does not run: waiting for ever, and saying why."""
    why = f"not run on RunPod: a RunPod pod runs one container ({runs})"
    if named:
        why += f"; left out by {DROP_CONTAINERS}"
    return {
        "name": container.get("name", ""),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": NOT_RUN_REASON, "message": why}},
    }


def not_run_message(split: ContainerSplit) -> str:
    """For the Event when the RunPod pod is created: what of the pod does not run."""
    parts = []
    if split.not_run:
        parts.append("containers " + ", ".join(split.not_run))
    if split.not_run_init:
        parts.append("init containers " + ", ".join(split.not_run_init))
    return (
        f"{' and '.join(parts)} do not run on RunPod (left out by {DROP_CONTAINERS}); "
        f"a RunPod pod runs one container: {split.runs}"
    )


def unsupported_containers(split: ContainerSplit) -> str:
    """Why a pod whose containers admission should have refused is not run at all."""
    if split.runs is None:
        return f"{DROP_CONTAINERS} leaves no container to run; a RunPod pod runs exactly one"
    return (
        f"a RunPod pod runs exactly one container; {', '.join(split.extra + split.extra_init)} "
        f"would not run and {DROP_CONTAINERS} does not name them; recreate the pod with them named or removed"
    )


def not_run_note(split: ContainerSplit) -> tuple[str, str] | None:
    """Why Ready speaks for one container only, when others do not run."""
    others = split.not_run + split.not_run_init
    if not others or split.runs is None:
        return None
    return (
        "ContainersNotRunOnRunPod",
        f"only {split.runs} runs on RunPod (one container per pod); not run: {', '.join(others)}",
    )
