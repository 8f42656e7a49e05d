"""From validated inputs to GPU candidates: data-center compliance and catalog resolution.

Owns three decisions, each a pure function of its inputs:
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
  constraint excluded it.

Does not own reading annotations (`inputs`) or node policy itself (`contract.policy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from contract import annotations as keys
from contract.catalog import AVAILABILITY_RANK, Catalog, GpuTypeEntry
from contract.plan import Candidate
from contract.policy import Cloud, NodePolicy
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


def known_datacenters(catalog: Catalog) -> frozenset[str]:
    """Every data center the catalog names; empty when it carries no data-center list (a raw
    RunPod GPU answer), because stock alone omits data centers that are merely sold out."""
    ids = {dc.id for dc in catalog.data_centers}
    if not ids:
        return frozenset()
    for gpu in catalog.gpu_types:
        for stock in gpu.stock.values():
            ids.update(stock)
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
        for dc, band in gpu.stock_in(demand.cloud).items():
            if demand.datacenter_ids is not None and dc not in demand.datacenter_ids:
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
            f"no GPU fits: cheapest with >= {demand.memory_gb} GB{scope} in stock{where} is {cheapest.name} "
            f"({cheapest.id}) at ${price:.2f}/h per GPU, above {whose}; raise {keys.MAX_GPU_PRICE} "
            "(up to the node cap) or lower the memory requirement"
        )
    affordable = [g for g in offered if (g.price_in(demand.cloud) or 0.0) <= demand.max_gpu_price]
    near = min(affordable or offered, key=lambda g: (g.price_in(demand.cloud) or 0.0, g.id))
    elsewhere = sorted(near.stock_in(demand.cloud))
    tail = f"; in stock in {', '.join(elsewhere[:5])}" if elsewhere else "; it is out of stock everywhere"
    return (
        f"no GPU fits: no GPU type with >= {demand.memory_gb} GB{scope} is in stock{where} "
        f"in the {demand.cloud} cloud; nearest: {near.name} ({near.id}) at "
        f"${near.price_in(demand.cloud) or 0.0:.2f}/h per GPU{tail}; retry later or allow more "
        f"data centers ({keys.DATACENTER_IDS})"
    )


def _stocked_in(gpu: GpuTypeEntry, demand: Demand) -> bool:
    stock = gpu.stock_in(demand.cloud)
    if demand.datacenter_ids is None:
        return bool(stock)
    return any(dc in stock for dc in demand.datacenter_ids)


def _where(demand: Demand) -> str:
    if demand.datacenter_ids is None:
        return ""
    return f" in {name_items(demand.datacenter_ids)}"
