"""The binder's settings: everything the process reads at start-up, read once, passed down.

Owns the binder-only flags on top of `contract.settings.NodeSettings` (node name, namespace,
kubeconfig, price cap, data centers, log level are shared with the webhook). Flags are kebab-case
and environment variables the upper-case field names (`--gpu-budget` = `GPU_BUDGET`); a few
fields also accept the names the Deployment's downward API and Secret provide (`RUNPOD_API_KEY`,
`POD_NAME`, `POD_IP`). The seed's flags (`--nodename`, `--namespace`, `--max-gpu-price`,
`--log-level`, `--reconcile-interval`, `--datacenter-ids`, `--kubeconfig`) keep working.

Nothing here does I/O: `load_binder_settings(argv)` parses flags + environment and validates.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Final, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from contract.settings import NodeSettings

__all__ = ["SSH_KEY_SECRET", "BinderSettings", "default_identity", "load_binder_settings"]

# The default name of the Secret with the binder's SSH key pair (`binder.ssh.keys`).
SSH_KEY_SECRET: Final = "runpod-kubelet-ssh"


def default_identity() -> str:
    """hostname + pid: unique per process even when two replicas share a host (tests, demo)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class BinderSettings(NodeSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="runpod-kubelet binder",
        populate_by_name=True,
        extra="ignore",
    )

    # --- RunPod -------------------------------------------------------------------------------
    runpod_api_key: SecretStr = Field(
        validation_alias=AliasChoices("runpod-api-key", "runpod_api_key", "RUNPOD_API_KEY"),
        description="RunPod API key (prefer the RUNPOD_API_KEY environment variable)",
    )
    runpod_base_url: str = Field(
        default="https://api.runpod.io", description="RunPod REST base URL (the sandbox's URL in tests)"
    )

    # --- pod lifecycle (engineer G's loops) ---------------------------------------------------
    reconcile_interval: float = Field(default=30, gt=0, description="steady-state status sync, seconds")
    fast_interval: float = Field(
        default=5, gt=0, description="status sync while any pod is changing state, seconds"
    )
    gpu_budget: int = Field(
        default=4,
        ge=0,
        description="concurrent GPUs (node capacity nvidia.com/gpu; the scheduler enforces it)",
    )
    cpu_budget: int = Field(
        default=64,
        ge=0,
        description="concurrent vCPUs: node capacity cpu (the scheduler counts every pod's cpu requests "
        "against it) and the most vCPUs this node's RunPod CPU pods may hold together",
    )
    max_spend_per_hour: float | None = Field(
        default=None, gt=0, description="ceiling on the summed cost of live pods, USD/hour; unset = none"
    )
    sweep_interval: float = Field(default=60, gt=0, description="orphan sweep period, seconds")
    sweep_grace_seconds: float = Field(
        default=120, ge=0, description="age before an orphaned RunPod pod of this cluster is terminated"
    )
    cluster_id: str | None = Field(
        default=None, description="owner-marker cluster id; default: the kube-system namespace UID"
    )

    # --- node capacity ------------------------------------------------------------------------
    memory_capacity: str = Field(default="4Ti", description="node capacity memory")
    pods_capacity: int = Field(default=1000, ge=1, description="node capacity pods")

    # --- leader election (client-go semantics) ------------------------------------------------
    leader_election: bool = Field(default=True, description="elect a leader among replicas via a Lease")
    lease_duration: float = Field(default=15, gt=0, description="leader lease duration, seconds")
    renew_deadline: float = Field(
        default=10, gt=0, description="leader gives up if it cannot renew within this, seconds"
    )
    retry_period: float = Field(default=2, gt=0, description="election retry / renew period, seconds")
    identity: str = Field(
        default_factory=default_identity,
        validation_alias=AliasChoices("identity", "POD_NAME"),
        description="this replica's election identity (downward API pod name)",
    )

    # --- kubelet API (engineer H's server) ----------------------------------------------------
    node_address: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("node-address", "node_address", "POD_IP"),
        description="InternalIP the apiserver connects to for kubectl logs",
    )
    kubelet_port: int = Field(default=10250, ge=1, le=65535, description="kubelet API HTTPS port")
    kubelet_client_ca_file: str | None = Field(
        default=None, description="CA that signs the apiserver's kubelet client certificate"
    )
    kubelet_tls_cert_file: str | None = Field(
        default=None, description="kubelet API serving certificate; self-signed when unset"
    )
    kubelet_tls_key_file: str | None = Field(default=None, description="key of the serving certificate")
    kubelet_serving_csr: bool = Field(
        default=False,
        description="request the serving certificate from the cluster (CSR, signer kubernetes.io/kubelet-serving)",
    )
    stream_connect_timeout: float = Field(
        default=20,
        gt=0,
        description="kubectl exec/attach/port-forward: seconds to reach and log in to the pod's sshd",
    )
    stream_idle_timeout: float = Field(
        default=4 * 3600,
        ge=0,
        description=(
            "kubectl exec/attach/port-forward: close a session after this many seconds without data "
            "either way (0: never; the kubelet's default is 4 h)"
        ),
    )

    # --- SSH (kubectl exec, attach, port-forward) ----------------------------------------------
    ssh_key_secret: str = Field(
        default=SSH_KEY_SECRET,
        min_length=1,
        description="Secret holding the binder's SSH key pair for RunPod pods (created if absent)",
    )
    ssh_key_namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ssh-key-namespace", "ssh_key_namespace", "POD_NAMESPACE"),
        description="namespace of --ssh-key-secret; default: --namespace (the chart: the release namespace)",
    )

    # --- node ---------------------------------------------------------------------------------
    node_status_interval: float = Field(
        default=10,
        gt=0,
        description="seconds between node status pushes (each probes RunPod) and node Lease renewals",
    )

    # --- health and catalog -------------------------------------------------------------------
    health_port: int = Field(default=8080, ge=0, le=65535, description="/healthz /readyz /metrics port")
    health_host: str = Field(default="0.0.0.0", description="/healthz /readyz /metrics bind address")
    catalog_refresh_interval: float = Field(
        default=300, gt=0, description="catalog ConfigMap refresh period, seconds"
    )

    @property
    def ssh_key_secret_namespace(self) -> str:
        return self.ssh_key_namespace or self.namespace

    @model_validator(mode="after")
    def _check_timings(self) -> Self:
        # client-go rejects these combinations too: a leader could lose its lease before it
        # notices, and two replicas would both write.
        if self.renew_deadline >= self.lease_duration:
            raise ValueError("renew-deadline must be shorter than lease-duration")
        if self.retry_period >= self.renew_deadline:
            raise ValueError("retry-period must be shorter than renew-deadline")
        if (self.kubelet_tls_cert_file is None) != (self.kubelet_tls_key_file is None):
            raise ValueError("kubelet-tls-cert-file and kubelet-tls-key-file go together")
        return self


def load_binder_settings(argv: Sequence[str]) -> BinderSettings:
    """Flags (`argv`) over environment over defaults. Raises `pydantic.ValidationError` or
    `SystemExit` (argparse: `--help`, unknown flag) like any CLI."""
    return BinderSettings(_cli_parse_args=list(argv))
