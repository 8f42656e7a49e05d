"""What the demo prints: plain functions from Kubernetes/RunPod data to lines of text.

Owns the wording of the narration that is computed from data (the catalog table, the plan, a
pod's progress line, its exit code) and the choice of RunPod target (sandbox unless `--live`).
No I/O, no clock: the story module (`demo_story`) gathers the data and prints these lines, so
everything here is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from contract import annotations as keys
from contract.catalog import Catalog
from contract.plan import Plan
from contract.policy import CLOUDS

__all__ = [
    "DemoError",
    "RunPodTarget",
    "choose_runpod",
    "exit_code_of",
    "job_finished",
    "needs_confirmation",
    "progress_line",
    "render_catalog",
    "render_plan",
]

API_KEY_ENV: Final = "RUNPOD_API_KEY"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do (never a secret)."""


@dataclass(frozen=True)
class RunPodTarget:
    """Where the binder's RunPod calls go. `api_key` is never printed (repr hides it)."""

    live: bool
    base_url: str | None  # None = the sandbox the demo starts
    api_key: str
    notice: str | None = None

    def __repr__(self) -> str:
        return f"RunPodTarget(live={self.live}, base_url={self.base_url!r})"


def choose_runpod(*, live: bool, environ: Mapping[str, str], sandbox_key: str) -> RunPodTarget:
    """Sandbox unless `--live`; live needs RUNPOD_API_KEY. Without --live a set key is ignored."""
    key = environ.get(API_KEY_ENV, "")
    if live:
        if not key:
            raise DemoError(f"--live needs {API_KEY_ENV} in the environment (a RunPod API key)")
        return RunPodTarget(live=True, base_url=environ.get("RUNPOD_BASE_URL") or None, api_key=key)
    notice = (
        f"{API_KEY_ENV} is set but not used: without --live the demo runs on the sandbox RunPod "
        "and never touches your account"
        if key
        else None
    )
    return RunPodTarget(live=False, base_url=None, api_key=sandbox_key, notice=notice)


def needs_confirmation(*, yes: bool, environ: Mapping[str, str]) -> bool:
    """Prompts are skipped with --yes or in CI (CI=true)."""
    return not yes and environ.get("CI", "").strip().lower() not in _TRUE


def render_catalog(catalog: Catalog, *, cap: float, limit: int = 12) -> list[str]:
    """The cheapest GPU types first, one line each: memory, price per cloud, stocked data centers.

    Types at or under the node cap are marked `*`: only those can ever be planned here.
    """
    rows: list[tuple[float, str]] = []
    for gpu in catalog.gpu_types:
        prices = [p for p in (gpu.price_in(c) for c in CLOUDS) if p is not None]
        if not prices:
            continue
        cheapest = min(prices)
        stocked = sorted({dc for cloud in CLOUDS for dc in gpu.stock_in(cloud)})
        cells = " ".join(_price_cell(gpu.price_in(c)) for c in CLOUDS)
        where = ",".join(stocked[:4]) + (f" +{len(stocked) - 4}" if len(stocked) > 4 else "")
        mark = "*" if cheapest <= cap else " "
        rows.append(
            (cheapest, f" {mark} {gpu.id[:34]:<34} {gpu.memory_gb:>4} GB  {cells}  {where or 'no stock'}")
        )
    rows.sort()
    under = sum(1 for price, _ in rows if price <= cap)
    header = f"   {'GPU type':<34} {'memory':>7}  {'SECURE':>7} {'COMMUNITY':>9}  in stock at"
    lines = [
        f"catalog revision {catalog.revision}: {len(rows)} GPU types, {len(catalog.data_centers)} data "
        f"centers; * = at or under the node cap ${cap:g}/GPU-hour ({under} types)",
        header,
    ]
    lines += [line for _, line in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"   ... and {len(rows) - limit} more")
    return lines


def _price_cell(price: float | None) -> str:
    return f"{'$' + format(price, '.2f'):>7}" if price is not None else f"{'-':>7}"


def render_plan(plan: Plan) -> list[str]:
    """The resolved plan as a person reads it: candidates in order, then the rest."""
    if plan.compute_type == "CPU":
        lines = [f"CPU candidates (a RunPod CPU pod, no GPU), tried in this order ({plan.cloud} cloud):"]
    else:
        lines = [f"GPU candidates, tried in this order ({plan.gpu_count} GPU, {plan.cloud} cloud):"]
    for index, candidate in enumerate(plan.candidates, start=1):
        stock = f", stock {candidate.stock}" if candidate.stock else ""
        lines.append(
            f"  {index}. {candidate.label} in {candidate.datacenter_id or 'any data center'}"
            f" at ${candidate.usd_per_hour:.2f}/hour{stock}"
        )
    unit = "vCPU" if plan.compute_type == "CPU" else "GPU"
    if plan.cuda is not None:
        lines.append(f"host CUDA: {plan.cuda.describe()}")
    lines += [
        f"price cap: ${plan.max_unit_price():g} per {unit}-hour",
        f"data centers: {','.join(plan.datacenter_ids) or 'any'}",
        f"ports: {','.join(str(p) for p in plan.ports) or 'none'}",
        f"container disk: {plan.container_disk_gb} GB",
        f"catalog revision: {plan.catalog_revision}",
    ]
    return lines


def progress_line(pod: Mapping[str, Any]) -> str:
    """One line summing up where a pod is: phase, the container's state and the binder's state."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    parts = [phase]
    if not (pod.get("spec") or {}).get("nodeName"):
        parts.append("not scheduled yet")
    containers = status.get("containerStatuses") or []
    if containers:
        state = containers[0].get("state") or {}
        if "waiting" in state:
            parts.append(f"waiting: {state['waiting'].get('reason', '?')}")
        elif "running" in state:
            parts.append("running" + (", ready" if containers[0].get("ready") else ""))
        elif "terminated" in state:
            terminated = state["terminated"]
            parts.append(
                f"terminated: {terminated.get('reason', '?')}, exit code {terminated.get('exitCode')}"
            )
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if keys.POD_ID in annotations:
        gpu = annotations.get(keys.CHOSEN_GPU_TYPE) or (
            f"{annotations[keys.CHOSEN_CPU_TYPE]} x{annotations.get(keys.CHOSEN_VCPU_COUNT, '?')} vCPU"
            if keys.CHOSEN_CPU_TYPE in annotations
            else "?"
        )
        dc = annotations.get(keys.CHOSEN_DATACENTER, "?")
        cost = annotations.get(keys.COST_PER_HOUR)
        parts.append(
            f"RunPod pod {annotations[keys.POD_ID]} ({gpu} in {dc}" + (f", ${cost}/hour)" if cost else ")")
        )
    if keys.TERMINATED in annotations:
        parts.append("RunPod pod terminated")
    if keys.LAST_FAILURE in annotations:
        parts.append(f"last failure: {annotations[keys.LAST_FAILURE]}")
    return "; ".join(parts)


def exit_code_of(pod: Mapping[str, Any]) -> int | None:
    """The first container's exit code once it terminated, else None."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if isinstance(terminated, dict) and isinstance(terminated.get("exitCode"), int):
            return int(terminated["exitCode"])
    return None


def job_finished(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" once the Job controller says so, else None."""
    conditions: Sequence[Mapping[str, Any]] = (job.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None
