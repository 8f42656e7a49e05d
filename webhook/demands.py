"""From validated inputs and the pod to what resolution plans for: a GPU or a CPU demand.

Owns combining a pod's inputs (`inputs.Inputs`), its containers and node policy into a
`resolving.Demand` (GPUs: pins, memory, cloud, per-GPU cap, CUDA requirement) or a
`resolving.CpuDemand` (the running container's cpu and memory, flavour pins, per-vCPU cap), with
the catalog checks a demand needs first (unknown GPU or CPU pins, a CUDA requirement no machine
meets), and the warning a CPU plan earns when it buys more vCPUs than the container asks for.

Does not own reading annotations (`inputs`), the node's data-center list (`resolving`, whose
result arrives as `datacenters`), resolution itself (`resolving`) or the wire format. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract import annotations as keys
from contract.catalog import Catalog, CudaRequirement
from contract.containers import ContainerSplit
from contract.plan import Plan, Port
from contract.policy import NodePolicy
from webhook.compute import read_cpu_need
from webhook.inputs import Inputs
from webhook.resolving import CpuDemand, Demand, check_cpu_pins, check_cuda, check_pins

__all__ = ["cpu_demand", "gpu_demand", "vcpu_warnings"]


def gpu_demand(
    inputs: Inputs,
    gpu_count: int,
    *,
    datacenters: tuple[str, ...] | None,
    policy: NodePolicy,
    catalog: Catalog,
    ports: tuple[Port, ...],
) -> Demand:
    """A GPU pod's demand: its GPU pins, memory, cloud, cap and CUDA requirement, each checked
    against the catalog first (unknown pins, a CUDA requirement nothing meets)."""
    check_pins(inputs.gpu_types, origin=inputs.origin(keys.GPU_TYPES), catalog=catalog)
    cuda = None
    if inputs.min_cuda_version is not None or inputs.cuda_versions:
        cuda = CudaRequirement(minimum=inputs.min_cuda_version, versions=inputs.cuda_versions or ())
        key = keys.CUDA_VERSIONS if cuda.versions else keys.MIN_CUDA_VERSION
        check_cuda(cuda, origin=inputs.origin(key), catalog=catalog)
    cap = inputs.max_gpu_price if inputs.max_gpu_price is not None else policy.max_gpu_price
    return Demand(
        memory_gb=inputs.required_gpu_memory_gb,
        gpu_count=gpu_count,
        cloud=inputs.cloud,
        max_gpu_price=cap,
        cap_is_users=inputs.max_gpu_price is not None,
        datacenter_ids=datacenters,
        gpu_types=inputs.gpu_types,
        max_candidates=policy.max_candidates,
        # A tcp port, the binder's 22/tcp among them, gives the pod a public IP (its podIP);
        # without one it is addressed only where RunPod's global networking is offered.
        needs_private_address=not inputs.ssh and not any(p.protocol == "tcp" for p in ports),
        cuda=cuda,
    )


def cpu_demand(
    inputs: Inputs,
    spec: Mapping[str, Any],
    split: ContainerSplit,
    *,
    datacenters: tuple[str, ...] | None,
    policy: NodePolicy,
    catalog: Catalog,
) -> CpuDemand:
    """A CPU pod's demand: the running container's cpu and memory, the flavour pins and the
    per-vCPU cap (the pod's, else the node's)."""
    check_cpu_pins(inputs.cpu_types, origin=inputs.origin(keys.CPU_TYPES), catalog=catalog)
    need = read_cpu_need(spec, split.runs_index)
    cap = inputs.max_vcpu_price if inputs.max_vcpu_price is not None else policy.max_vcpu_price
    return CpuDemand(
        cores=need.cores,
        memory_gb=need.memory_gb,
        max_vcpu_price=cap,
        cap_is_users=inputs.max_vcpu_price is not None,
        datacenter_ids=datacenters,
        cpu_types=inputs.cpu_types,
        max_candidates=policy.max_candidates,
    )


def vcpu_warnings(demand: CpuDemand, plan: Plan) -> list[str]:
    """Say so when the first candidate buys more vCPUs than the container asks for (RunPod
    sells powers of two >= 2, and RAM only with vCPUs): the pod pays for them."""
    first = plan.candidates[0]
    vcpus = first.vcpu_count or 0
    if vcpus <= demand.cores + 1e-9:
        return []
    asked = f"cpu {demand.cores:g}" if demand.cores else "no cpu"
    # Short: the apiserver shows at most 120 characters of a warning.
    return [f"{asked}: planned {vcpus} vCPUs ({first.label}); RunPod sells 2, 4, 8, ... vCPUs"]
