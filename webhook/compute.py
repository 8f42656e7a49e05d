"""What a pod buys on RunPod: GPUs (how many, from `nvidia.com/gpu`) or a RunPod CPU pod (and
how much cpu and memory it needs), decided at admission from the pod and its validated inputs.

Owns: the GPU count of a pod (`count_gpus`: the sum over containers of their `nvidia.com/gpu`
limits, init containers by Kubernetes' effective-request rule), the choice of compute
(`decide_compute`: a GPU limit or `runpod.io/compute-type: GPU` buys GPUs, else the node's
default, a RunPod CPU pod unless the operator kept the old 1 GPU; annotations that mean
something only for the other kind are refused), and a CPU pod's need (`read_cpu_need`: the
running container's cpu and memory). Every rejection is a `Problem` naming the field or
annotation, the value and what is allowed.

Does not own reading annotations (`inputs`) or anything that needs the catalog (`resolving`).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import annotations as keys
from contract.policy import CLOUDS, CPU_CLOUD, GPU_RESOURCE, ComputeType
from contract.quantities import GIB, parse_cpu, parse_memory
from webhook.inputs import Inputs
from webhook.problems import Denial, Problem

__all__ = ["CpuNeed", "GpuCount", "count_gpus", "decide_compute", "read_cpu_need"]


@dataclass(frozen=True, slots=True)
class GpuCount:
    count: int
    defaulted: bool  # no nvidia.com/gpu limit anywhere (count 1 is what a GPU pod would get)


@dataclass(frozen=True, slots=True)
class CpuNeed:
    """What a CPU pod's running container asks for: vCPUs (its cpu limit, else request; 0 =
    unstated) and GB of memory (RunPod's GB are read as GiB: 16Gi fits a 16 GB flavour)."""

    cores: float
    memory_gb: float


def decide_compute(inputs: Inputs, gpus: GpuCount, *, default: ComputeType = "CPU") -> ComputeType:
    """What the pod buys: GPUs when it has an `nvidia.com/gpu` limit or asks with
    `runpod.io/compute-type: GPU` (then 1 GPU without a limit), else `default` (the node's
    `--default-compute-type`: a RunPod CPU pod unless the operator keeps the old 1 GPU).

    Refused with a `Denial`: `compute-type: CPU` on a pod with GPU limits, a CPU pod outside
    the SECURE cloud, and annotations that only mean something for the other kind (a CUDA floor
    on a CPU pod, a vCPU price on a GPU pod): silently ignoring them could buy the wrong thing.
    """
    declared = not gpus.defaulted
    if inputs.compute_type == "CPU" and declared:
        raise Denial.of(
            [
                Problem(
                    field=keys.COMPUTE_TYPE,
                    value="CPU",
                    reason=f"the pod has {GPU_RESOURCE} limits ({gpus.count} in total)",
                    allowed=f"GPU, or remove the {GPU_RESOURCE} limits to run on a RunPod CPU pod",
                    origin=inputs.origin(keys.COMPUTE_TYPE),
                )
            ]
        )
    compute: ComputeType = inputs.compute_type or ("GPU" if declared else default)
    problems: list[Problem] = []
    if compute == "CPU":
        why = (
            f"{keys.COMPUTE_TYPE} is CPU"
            if inputs.compute_type == "CPU"
            else f"the pod has no {GPU_RESOURCE} limit"
        )
        misplaced, allowed = (
            keys.GPU_ONLY_INPUTS,
            f"set limits {GPU_RESOURCE} (or {keys.COMPUTE_TYPE}: GPU) to run on a GPU, or remove the annotation",
        )
        if inputs.cloud != CPU_CLOUD and keys.CLOUD_TYPE in dict(inputs.origins):
            problems.append(
                Problem(
                    field=keys.CLOUD_TYPE,
                    value=inputs.raw_value(keys.CLOUD_TYPE),
                    reason=f"RunPod CPU pods run in the {CPU_CLOUD} cloud only ({why})",
                    allowed=f"{CPU_CLOUD} for a CPU pod; {', '.join(CLOUDS)} for a GPU pod",
                    origin=inputs.origin(keys.CLOUD_TYPE),
                )
            )
    else:
        why = (
            f"the pod has {GPU_RESOURCE} limits"
            if declared
            else f"{keys.COMPUTE_TYPE} is GPU"
            if inputs.compute_type == "GPU"
            else "the node's default compute type is GPU"
        )
        misplaced, allowed = (
            keys.CPU_ONLY_INPUTS,
            f"remove the annotation, or drop the {GPU_RESOURCE} limits to run on a RunPod CPU pod",
        )
    other = "GPU" if compute == "CPU" else "CPU"
    for key in misplaced:
        if key in dict(inputs.origins):
            problems.append(
                Problem(
                    field=key,
                    value=inputs.raw_value(key),
                    reason=f"applies to {other} pods only; this pod runs on a RunPod {compute} pod ({why})",
                    allowed=allowed,
                    origin=inputs.origin(key),
                )
            )
    if problems:
        raise Denial.of(problems)
    return compute


def read_cpu_need(spec: Mapping[str, Any], runs_index: int | None) -> CpuNeed:
    """The running container's cpu and memory: its limit, else its request (the most it may
    use, which RunPod must give it); nothing stated is 0 (the smallest CPU pod fits)."""
    containers = _list(spec.get("containers"))
    container = containers[runs_index] if runs_index is not None and runs_index < len(containers) else {}
    resources = container.get("resources") if isinstance(container, Mapping) else None
    resources = resources if isinstance(resources, Mapping) else {}
    raw_limits, raw_requests = resources.get("limits"), resources.get("requests")
    limits: Mapping[str, Any] = raw_limits if isinstance(raw_limits, Mapping) else {}
    requests: Mapping[str, Any] = raw_requests if isinstance(raw_requests, Mapping) else {}
    cores = parse_cpu(limits.get("cpu", requests.get("cpu"))) or 0.0
    memory = parse_memory(limits.get("memory", requests.get("memory"))) or 0.0
    return CpuNeed(cores=cores, memory_gb=memory / GIB)


def count_gpus(spec: Mapping[str, Any]) -> GpuCount:
    """GPUs for the whole pod: the sum over containers of `nvidia.com/gpu` limits.

    Init containers run before the app containers, so the pod needs the larger of their single
    biggest demand and the containers' sum (Kubernetes' own effective-request rule).
    """
    problems: list[Problem] = []
    seen_any = False
    totals = {"containers": 0, "initContainers": 0}
    for field in ("containers", "initContainers"):
        for index, container in enumerate(_list(spec.get(field))):
            resources = container.get("resources") if isinstance(container, Mapping) else None
            resources = resources if isinstance(resources, Mapping) else {}
            where = f"spec.{field}[{index}].resources"
            limit = _gpu_quantity(resources.get("limits"), f"{where}.limits", problems)
            request = _gpu_quantity(resources.get("requests"), f"{where}.requests", problems)
            if limit is None and request is None:
                continue
            seen_any = True
            if limit is None:
                problems.append(
                    Problem(
                        field=f'{where}.requests["{GPU_RESOURCE}"]',
                        value=str(request),
                        reason="a GPU request needs a limit",
                        allowed=f'limits["{GPU_RESOURCE}"] (requests may be omitted or equal it)',
                    )
                )
                continue
            if request is not None and request != limit:
                problems.append(
                    Problem(
                        field=f'{where}.requests["{GPU_RESOURCE}"]',
                        value=str(request),
                        reason=f"differs from the limit {limit}",
                        allowed="requests equal to limits, or requests omitted",
                    )
                )
            if field == "containers":
                totals[field] += limit
            else:
                totals[field] = max(totals[field], limit)
    if problems:
        raise Denial.of(problems)
    if not seen_any:
        return GpuCount(count=1, defaulted=True)
    count = max(totals["containers"], totals["initContainers"])
    if count < 1:
        raise Denial.of(
            [
                Problem(
                    field=f'spec.containers[*].resources.limits["{GPU_RESOURCE}"]',
                    value=str(count),
                    reason="a pod on the RunPod node needs at least one GPU",
                    allowed="an integer >= 1 in total",
                )
            ]
        )
    return GpuCount(count=count, defaulted=False)


def _gpu_quantity(mapping: object, where: str, problems: list[Problem]) -> int | None:
    if not isinstance(mapping, Mapping) or GPU_RESOURCE not in mapping:
        return None
    raw = mapping[GPU_RESOURCE]
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isascii() or not text.isdigit():
        problems.append(
            Problem(
                field=f'{where}["{GPU_RESOURCE}"]',
                value=text,
                reason="not a whole number",
                allowed="an integer",
            )
        )
        return None
    return int(text)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
