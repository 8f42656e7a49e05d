"""From validated inputs to candidates: data-center compliance and catalog resolution.

Owns these decisions, each a pure function of its inputs:
- `comply_datacenters`: the pod's data-center list ∩ the node's; dropped ids become warnings,
  an empty result is a rejection; ids unknown to the catalog get a "did you mean" (many bad
  ids are listed by their first few and a count, see `problems`).
- `check_pins`: `runpod.io/gpu-types` ids must exist in the catalog (did-you-mean otherwise).
- `resolve_candidates`: (GPU type, data center) pairs with memory >= required, price per GPU <=
  the cap, offered in the cloud, in stock in an allowed data center; ordered by whole-pod price,
  then, for a pod whose only address can be RunPod's global-networking one (no `tcp` port, so
  no public IP), the candidates where it can have one (so a Running pod has a podIP whenever
  the money allows: never at a higher price), then stock band (more first), then memory (more
  first: more for the same money), then GPU id, then data-center id, so equal inputs always
  give the same plan. When nothing fits, the denial names the nearest miss and which
  constraint excluded it. With a CUDA requirement (`runpod.io/min-cuda-version` or
  `runpod.io/cuda-versions`), only machines whose CUDA satisfies it count as stock
  (`GpuTypeEntry.stock_with`); `check_cuda` first refuses a requirement no GPU type in the
  catalog can meet, naming the versions it offers.
- `check_cpu_pins`, `resolve_cpu_candidates`: the same for a CPU pod (no `nvidia.com/gpu`
  limit): per CPU flavour the fewest vCPUs RunPod sells (a power of two >= 2 in the flavour's
  range) that give the pod's cpu and, at the flavour's RAM per vCPU, its memory; per-vCPU price
  <= the cap, in stock in an allowed data center (SECURE cloud only); ordered by whole-pod price,
  then stock band, then more RAM, then flavour id, then data-center id.

Data centers narrow the same way for both kinds: the `datacenter_ids` of a demand (the result
of `comply_datacenters`), tested by `_admits`; a further narrowing (a pinned data center, say)
belongs there or in the list the demand is built with.

Does not own reading annotations (`inputs`) or node policy itself (`contract.policy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from contract import annotations as keys
from contract.catalog import (
    AVAILABILITY_RANK,
    Catalog,
    CpuTypeEntry,
    CudaRequirement,
    GpuTypeEntry,
    sort_cuda_versions,
)
from contract.plan import Candidate
from contract.policy import CPU_CLOUD, Cloud, NodePolicy
from webhook.inputs import suggest
from webhook.problems import FORBIDDEN, INVALID, Denial, Problem, item_problems, name_items

# Up to this many dropped data centers get a warning each; more share one.
_WARN_EACH: Final = 3


@dataclass(frozen=True, slots=True)
class Demand:
    """What the pod needs, after inputs and node policy are combined. Hashable (cache key)."""

    memory_gb: int
    gpu_count: int
    cloud: Cloud
    max_gpu_price: float
    # True when the cap came from the pod/Job annotation, False when it is the node's cap.
    cap_is_users: bool
    # Effective data centers; None = any.
    datacenter_ids: tuple[str, ...] | None
    gpu_types: tuple[str, ...] | None
    max_candidates: int
    # No `tcp` port, so no public IP: its address can only be the global-networking one.
    needs_private_address: bool = False
    # Machines whose CUDA satisfies this; None = any.
    cuda: CudaRequirement | None = None


@dataclass(frozen=True, slots=True)
class CpuDemand:
    """What a CPU pod needs, after inputs and node policy are combined. Hashable (cache key)."""

    cores: float
    memory_gb: float
    # USD per vCPU-hour; `cap_is_users` as in `Demand`.
    max_vcpu_price: float
    cap_is_users: bool
    datacenter_ids: tuple[str, ...] | None
    cpu_types: tuple[str, ...] | None
    max_candidates: int


def known_datacenters(catalog: Catalog) -> frozenset[str]:
    """Every data center the catalog names; empty when it carries no data-center list (a raw
    RunPod GPU answer), because stock alone omits data centers that are merely sold out."""
    ids = {dc.id for dc in catalog.data_centers}
    if not ids:
        return frozenset()
    for gpu in catalog.gpu_types:
        for stock in gpu.stock.values():
            ids.update(stock)
    for cpu in catalog.cpu_types:
        ids.update(cpu.stock)
    return frozenset(ids)


def comply_datacenters(
    requested: tuple[str, ...] | None, *, origin: str, policy: NodePolicy, catalog: Catalog
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """The effective data-center list (None = any) and warnings naming the dropped ids (one each
    while they are few, one for all of them otherwise)."""
    allowed = policy.allowed_datacenter_ids
    if requested is None:
        return allowed, ()
    known = known_datacenters(catalog)
    # Only judged when the catalog lists data centers: a raw RunPod GPU answer may not.
    unknown = [dc for dc in requested if known and dc not in known and (allowed is None or dc in allowed)]
    if unknown:
        raise Denial.of(
            item_problems(
                field=keys.DATACENTER_IDS,
                items=unknown,
                reason=lambda dc: f"unknown data center{suggest(dc, sorted(known))}",
                reason_for_all=f"{len(unknown):,} unknown data centers",
                allowed="data-center ids from the RunPod catalog",
                origin=origin,
            )
        )
    if allowed is None:
        return requested, ()
    kept = tuple(dc for dc in requested if dc in allowed)
    dropped = [dc for dc in requested if dc not in allowed]
    where = f"not allowed on node {policy.node_name}"
    if len(dropped) <= _WARN_EACH:
        warnings = tuple(f"{keys.DATACENTER_IDS}: dropped {dc}: {where}" for dc in dropped)
    else:
        warnings = (f"{keys.DATACENTER_IDS}: dropped {name_items(dropped)}: {where}",)
    if not kept:
        raise Denial.of(
            [
                Problem(
                    field=keys.DATACENTER_IDS,
                    value=",".join(requested),
                    values=requested if len(requested) > 1 else (),
                    reason=f"none of these data centers is allowed on node {policy.node_name}",
                    allowed=name_items(allowed, limit=20),
                    origin=origin,
                    code=FORBIDDEN,
                )
            ]
        )
    return kept, warnings


def check_pins(pins: tuple[str, ...] | None, *, origin: str, catalog: Catalog) -> None:
    if pins is None:
        return
    unknown = [pin for pin in pins if catalog.gpu(pin) is None]
    if unknown:
        raise Denial.of(
            item_problems(
                field=keys.GPU_TYPES,
                items=unknown,
                reason=lambda pin: f"unknown GPU type{_pin_hint(pin, catalog)}",
                reason_for_all=f"{len(unknown):,} unknown GPU types",
                allowed="GPU type ids from the RunPod catalog (the binder publishes them in ConfigMap runpod-catalog)",
                origin=origin,
            )
        )


def _pin_hint(pin: str, catalog: Catalog) -> str:
    """A display name ("H100 SXM") or a fragment ("A100") points at ids; else a close spelling."""
    wanted = pin.lower()
    exact = [g.id for g in catalog.gpu_types if wanted in (g.name.lower(), g.id.lower())]
    if exact:
        return f"; did you mean {exact[0]}?"
    partial = sorted(g.id for g in catalog.gpu_types if wanted in g.id.lower() or wanted in g.name.lower())
    if len(partial) == 1:
        return f"; did you mean {partial[0]}?"
    if partial:
        return f"; did you mean one of {', '.join(partial[:4])}?"
    return suggest(pin, [g.id for g in catalog.gpu_types])


def resolve_candidates(demand: Demand, catalog: Catalog) -> tuple[Candidate, ...]:
    """Ordered candidates, at most `max_candidates`; a `Denial` naming the near miss when none."""
    pool = [g for g in catalog.gpu_types if demand.gpu_types is None or g.id in demand.gpu_types]
    candidates: list[tuple[tuple[float, bool, int, int, str, str], Candidate]] = []
    for gpu in pool:
        price = gpu.price_in(demand.cloud)
        if gpu.memory_gb < demand.memory_gb or price is None or price > demand.max_gpu_price:
            continue
        whole_pod = round(price * demand.gpu_count, 4)
        for dc, band in gpu.stock_with(demand.cloud, demand.cuda).items():
            if not _admits(demand.datacenter_ids, dc):
                continue
            unaddressed = demand.needs_private_address and not catalog.offers_global_network(gpu.id, dc)
            key = (whole_pod, unaddressed, -AVAILABILITY_RANK[band], -gpu.memory_gb, gpu.id, dc)
            candidates.append(
                (key, Candidate(gpu_type_id=gpu.id, datacenter_id=dc, usd_per_hour=whole_pod, stock=band))
            )
    if not candidates:
        raise Denial(explain_no_candidate(demand, pool), code=INVALID)
    candidates.sort(key=lambda pair: pair[0])
    return tuple(c for _, c in candidates[: demand.max_candidates])


def explain_no_candidate(demand: Demand, pool: Sequence[GpuTypeEntry]) -> str:
    """Which constraint emptied the list, naming the cheapest GPU it excluded."""
    scope = f" among {keys.GPU_TYPES} {name_items(demand.gpu_types)}" if demand.gpu_types else ""
    big = [g for g in pool if g.memory_gb >= demand.memory_gb]
    if not big:
        largest = max(pool, key=lambda g: (g.memory_gb, g.id), default=None)
        tail = f"; the largest is {largest.name} with {largest.memory_gb} GB" if largest else ""
        return (
            f"no GPU type{scope} has >= {demand.memory_gb} GB ({keys.REQUIRED_GPU_MEMORY}){tail}; "
            f"lower {keys.REQUIRED_GPU_MEMORY}"
        )
    offered = [g for g in big if g.price_in(demand.cloud) is not None]
    if not offered:
        return (
            f"no GPU type{scope} with >= {demand.memory_gb} GB is offered in the {demand.cloud} cloud; "
            f"try another {keys.CLOUD_TYPE}"
        )
    if demand.cuda is not None:
        cuda = demand.cuda
        runs = [g for g in offered if any(cuda.admits(v) for v in g.cuda_versions_in(demand.cloud))]
        if not runs:
            return (
                f"no GPU type{scope} with >= {demand.memory_gb} GB in the {demand.cloud} cloud runs "
                f"{cuda.describe()} ({_cuda_key(cuda)}); they run {_cuda_summary(offered, demand.cloud)}; "
                f"relax {_cuda_key(cuda)}"
            )
        offered = runs
    where = _where(demand)
    stocked = [g for g in offered if _stocked_in(g, demand)]
    if stocked:
        cheapest = min(stocked, key=lambda g: (g.price_in(demand.cloud) or 0.0, g.id))
        price = cheapest.price_in(demand.cloud) or 0.0
        whose = (
            f"your cap ${demand.max_gpu_price:.2f}"
            if demand.cap_is_users
            else (f"the node cap ${demand.max_gpu_price:.2f}")
        )
        return (
            f"no GPU fits: cheapest with >= {demand.memory_gb} GB{_with_cuda(demand)}{scope} in stock{where} "
            f"is {cheapest.name} "
            f"({cheapest.id}) at ${price:.2f}/h per GPU, above {whose}; raise {keys.MAX_GPU_PRICE} "
            "(up to the node cap) or lower the memory requirement"
        )
    affordable = [g for g in offered if (g.price_in(demand.cloud) or 0.0) <= demand.max_gpu_price]
    near = min(affordable or offered, key=lambda g: (g.price_in(demand.cloud) or 0.0, g.id))
    elsewhere = sorted(near.stock_with(demand.cloud, demand.cuda))
    tail = f"; in stock in {', '.join(elsewhere[:5])}" if elsewhere else "; it is out of stock everywhere"
    return (
        f"no GPU fits: no GPU type with >= {demand.memory_gb} GB{_with_cuda(demand)}{scope} is in stock{where} "
        f"in the {demand.cloud} cloud; nearest: {near.name} ({near.id}) at "
        f"${near.price_in(demand.cloud) or 0.0:.2f}/h per GPU{tail}; retry later or allow more "
        f"data centers ({keys.DATACENTER_IDS})"
    )


def _stocked_in(gpu: GpuTypeEntry, demand: Demand) -> bool:
    return any(_admits(demand.datacenter_ids, dc) for dc in gpu.stock_with(demand.cloud, demand.cuda))


def _admits(datacenter_ids: tuple[str, ...] | None, datacenter_id: str) -> bool:
    """Is a candidate in this data center inside the demand's effective list (None = any)?"""
    return datacenter_ids is None or datacenter_id in datacenter_ids


def _where(demand: Demand | CpuDemand) -> str:
    if demand.datacenter_ids is None:
        return ""
    return f" in {name_items(demand.datacenter_ids)}"


def _cuda_key(cuda: CudaRequirement) -> str:
    return keys.CUDA_VERSIONS if cuda.versions else keys.MIN_CUDA_VERSION


def _with_cuda(demand: Demand) -> str:
    return f" on {demand.cuda.describe()}" if demand.cuda is not None else ""


def _cuda_summary(gpus: Sequence[GpuTypeEntry], cloud: Cloud) -> str:
    """`CUDA 12.8, 13.0 (newest: 13.0)`, or that none is known."""
    versions = sort_cuda_versions(v for g in gpus for v in g.cuda_versions_in(cloud))
    if not versions:
        return "no known CUDA version"
    return f"CUDA {name_items(versions, limit=8)} (newest: {versions[-1]})"


def check_cuda(cuda: CudaRequirement | None, *, origin: str, catalog: Catalog) -> None:
    """Refuse a CUDA requirement no GPU type of the catalog can meet, in any cloud, naming the
    versions the catalog offers (an exact-set version no machine runs is a typo or a wish)."""
    if cuda is None:
        return
    known = list(catalog.cuda_versions())
    allowed = (
        f"CUDA versions machines in the RunPod catalog run: {name_items(known, limit=12)}"
        if known
        else "none: the catalog lists no CUDA versions (is the binder older than the webhook?)"
    )
    if cuda.versions:
        unknown = [v for v in cuda.versions if v not in known]
        if unknown:
            raise Denial.of(
                item_problems(
                    field=keys.CUDA_VERSIONS,
                    items=unknown,
                    reason=lambda v: "no GPU type in the catalog runs this CUDA version",
                    reason_for_all=f"{len(unknown):,} CUDA versions no GPU type in the catalog runs",
                    allowed=allowed,
                    origin=origin,
                )
            )
        return
    if not any(cuda.admits(v) for v in known):
        newest = f"; the newest is {known[-1]}" if known else ""
        raise Denial.of(
            [
                Problem(
                    field=keys.MIN_CUDA_VERSION,
                    value=cuda.minimum or "",
                    reason=f"no GPU type in the catalog runs {cuda.describe()}{newest}",
                    allowed=allowed,
                    origin=origin,
                )
            ]
        )


# --- CPU pods ---------------------------------------------------------------------------------


def check_cpu_pins(pins: tuple[str, ...] | None, *, origin: str, catalog: Catalog) -> None:
    if pins is None:
        return
    ids = [c.id for c in catalog.cpu_types]
    unknown = [pin for pin in pins if catalog.cpu(pin) is None]
    if unknown:
        raise Denial.of(
            item_problems(
                field=keys.CPU_TYPES,
                items=unknown,
                reason=lambda pin: f"unknown CPU flavour{suggest(pin, ids)}",
                reason_for_all=f"{len(unknown):,} unknown CPU flavours",
                allowed="CPU flavour ids from the RunPod catalog"
                + (f": {name_items(sorted(ids), limit=8)}" if ids else " (it lists none yet)"),
                origin=origin,
            )
        )


def resolve_cpu_candidates(demand: CpuDemand, catalog: Catalog) -> tuple[Candidate, ...]:
    """Ordered CPU candidates, at most `max_candidates`; a `Denial` naming the near miss when none."""
    pool = [c for c in catalog.cpu_types if demand.cpu_types is None or c.id in demand.cpu_types]
    ranked: list[tuple[tuple[float, int, float, str, str], Candidate]] = []
    for cpu in pool:
        vcpus = cpu.vcpus_for(cores=demand.cores, memory_gb=demand.memory_gb)
        if vcpus is None or cpu.price_per_vcpu > demand.max_vcpu_price + 1e-9:
            continue
        whole_pod = round(cpu.price_per_vcpu * vcpus, 4)
        for dc, band in cpu.stock_in().items():
            if not _admits(demand.datacenter_ids, dc):
                continue
            key = (whole_pod, -AVAILABILITY_RANK[band], -cpu.memory_gb(vcpus), cpu.id, dc)
            candidate = Candidate(
                cpu_type_id=cpu.id, vcpu_count=vcpus, datacenter_id=dc, usd_per_hour=whole_pod, stock=band
            )
            ranked.append((key, candidate))
    if not ranked:
        raise Denial(explain_no_cpu_candidate(demand, pool), code=INVALID)
    ranked.sort(key=lambda pair: pair[0])
    return tuple(c for _, c in ranked[: demand.max_candidates])


def explain_no_cpu_candidate(demand: CpuDemand, pool: Sequence[CpuTypeEntry]) -> str:
    """Which constraint emptied the list: no flavour at all, none big enough for the cpu or
    the memory, the price cap, or stock; naming the nearest flavour."""
    scope = f" among {keys.CPU_TYPES} {name_items(demand.cpu_types)}" if demand.cpu_types else ""
    need = _cpu_need_text(demand)
    if not pool:
        return (
            "no RunPod CPU flavour is in the catalog"
            + (scope or " (is the binder older than the webhook?)")
            + f"; to run on a GPU instead, set limits nvidia.com/gpu or {keys.COMPUTE_TYPE}: GPU"
        )
    sized = [(c, n) for c in pool if (n := c.vcpus_for(cores=demand.cores, memory_gb=demand.memory_gb))]
    if not sized:
        largest = max(pool, key=lambda c: (c.memory_gb(c.vcpu_max), c.vcpu_max, c.id))
        return (
            f"no CPU flavour{scope} fits {need}: the largest is {largest.id} ({largest.name}) with up to "
            f"{largest.vcpu_max} vCPUs and {largest.memory_gb(largest.vcpu_max):g} GB; lower the container's "
            "cpu or memory (RunPod CPU pods have a power-of-two vCPU count >= 2 and "
            "a fixed RAM per vCPU), or run it on a GPU (limits nvidia.com/gpu)"
        )
    where = _where(demand)
    stocked = [(c, n) for c, n in sized if any(_admits(demand.datacenter_ids, dc) for dc in c.stock_in())]
    if stocked:
        cheapest, vcpus = min(stocked, key=lambda pair: (pair[0].price_per_vcpu * pair[1], pair[0].id))
        whose = (
            f"your cap ${demand.max_vcpu_price:g} ({keys.MAX_VCPU_PRICE})"
            if demand.cap_is_users
            else f"the node cap ${demand.max_vcpu_price:g}"
        )
        return (
            f"no CPU flavour fits: cheapest fitting {need}{scope} in stock{where} is {cheapest.id} "
            f"x{vcpus} vCPU at ${cheapest.price_per_vcpu:g}/vCPU-hour, above {whose}; raise "
            f"{keys.MAX_VCPU_PRICE} (up to the node cap) or ask for less"
        )
    near, vcpus = min(sized, key=lambda pair: (pair[0].price_per_vcpu * pair[1], pair[0].id))
    elsewhere = sorted(near.stock_in())
    tail = f"; in stock in {', '.join(elsewhere[:5])}" if elsewhere else "; it is out of stock everywhere"
    return (
        f"no CPU flavour fitting {need}{scope} is in stock{where} in the {CPU_CLOUD} cloud; nearest: "
        f"{near.id} x{vcpus} vCPU at ${near.price_per_vcpu * vcpus:.2f}/h{tail}; retry later or allow more "
        f"data centers ({keys.DATACENTER_IDS})"
    )


def _cpu_need_text(demand: CpuDemand) -> str:
    """`cpu 3 and 12 GB memory` (what the container asks, as the flavour must hold it)."""
    parts = []
    if demand.cores:
        parts.append(f"cpu {demand.cores:g}")
    if demand.memory_gb:
        parts.append(f"{demand.memory_gb:.3g} GB memory")
    return " and ".join(parts) or "the smallest CPU pod"
