"""Placing a create: what a `POST /v2/pods` body buys and where, against the live stock.

GPUs: `gpu.id` x `count` on one machine of an allowed data center whose CUDA satisfies the
body's `minCudaVersion` / `allowedCudaVersions` (global networking narrows the data centers to
those that have it; a denied pool is 403; the live 400 when no machine has room). A CPU pod:
`cpu.vcpuCount` vCPUs of flavour `cpu.id` (a count the flavour sells) in one allowed data
center, SECURE only, with vCPUs x the flavour's RAM per vCPU. Both reserve their stock; the
account gives it back when the pod stops or ends. `afford` is the account's balance check (402).

Not owned here: the stock itself (`catalog.Inventory`), schemas and cross-field rules
(`validation`), pods and billing (`account`, `pods`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.catalog import Cloud, Inventory
from sandbox.problems import CAPACITY_DETAIL, POOL_DENIED_DETAIL, ApiError

__all__ = ["Placed", "place_cpu", "place_gpu"]


@dataclass(frozen=True)
class Placed:
    """What a create bought and where: GPUs (`gpu_id` x `gpu_count`) or a CPU pod's vCPUs."""

    dc_id: str
    cloud: Cloud
    gpu_id: str = ""
    gpu_count: int = 0
    price_per_gpu: float = 0.0
    cuda: str | None = None
    cpu_id: str | None = None
    vcpu_count: int = 0
    memory_gb: int = 0
    price_per_vcpu: float = 0.0


def place_gpu(
    inventory: Inventory,
    body: Mapping[str, Any],
    cloud: Cloud,
    dc_ids: Sequence[str],
    *,
    afford: Callable[[float], None],
    denied: Collection[str],
    count_omitted_bug: bool,
) -> Placed:
    """`gpu.id` x `count` on one machine of an allowed DC whose CUDA satisfies the body's
    `minCudaVersion` / `allowedCudaVersions`; the live 400 when none has room."""
    gpu = body["gpu"]
    gpu_id = gpu["id"]
    if gpu_id not in inventory.gpus:
        raise ApiError(400, f"unknown GPU type {gpu_id!r}")
    count = gpu.get("count")
    if count is None:
        if count_omitted_bug:
            raise ApiError(400, CAPACITY_DETAIL)
        count = 1
    if body.get("globalNetworking"):
        eligible = [d for d in (dc_ids or sorted(inventory.dcs)) if inventory.dcs[d].global_network]
        if not eligible:
            raise ApiError(400, "global networking is not available in the requested data centers")
        dc_ids = eligible
    if gpu_id in denied:
        raise ApiError(403, POOL_DENIED_DETAIL)
    price = inventory.gpus[gpu_id].price.get(cloud, 0.0)
    afford(price * count)
    allowed = gpu.get("allowedCudaVersions") or None
    placement = inventory.place(
        gpu_id=gpu_id,
        cloud=cloud,
        count=count,
        dc_ids=dc_ids,
        allowed_cuda=frozenset(allowed) if allowed else None,
        min_cuda=_cuda_floor(gpu.get("minCudaVersion")),
    )
    if placement is None:
        raise ApiError(400, CAPACITY_DETAIL)
    return Placed(
        dc_id=placement.dc_id,
        cloud=cloud,
        gpu_id=gpu_id,
        gpu_count=count,
        price_per_gpu=price,
        cuda=placement.cuda_version,
    )


def place_cpu(
    inventory: Inventory, cpu: Mapping[str, Any], dc_ids: Sequence[str], *, afford: Callable[[float], None]
) -> Placed:
    """`cpu.vcpuCount` vCPUs of flavour `cpu.id` in one allowed DC (SECURE; the rules already
    refused another cloud); RAM = vCPUs x the flavour's RAM per vCPU."""
    flavor = inventory.cpus.get(cpu["id"])
    if flavor is None:
        raise ApiError(400, f"unknown CPU flavor {cpu['id']!r}")
    vcpus = cpu["vcpuCount"]
    if not flavor.sells(vcpus):
        raise ApiError(
            400,
            f"cpu.vcpuCount {vcpus} is not offered for {flavor.id} "
            f"(a power of two from {flavor.vcpu_min} to {flavor.vcpu_max})",
        )
    afford(flavor.price_per_vcpu * vcpus)
    dc_id = inventory.place_cpu(cpu_id=flavor.id, vcpus=vcpus, dc_ids=dc_ids)
    if dc_id is None:
        raise ApiError(400, CAPACITY_DETAIL)
    return Placed(
        dc_id=dc_id,
        cloud="SECURE",
        cpu_id=flavor.id,
        vcpu_count=vcpus,
        memory_gb=int(vcpus * flavor.ram_gb_per_vcpu),
        price_per_vcpu=flavor.price_per_vcpu,
    )


def _cuda_floor(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)
