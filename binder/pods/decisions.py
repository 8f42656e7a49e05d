"""Pure create decisions: policy re-check, the request body, what each RunPod answer means next,
and how to recover an attempt whose outcome is unknown.

Candidate walk (SPEC §4, notes/runpod-api.md §2.3), as `classify_create_error` encodes it:

    201                        done
    400 (capacity or rule)     next candidate
    403                        next candidate (that pool is closed to this account)
    402                        stop: every create waits (balance), Event
    422, 404 (templateId...)   fail permanently: the pod is Failed, Event
    429                        wait Retry-After, then walk again
    5xx, timeout               ambiguous: the pod may exist; never POST again before looking it
                               up by name and owner marker (the client's `create_pod_safely` does
                               the first lookups; recovery below finishes the job)
    401                        wait (the node goes NotReady elsewhere)

Nothing here awaits, reads the clock or the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from binder.pods.naming import attempt_of
from contract.catalog import Catalog
from contract.plan import Candidate, Plan
from contract.policy import NodePolicy
from runpod_api.errors import (
    RunPodAuthError,
    RunPodBadRequest,
    RunPodError,
    RunPodForbidden,
    RunPodNotFound,
    RunPodPaymentRequired,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
    RunPodUnprocessable,
)
from runpod_api.models import (
    CreateCpuConfig,
    CreateGpuConfig,
    CreateMounts,
    CreatePodRequest,
    NetworkMount,
    Pod,
)

# How long a just-POSTed pod may stay invisible in `GET /v2/pods` (notes §9.2: up to ~30 s).
VISIBILITY_WINDOW: Final = timedelta(seconds=30)
PAYMENT_WAIT: Final = 60.0
AUTH_WAIT: Final = 30.0
NO_CAPACITY_WAIT: Final = 30.0
OTHER_WAIT: Final = 15.0
CLOUDFLARE_WAIT: Final = 300.0
# Statuses in which a RunPod pod no longer exists or holds no GPU.
GONE_STATUSES: Final = frozenset({"TERMINATED"})
IDLE_STATUSES: Final = frozenset({"TERMINATED", "EXITED"})


class Next(StrEnum):
    NEXT_CANDIDATE = "next-candidate"
    STOP_PAYMENT = "stop-payment"
    FAIL = "fail"
    WAIT = "wait"
    AMBIGUOUS = "ambiguous"


class Step(BaseModel):
    """What to do after a failed create: the action, a delay (s) and an Event reason/message."""

    model_config = ConfigDict(frozen=True)

    next: Next
    reason: str
    message: str
    delay: float = 0.0


def classify_create_error(exc: RunPodError) -> Step:
    detail = exc.detail
    if isinstance(exc, RunPodBadRequest):
        reason = "NoCapacity" if exc.is_capacity else "CreateRefused"
        return Step(next=Next.NEXT_CANDIDATE, reason=reason, message=detail)
    if isinstance(exc, RunPodForbidden):
        if exc.is_cloudflare:
            return Step(next=Next.WAIT, reason="RunPodBlocked", message=detail, delay=CLOUDFLARE_WAIT)
        return Step(next=Next.NEXT_CANDIDATE, reason="PoolForbidden", message=detail)
    if isinstance(exc, RunPodPaymentRequired):
        return Step(next=Next.STOP_PAYMENT, reason="PaymentRequired", message=detail, delay=PAYMENT_WAIT)
    if isinstance(exc, RunPodUnprocessable):
        return Step(next=Next.FAIL, reason="CreateRejected", message=detail)
    if isinstance(exc, RunPodNotFound):
        return Step(
            next=Next.FAIL,
            reason="CreateRejected",
            message=f"{detail} (the template or registry credential does not exist)",
        )
    if isinstance(exc, RunPodRateLimited):
        return Step(next=Next.WAIT, reason="RateLimited", message=detail, delay=max(exc.retry_after, 0.1))
    if isinstance(exc, RunPodServerError | RunPodTimeout):
        return Step(next=Next.AMBIGUOUS, reason="CreateUncertain", message=detail, delay=5.0)
    if isinstance(exc, RunPodAuthError):
        return Step(next=Next.WAIT, reason="RunPodUnauthorized", message=detail, delay=AUTH_WAIT)
    return Step(next=Next.WAIT, reason="CreateFailed", message=detail, delay=OTHER_WAIT)


def price_cap(plan: Plan, policy: NodePolicy) -> float:
    """The effective cap per unit the plan buys (per GPU-hour, or per vCPU-hour for a CPU
    plan): the node's, or the pod's own when lower."""
    return min(plan.max_unit_price(), policy.max_unit_price(plan.compute_type))


def describe_purchase(plan: Plan, candidate: Candidate) -> str:
    """What a create buys, for Events: `NVIDIA A40 x2`, `cpu3c x4 vCPU`."""
    if candidate.compute_type == "CPU":
        return candidate.label
    return f"{candidate.label} x{plan.gpu_count}"


def unit_name(plan: Plan) -> str:
    """What the cap is counted in: `GPU` or `vCPU` (as in "USD per GPU-hour")."""
    return "vCPU" if plan.compute_type == "CPU" else "GPU"


def datacenters_for(candidate: Candidate, plan: Plan, policy: NodePolicy) -> list[str] | None:
    """`dataCenterIds` to send: the candidate's own DC, else the plan's list within node policy.

    None = any data center (only when neither the plan nor the node restricts it); an empty
    list means nothing is allowed (a policy violation, see `candidate_violation`).
    """
    if candidate.datacenter_id:
        return [candidate.datacenter_id]
    ids = list(plan.datacenter_ids)
    allowed = policy.allowed_datacenter_ids
    if allowed is not None:
        ids = [dc for dc in (ids or list(allowed)) if dc in allowed]
        return ids
    return ids or None


def candidate_violation(candidate: Candidate, plan: Plan, policy: NodePolicy) -> str | None:
    """Why the node policy forbids spending on this candidate now, or None (defence in depth)."""
    per_unit = plan.unit_price(candidate)
    cap = price_cap(plan, policy)
    if per_unit > cap + 1e-9:
        unit = unit_name(plan)
        return f"{candidate.label} costs ${per_unit:.4g}/{unit}-hour, above the cap ${cap:.4g}"
    if candidate.datacenter_id and not policy.allows_datacenter(candidate.datacenter_id):
        return f"data center {candidate.datacenter_id} is not allowed on this node"
    if datacenters_for(candidate, plan, policy) == []:
        return "none of the plan's data centers is allowed on this node"
    return None


def wants_global_networking(candidate: Candidate, catalog: Catalog | None) -> bool:
    """Join RunPod's global network where the candidate may: an NVIDIA GPU in a data center
    the catalog says has it. It gives the pod a private address (its podIP when it has no
    public one); asked for nowhere else, since RunPod refuses it there (CPU pods never)."""
    return (
        catalog is not None
        and candidate.gpu_type_id is not None
        and catalog.offers_global_network(candidate.gpu_type_id, candidate.datacenter_id)
    )


def compute_of(plan: Plan, candidate: Candidate) -> tuple[CreateGpuConfig | None, CreateCpuConfig | None]:
    """The create body's compute, (`gpu`, `cpu`), exactly one set: the GPU type and count with
    the plan's CUDA requirement, or the CPU flavour and vCPU count (a CPU plan buys no GPU)."""
    if candidate.cpu_type_id is not None and candidate.vcpu_count is not None:
        return None, CreateCpuConfig(id=candidate.cpu_type_id, vcpu_count=candidate.vcpu_count)
    gpu = CreateGpuConfig(
        id=candidate.gpu_type_id or "",
        count=plan.gpu_count,
        min_cuda_version=plan.min_cuda_version,
        allowed_cuda_versions=list(plan.cuda_versions) or None,
    )
    return gpu, None


def build_create_request(
    *,
    name: str,
    plan: Plan,
    candidate: Candidate,
    policy: NodePolicy,
    image: str,
    args: str,
    env: Mapping[str, str],
    markers: Mapping[str, str],
    global_networking: bool = False,
    registry: str | None = None,
    network_volume: tuple[str, str] | None = None,
) -> CreatePodRequest:
    """Everything the pod asks for; the owner markers win over any user variable of that name.
    `registry`: the credential id from the pod's pull secrets (the plan's own id wins);
    `network_volume`: (volume id, mount path) of its network volume."""
    gpu, cpu = compute_of(plan, candidate)
    return CreatePodRequest(
        name=name,
        image=image or None,
        template_id=plan.template_id,
        gpu=gpu,
        cpu=cpu,
        cloud=plan.cloud,
        data_center_ids=datacenters_for(candidate, plan, policy),
        disk=plan.container_disk_gb,
        ports=[str(p) for p in plan.ports],
        env={**env, **markers},
        args=args or None,
        registry=plan.registry_auth_id or registry,
        mounts=CreateMounts(network=[NetworkMount(volume_id=network_volume[0], path=network_volume[1])])
        if network_volume
        else None,
        global_networking=True if global_networking else None,
    )


def next_attempt(recorded: str | None) -> int:
    """The attempt number of the next create: one past the recorded attempt name, else 0."""
    if not recorded:
        return 0
    previous = attempt_of(recorded)
    return 0 if previous is None else previous + 1


class RecoveryKind(StrEnum):
    ADOPT = "adopt"
    CREATE = "create"
    WAIT = "wait"


class Recovery(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: RecoveryKind
    adopt: Pod | None = None
    # Extra RunPod pods of the same Kubernetes pod: terminate them (never two billing).
    duplicates: tuple[Pod, ...] = ()
    delay: float = 0.0


def choose_kept(matches: Sequence[Pod], *, preferred_id: str | None, preferred_name: str | None) -> Pod:
    """Which of several RunPod pods of one Kubernetes pod to keep: the recorded one, else the newest."""
    for pod in matches:
        if preferred_id and pod.id == preferred_id:
            return pod
    for pod in matches:
        if preferred_name and pod.name == preferred_name:
            return pod
    return max(matches, key=lambda p: (attempt_of(p.name) or -1, p.created_at or datetime.min, p.id))


def recover_attempt(
    *,
    matches: Iterable[Pod],
    recorded_attempt: str | None,
    attempt_resolved: bool,
    attempt_made_before: datetime,
    snapshot_taken_at: datetime,
    window: timedelta = VISIBILITY_WINDOW,
) -> Recovery:
    """A pod with no recorded RunPod id: adopt what the list shows, create, or wait for a fresher list.

    `matches` are the listed RunPod pods whose marker names this cluster and this pod's UID.
    `attempt_resolved` = this process saw a definitive answer for the recorded attempt (no pod
    was created). `attempt_made_before` bounds when the recorded attempt's POST could have been
    sent (the moment it was recorded in this process, or this process's start for an inherited
    one). A recorded attempt without a match is only given up once a list taken `window` after
    that moment still does not show it: RunPod may show a new pod late.
    """
    live = [p for p in matches if p.status not in GONE_STATUSES]
    if live:
        kept = choose_kept(live, preferred_id=None, preferred_name=recorded_attempt)
        return Recovery(
            kind=RecoveryKind.ADOPT, adopt=kept, duplicates=tuple(p for p in live if p.id != kept.id)
        )
    if not recorded_attempt or attempt_resolved:
        return Recovery(kind=RecoveryKind.CREATE)
    deadline = attempt_made_before + window
    if snapshot_taken_at >= deadline:
        return Recovery(kind=RecoveryKind.CREATE)
    return Recovery(kind=RecoveryKind.WAIT, delay=(deadline - snapshot_taken_at).total_seconds())
