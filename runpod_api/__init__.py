"""runpod_api: the typed async client for RunPod REST v2 (the only code that talks to RunPod).

Layout: `client` (HTTP, pacing, retries, safe create, log stream), `errors` (the exception
tree), `models` (pydantic payloads), `ratelimit` and `backoff` (pure pacing and retry
decisions), `logstream` (SSE decoding and resume points), `metrics` (Prometheus instruments).
It knows nothing of Kubernetes, the binder or the sandbox emulator.
"""

from runpod_api.backoff import RetryPolicy
from runpod_api.client import RunPodClient, find_created_pods
from runpod_api.errors import (
    RunPodAuthError,
    RunPodBadRequest,
    RunPodConflict,
    RunPodError,
    RunPodForbidden,
    RunPodNotFound,
    RunPodPaymentRequired,
    RunPodProtocolError,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
    RunPodUnprocessable,
)
from runpod_api.metrics import RunPodMetrics
from runpod_api.models import (
    CpuConfig,
    CreateCpuConfig,
    CreateGpuConfig,
    CreatePodRequest,
    GpuConfig,
    LogEvent,
    Pod,
    PodRuntime,
    RuntimePort,
)
from runpod_api.ratelimit import RateLimitState

__all__ = [
    "CpuConfig",
    "CreateCpuConfig",
    "CreateGpuConfig",
    "CreatePodRequest",
    "GpuConfig",
    "LogEvent",
    "Pod",
    "PodRuntime",
    "RateLimitState",
    "RetryPolicy",
    "RunPodAuthError",
    "RunPodBadRequest",
    "RunPodClient",
    "RunPodConflict",
    "RunPodError",
    "RunPodForbidden",
    "RunPodMetrics",
    "RunPodNotFound",
    "RunPodPaymentRequired",
    "RunPodProtocolError",
    "RunPodRateLimited",
    "RunPodServerError",
    "RunPodTimeout",
    "RunPodUnprocessable",
    "RuntimePort",
    "find_created_pods",
]
