"""One container per RunPod pod: which container of a Kubernetes pod runs, which are left out.

A RunPod pod runs one image, so a Kubernetes pod on the RunPod node runs exactly one of its
containers. Containers and init containers beyond it are only accepted when the pod (or its Job)
names them in `runpod.io/drop-containers`; the webhook judges that on the final pod, after every
mutating webhook (sidecar injectors add containers late), and the binder reports every dropped
container honestly in the pod's status instead of leaving it out.

`split_containers` is the one place that decides, used by the webhook (admission), the binder
(create, status) and the kubelet API (which container's logs exist). The container that runs is
the first app container the list does not name: without the annotation that is the pod's first
container, as it always was.

Pure: no I/O. Does not own wording for people (the webhook and the binder say it their way).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ContainerSplit", "container_names", "running_container", "split_containers"]


@dataclass(frozen=True, slots=True)
class ContainerSplit:
    """How a pod's containers map onto one RunPod pod. Names are in spec order."""

    app: tuple[str, ...]
    init: tuple[str, ...]
    # The app container RunPod runs, and its index in spec.containers; None when every app
    # container is named in the drop list (or the pod has none).
    runs: str | None
    runs_index: int | None
    # Named in the drop list: left out, reported as not running.
    dropped: tuple[str, ...]
    dropped_init: tuple[str, ...]
    # Not named but not runnable either: app containers beyond `runs`, and init containers.
    extra: tuple[str, ...]
    extra_init: tuple[str, ...]
    # Names in the drop list that are no container of the pod.
    unknown: tuple[str, ...]
    # Every app container RunPod does not run (dropped or extra), and every init container.
    not_run: tuple[str, ...]
    not_run_init: tuple[str, ...]

    @property
    def acceptable(self) -> bool:
        """Exactly one container runs and every other one is named (and nothing else is)."""
        return self.runs is not None and not self.extra and not self.extra_init and not self.unknown


def container_names(containers: object) -> tuple[str, ...]:
    """Names of a containers list as the API carries it; unnamed entries count as ""."""
    if not isinstance(containers, list):
        return ()
    return tuple(str(c.get("name") or "") if isinstance(c, Mapping) else "" for c in containers)


def split_containers(spec: Mapping[str, Any], drop: Collection[str]) -> ContainerSplit:
    """Split `spec`'s containers into the one RunPod runs and the rest, given the drop list."""
    app = container_names(spec.get("containers"))
    init = container_names(spec.get("initContainers"))
    wanted = set(drop)
    kept = [(index, name) for index, name in enumerate(app) if name not in wanted]
    runs_index, runs = kept[0] if kept else (None, None)
    known = set(app) | set(init)
    return ContainerSplit(
        app=app,
        init=init,
        runs=runs,
        runs_index=runs_index,
        dropped=tuple(name for name in app if name in wanted),
        dropped_init=tuple(name for name in init if name in wanted),
        extra=tuple(name for _, name in kept[1:]),
        extra_init=tuple(name for name in init if name not in wanted),
        unknown=tuple(dict.fromkeys(name for name in drop if name not in known)),
        not_run=tuple(name for index, name in enumerate(app) if index != runs_index),
        not_run_init=init,
    )


def running_container(pod: Mapping[str, Any], drop: Collection[str]) -> Mapping[str, Any]:
    """The container spec RunPod runs for this pod ({} when there is none)."""
    spec: Mapping[str, Any] = pod.get("spec") or {}
    index = split_containers(spec, drop).runs_index
    containers: Sequence[Any] = spec.get("containers") or ()
    if index is None or not isinstance(containers[index], Mapping):
        return {}
    found: Mapping[str, Any] = containers[index]
    return found
