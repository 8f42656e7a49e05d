"""Settings both processes read, so the chart passes the same values to both.

Flags and environment variables carry the same names (`--max-gpu-price` = `MAX_GPU_PRICE`);
the chart's values map onto them one to one. Each process subclasses `NodeSettings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.policy import (
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_GPU_PRICE,
    DEFAULT_MAX_VCPU_PRICE,
    DEFAULT_NAMESPACE,
    DEFAULT_NODE_NAME,
    ComputeType,
    NodePolicy,
    parse_id_list,
)

LogLevel = Literal["debug", "info", "warn", "warning", "error"]


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        populate_by_name=True,
        extra="ignore",
    )

    node_name: str = Field(
        default=DEFAULT_NODE_NAME,
        validation_alias=AliasChoices("node_name", "nodename"),
        description="name of the virtual node",
    )
    namespace: str = Field(
        default=DEFAULT_NAMESPACE, description="namespace of the catalog ConfigMap and leases"
    )
    kubeconfig: str | None = Field(default=None, description="kubeconfig path; in-cluster config when unset")
    log_level: LogLevel = Field(default="info", description="debug, info, warn or error")
    max_gpu_price: float = Field(
        default=DEFAULT_MAX_GPU_PRICE, gt=0, description="node cap, USD per GPU-hour"
    )
    max_vcpu_price: float = Field(
        default=DEFAULT_MAX_VCPU_PRICE, gt=0, description="node cap for CPU pods, USD per vCPU-hour"
    )
    datacenter_ids: str = Field(
        default="", description="comma list of allowed RunPod data centers; empty = any"
    )
    max_candidates: int = Field(
        default=DEFAULT_MAX_CANDIDATES, ge=1, le=50, description="GPU candidates kept in a plan"
    )

    default_compute_type: ComputeType = Field(
        default="CPU",
        description="what a pod without an nvidia.com/gpu limit buys: CPU (a RunPod CPU pod) "
        "or GPU (one GPU, as before CPU pods); runpod.io/compute-type overrides it per pod",
    )

    def node_policy(self) -> NodePolicy:
        allowed = parse_id_list(self.datacenter_ids)
        return NodePolicy(
            node_name=self.node_name,
            allowed_datacenter_ids=allowed or None,
            max_gpu_price=self.max_gpu_price,
            max_vcpu_price=self.max_vcpu_price,
            max_candidates=self.max_candidates,
            default_compute_type=self.default_compute_type,
        )
