"""What of a pod's shape RunPod cannot run, said at admission: extra containers and volumes.

A RunPod pod runs one container (`contract.containers` decides which). A pod with more
containers, or with init containers, is refused with a message naming them and saying what to
do, unless `runpod.io/drop-containers` names every one of them; never a silent Ready for a
sidecar that never runs. The check is made twice:

- in `mutate`, to fail fast on the containers the pod already has (a name in the list that is
  not in the pod yet is accepted there: a later webhook may inject it);
- in `validate` on CREATE, on the final pod after every mutating webhook (sidecar injectors add
  containers late, and mutating webhooks run before validating ones): this is the check that
  counts. Names that are no container of the final pod are refused there.

Volumes are not mounted on RunPod: each one gets an admission warning naming it, except the
service-account token volume the API server adds to every pod (`kube-api-access-*`), which a
RunPod pod could not use anyway (the cluster API is not reachable from it).

Pure: no I/O. Messages are bounded (`problems`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from contract import annotations as keys
from contract.containers import ContainerSplit
from contract.policy import GPU_RESOURCE
from webhook.problems import Denial, Problem, clip, name_items

# Up to this many volumes get a warning each; more share one.
_VOLUME_WARNINGS: Final = 3
_HINT_CHARS: Final = 160
_TOKEN_VOLUME_PREFIX: Final = "kube-api-access-"


def check_containers(split: ContainerSplit, *, final: bool, origin: str) -> None:
    """Raise a `Denial` unless exactly one container runs and the drop list covers the rest.

    `final` is the validating stage (the pod as it will be stored): only there are names in
    the drop list that match no container refused.
    """
    problems: list[Problem] = []
    if split.runs is None and (split.dropped or split.dropped_init):
        problems.append(
            Problem(
                field=keys.DROP_CONTAINERS,
                value=",".join(split.dropped + split.dropped_init),
                values=split.dropped + split.dropped_init,
                reason="names every container of the pod, but one must run on RunPod",
                allowed=f"names of the containers to leave out, all but one of {name_items(split.dropped)}",
                origin=origin,
            )
        )
    if final and split.unknown:
        problems.append(
            Problem(
                field=keys.DROP_CONTAINERS,
                value=",".join(split.unknown),
                values=split.unknown,
                reason="names no container or init container of the pod",
                allowed="names of the pod's containers and init containers: "
                + name_items(split.app + split.init),
                origin=origin,
            )
        )
    if problems:
        raise Denial.of(problems)
    if split.extra or split.extra_init:
        raise Denial(_too_many(split, final=final))


def _too_many(split: ContainerSplit, *, final: bool) -> str:
    shape = _count(len(split.app), "container") + f" ({name_items(split.app)})"
    if split.init:
        shape += " and " + _count(len(split.init), "init container") + f" ({name_items(split.init)})"
    left_out = split.extra + split.extra_init
    hint = clip(",".join(split.dropped + split.dropped_init + left_out), _HINT_CHARS)
    late = (
        " Containers added by other admission webhooks (sidecar injectors) count too: disable the "
        "injection for this pod or name them."
        if final
        else ""
    )
    return (
        f"spec.containers: a RunPod pod runs exactly one container, and this pod has {shape}: "
        f"{split.runs} would run; {name_items(left_out)} would not. Fold their work into "
        f'{split.runs}\'s image, remove them, or let RunPod leave them out: {keys.DROP_CONTAINERS}: "{hint}".'
        + late
    )


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def dropped_gpu_warnings(spec: Mapping[str, Any], split: ContainerSplit) -> tuple[str, ...]:
    """A dropped container's GPU limit still counts toward the pod's GPUs (the scheduler counts
    it against the node): say so rather than rent GPUs silently."""
    warnings: list[str] = []
    for field, names in (("containers", split.dropped), ("initContainers", split.dropped_init)):
        for container in _list(spec.get(field)):
            if not isinstance(container, Mapping) or container.get("name") not in names:
                continue
            limits = (container.get("resources") or {}).get("limits") or {}
            if isinstance(limits, Mapping) and GPU_RESOURCE in limits:
                warnings.append(
                    f"container {clip(str(container.get('name')), 63)} is left out, but its "
                    f"{GPU_RESOURCE} limit still counts toward the RunPod pod's GPUs"
                )
    return tuple(warnings)


def volume_warnings(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """One warning per volume RunPod does not mount (one for all when there are many)."""
    described: list[str] = []
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, Mapping) or _is_token_volume(volume):
            continue
        name = clip(str(volume.get("name") or "?"), 63)
        kinds = [key for key in volume if key != "name"]
        described.append(f"{name} ({kinds[0]})" if kinds else name)
    if not described:
        return ()
    if len(described) <= _VOLUME_WARNINGS:
        return tuple(
            f"volume {text} is not mounted on RunPod: volumes are not supported yet" for text in described
        )
    return (f"volumes {name_items(described, limit=3)} are not mounted on RunPod: not supported yet",)


def _is_token_volume(volume: Mapping[str, Any]) -> bool:
    """The service-account token volume the API server's ServiceAccount plugin adds."""
    sources = (
        (volume.get("projected") or {}).get("sources")
        if isinstance(volume.get("projected"), Mapping)
        else None
    )
    return (
        str(volume.get("name") or "").startswith(_TOKEN_VOLUME_PREFIX)
        and isinstance(sources, list)
        and any(isinstance(s, Mapping) and "serviceAccountToken" in s for s in sources)
    )


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()
