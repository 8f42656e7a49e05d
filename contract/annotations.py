"""Annotation keys: user inputs (`runpod.io/*`), the plan (`plan.runpod.io/*`), binder state.

Three families with three owners:
- inputs: written by users on a Pod or its Job; validated by the webhook at CREATE, frozen after.
- plan: written only by the mutating webhook (users cannot forge it: the webhook rejects any
  `plan.runpod.io/*` key on an incoming pod and overwrites the whole family).
- state: written only by the binder, the one process that talks to RunPod.
"""

from __future__ import annotations

from typing import Final

INPUT_PREFIX: Final = "runpod.io/"
PLAN_PREFIX: Final = "plan.runpod.io/"

# --- user inputs (SPEC §2) --------------------------------------------------------------
REQUIRED_GPU_MEMORY: Final = "runpod.io/required-gpu-memory"
GPU_TYPES: Final = "runpod.io/gpu-types"
MAX_GPU_PRICE: Final = "runpod.io/max-gpu-price"
CLOUD_TYPE: Final = "runpod.io/cloud-type"
DATACENTER_IDS: Final = "runpod.io/datacenter-ids"
PORTS: Final = "runpod.io/ports"
CONTAINER_REGISTRY_AUTH_ID: Final = "runpod.io/container-registry-auth-id"
TEMPLATE_ID: Final = "runpod.io/templateId"
CONTAINER_DISK_GB: Final = "runpod.io/container-disk-gb"
# Containers and init containers RunPod may leave out (one container per RunPod pod), by name.
DROP_CONTAINERS: Final = "runpod.io/drop-containers"
# GPU or CPU: what the pod buys. Default: GPU with an nvidia.com/gpu limit, else a CPU pod.
COMPUTE_TYPE: Final = "runpod.io/compute-type"
# A GPU pod's CUDA requirement: a floor, or an exact set (RunPod `gpu.minCudaVersion` /
# `gpu.allowedCudaVersions`), never both.
MIN_CUDA_VERSION: Final = "runpod.io/min-cuda-version"
CUDA_VERSIONS: Final = "runpod.io/cuda-versions"
# A CPU pod's flavour pin and price cap (USD per vCPU-hour).
CPU_TYPES: Final = "runpod.io/cpu-types"
MAX_VCPU_PRICE: Final = "runpod.io/max-vcpu-price"
# `disabled`: the binder adds neither its SSH key nor `22/tcp` to the RunPod pod, so `kubectl
# exec`, `attach` and `port-forward` cannot reach it. Read from the pod only (binder.ssh.access).
SSH: Final = "runpod.io/ssh"
SSH_ENABLED: Final = "enabled"
SSH_DISABLED: Final = "disabled"
SSH_VALUES: Final[tuple[str, ...]] = (SSH_ENABLED, SSH_DISABLED)

INPUT_KEYS: Final[tuple[str, ...]] = (
    REQUIRED_GPU_MEMORY,
    GPU_TYPES,
    MAX_GPU_PRICE,
    CLOUD_TYPE,
    DATACENTER_IDS,
    PORTS,
    CONTAINER_REGISTRY_AUTH_ID,
    TEMPLATE_ID,
    CONTAINER_DISK_GB,
    DROP_CONTAINERS,
    COMPUTE_TYPE,
    MIN_CUDA_VERSION,
    CUDA_VERSIONS,
    CPU_TYPES,
    MAX_VCPU_PRICE,
    SSH,
)
# Inputs that only mean something for one compute type: on a pod of the other, refused.
GPU_ONLY_INPUTS: Final[tuple[str, ...]] = (
    REQUIRED_GPU_MEMORY,
    GPU_TYPES,
    MAX_GPU_PRICE,
    MIN_CUDA_VERSION,
    CUDA_VERSIONS,
)
CPU_ONLY_INPUTS: Final[tuple[str, ...]] = (CPU_TYPES, MAX_VCPU_PRICE)

# --- binder state (SPEC §2 "State") --------------------------------------------------------
# The deterministic RunPod pod name of the create attempt in flight, recorded *before* the POST
# so a crash between POST and recording the id is recovered by looking the name up.
CREATE_ATTEMPT: Final = "runpod.io/create-attempt"
POD_ID: Final = "runpod.io/pod-id"
CHOSEN_GPU_TYPE: Final = "runpod.io/gpu-type"
# A CPU pod's flavour and vCPU count, as RunPod reports them.
CHOSEN_CPU_TYPE: Final = "runpod.io/cpu-type"
CHOSEN_VCPU_COUNT: Final = "runpod.io/vcpu-count"
CHOSEN_DATACENTER: Final = "runpod.io/datacenter-id"
COST_PER_HOUR: Final = "runpod.io/cost-per-hour"
PUBLIC_IP: Final = "runpod.io/public-ip"
PORT_MAPPINGS: Final = "runpod.io/port-mappings"
LAST_FAILURE: Final = "runpod.io/last-failure"
# Set once the RunPod pod is confirmed gone (DELETE answered 204 or 404).
TERMINATED: Final = "runpod.io/terminated"
# The exit code seen on the log stream (completion wrapper), once known.
EXIT_CODE: Final = "runpod.io/exit-code"
# The SSH host key the binder trusted on its first connection to the RunPod pod, as
# "<RunPod pod id> <key type> <base64>" (trust on first use: RunPod reports no host keys; see
# binder.ssh.pinning).
SSH_HOST_KEY: Final = "runpod.io/ssh-host-key"
# The RunPod registry credential the binder made from the pod's image pull secrets (its id only:
# the credential itself never leaves the Secret and RunPod). Recorded with the create attempt,
# before the POST, so no credential a pod may be using is ever deleted as unused.
REGISTRY_AUTH_ID: Final = "runpod.io/registry-auth-id"
# The RunPod network volume mounted into the pod (from its PersistentVolumeClaim).
NETWORK_VOLUME_ID: Final = "runpod.io/network-volume-id"

STATE_KEYS: Final[tuple[str, ...]] = (
    CREATE_ATTEMPT,
    POD_ID,
    CHOSEN_GPU_TYPE,
    CHOSEN_CPU_TYPE,
    CHOSEN_VCPU_COUNT,
    CHOSEN_DATACENTER,
    COST_PER_HOUR,
    PUBLIC_IP,
    PORT_MAPPINGS,
    LAST_FAILURE,
    TERMINATED,
    EXIT_CODE,
    SSH_HOST_KEY,
    REGISTRY_AUTH_ID,
    NETWORK_VOLUME_ID,
)

# Every key under `runpod.io/` that the project defines. Anything else under that prefix is a
# typo until proven otherwise and is rejected with a "did you mean" (typos must not cost money).
KNOWN_RUNPOD_KEYS: Final[frozenset[str]] = frozenset(INPUT_KEYS) | frozenset(STATE_KEYS)


def is_runpod_key(key: str) -> bool:
    return key.startswith(INPUT_PREFIX)


def is_plan_key(key: str) -> bool:
    return key.startswith(PLAN_PREFIX)
