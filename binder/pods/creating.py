"""Creating: turn a bound pod's plan into exactly one RunPod pod, or a clear reason why not.

Order of operations for one pod (one worker at a time per pod, see `controller`):

1. Recover: if this cluster's RunPod pods for this pod UID already exist in the latest list,
   adopt one (terminate extras) and record its id. A recorded attempt with no visible pod is
   only given up once a list taken `VISIBILITY_WINDOW` after the attempt still does not show it.
2. Gate: creates paused after a 402; exactly one container to run (the others named in the
   plan's drop list, an Event says which do not run); env refs resolved (a missing required ref
   -> waiting CreateContainerConfigError, Mandatory*NotFound Events, retry; an absent optional
   one -> Optional*NotFound Events, proceed); node policy
   re-checked per candidate (price cap, allowed data centers); budgets (GPU budget, spend
   ceiling) with a ledger reservation.
3. For each candidate: record intent (`runpod.io/create-attempt` = the deterministic name)
   BEFORE the POST, as a compare-and-swap on the pod's resourceVersion; `create_pod_safely` (an
   ambiguous answer is looked up by name + marker before any second POST); record the id
   (`runpod.io/pod-id`) right after.
4. When every candidate tried was refused for capacity, ask the catalog publisher for a fresh
   catalog, so the webhook's next plans stop offering what RunPod no longer has.

Never two RunPod pods for one Kubernetes pod UID: a crash before the intent write means no POST
was sent; a crash after it is recovered in step 1 from the one list call; a pod that surfaces
late anyway is terminated as a duplicate by `syncing` (it carries the same UID marker).

Never two writers either: the leadership fence (`PodContext.fence`) is checked right before the
intent write and right before the POST, and the intent write itself only lands on the pod version
this worker decided on. A deposed leader that wakes up mid-walk therefore either stops at the
fence or loses the compare-and-swap (409) to whatever the new leader wrote, and sends no POST.

Returns the delay after which the worker should look at the pod again (None = on the next event
or sync tick).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from binder.pods.budgets import Usage, budget_violation
from binder.pods.completion import runpod_args, wants_wrapper
from binder.pods.containers import NOT_RUN_REASON, not_run_message, unsupported_containers
from binder.pods.context import PodContext
from binder.pods.decisions import (
    Next,
    RecoveryKind,
    Step,
    build_create_request,
    candidate_violation,
    classify_create_error,
    describe_purchase,
    next_attempt,
    price_cap,
    recover_attempt,
    unit_name,
    wants_global_networking,
)
from binder.pods.env import (
    EnvResolution,
    EnvSources,
    config_error,
    decode_secret_data,
    ref_event,
    referenced_objects,
    resolve_env,
)
from binder.pods.naming import POD_UID_ENV, owner_markers, runpod_pod_name
from binder.pods.state import pod_annotations
from binder.pods.status import CREATE_CONTAINER_CONFIG_ERROR, Failure, state_annotations
from binder.registries.pulling import PullDecision, decide_pull, pull_secret_names
from binder.ssh.access import with_ssh_access
from binder.volumes.mounts import NetworkMountPlan, claim_refs, plan_network_mount
from contract.annotations import CREATE_ATTEMPT, LAST_FAILURE, NETWORK_VOLUME_ID, POD_ID, REGISTRY_AUTH_ID
from contract.containers import running_container, split_containers
from contract.plan import Plan, PlanError, plan_from_annotations
from kit.kube import Conflict
from runpod_api.errors import RunPodError
from runpod_api.models import Pod

log = logging.getLogger(__name__)

ENV_RETRY = 15.0
BUDGET_RETRY = 30.0
NO_CAPACITY_RETRY = 30.0
SNAPSHOT_RETRY = 1.0
# The pod changed under the intent write (409): look again once the watch cache caught up.
CONFLICT_RETRY = 1.0
CAPACITY_REASON = "NoCapacity"
VOLUME_RETRY = 10.0
VOLUME_WAIT_REASON = "NetworkVolumeNotReady"


@dataclass(frozen=True)
class Attachments:
    """What a create takes besides the plan: the registry credential made from the pod's pull
    secrets, and its network volume."""

    registry_id: str | None = None
    mount: NetworkMountPlan | None = None

    def state(self) -> dict[str, str]:
        """The state annotations recording them, written with the create intent (before the POST)."""
        recorded: dict[str, str] = {}
        if self.registry_id:
            recorded[REGISTRY_AUTH_ID] = self.registry_id
        if self.mount is not None:
            recorded[NETWORK_VOLUME_ID] = self.mount.volume_id
        return recorded


_OUTCOMES = {
    "NoCapacity": "no_capacity",
    "CreateRefused": "refused",
    "PoolForbidden": "forbidden",
    "PaymentRequired": "payment_required",
    "CreateRejected": "rejected",
    "RateLimited": "rate_limited",
    "CreateUncertain": "uncertain",
}


def wants_catalog_refresh(reasons: Sequence[str]) -> bool:
    """Did a walk try candidates and find every one of them out of capacity (400)?

    Then the published catalog promised stock RunPod does not have: a refresh now spares the
    next pods a walk through the same dead candidates. Candidates skipped before any POST
    (policy, budget) or refused for another reason say nothing about the catalog.
    """
    return bool(reasons) and all(reason == CAPACITY_REASON for reason in reasons)


async def ensure_created(ctx: PodContext, pod: Mapping[str, Any]) -> float | None:
    metadata = pod["metadata"]
    uid: str = metadata["uid"]
    known = ctx.known_for(uid)
    annotations = known.effective(pod_annotations(pod))

    try:
        plan = plan_from_annotations(annotations)
    except PlanError as exc:
        if _is_daemonset_pod(pod):
            # Failing it would make the DaemonSet controller recreate it in a loop: it waits.
            why = "DaemonSet pods do not run on the RunPod virtual node"
            known.wait(why)
            await ctx.event(pod, "Warning", "Unsupported", why)
            return None
        await _fail(ctx, pod, Failure(reason="InvalidPlan", message=f"cannot run this pod: {exc}"))
        return 0.0

    snapshot = ctx.snapshot
    if snapshot is None:
        return SNAPSHOT_RETRY

    recorded = annotations.get(CREATE_ATTEMPT)
    recovery = recover_attempt(
        matches=snapshot.ours(uid),
        recorded_attempt=recorded,
        attempt_resolved=known.attempt_resolved,
        attempt_made_before=known.attempt_at or ctx.started_at,
        snapshot_taken_at=snapshot.taken_at,
        window=ctx.visibility_window,
    )
    if recovery.kind is RecoveryKind.ADOPT and recovery.adopt is not None:
        await _adopt(ctx, pod, recovery.adopt, plan, duplicates=recovery.duplicates)
        return 0.0
    if recovery.kind is RecoveryKind.WAIT:
        known.wait("confirming whether an earlier create attempt reached RunPod")
        return recovery.delay

    if (paused := ctx.creates_paused()) > 0:
        known.wait("creates paused: the RunPod account balance is too low (402)")
        return paused

    split = split_containers(pod.get("spec") or {}, plan.drop_containers)
    if split.runs is None or split.extra or split.extra_init:
        # Admission refuses such pods; one that got here anyway (admitted before the check, or
        # without the validating webhook) is not run with containers silently missing.
        await _fail(ctx, pod, Failure(reason="UnsupportedContainers", message=unsupported_containers(split)))
        return 0.0
    container = running_container(pod, plan.drop_containers)
    resolution = await _resolve_env(ctx, pod, container)
    if not resolution.complete:
        known.wait(
            config_error(resolution.missing, namespace=pod["metadata"]["namespace"]),
            reason=CREATE_CONTAINER_CONFIG_ERROR,
        )
        for ref in resolution.missing:
            reason, message = ref_event(ref, optional=False)
            await ctx.event(pod, "Warning", reason, message)
        return ENV_RETRY
    known.wait(None)
    for ref in resolution.absent_optional:
        reason, message = ref_event(ref, optional=True)
        await ctx.event(pod, "Warning", reason, message)
    for warning in resolution.warnings:
        await ctx.event(pod, "Warning", "EnvSkipped", warning)

    restart_policy = (pod.get("spec") or {}).get("restartPolicy")
    if restart_policy in ("Never", "OnFailure") and not wants_wrapper(
        restart_policy=restart_policy, container=container
    ):
        await ctx.event(
            pod,
            "Warning",
            "CompletionNotTracked",
            "the container sets no `command`, so its exit cannot be observed on RunPod; "
            "the pod stays Running until it is deleted",
        )
    if (split.not_run or split.not_run_init) and not known.attempt_at:
        await ctx.event(pod, "Warning", NOT_RUN_REASON, not_run_message(split))
    args = runpod_args(restart_policy=restart_policy, container=container, uid=uid)

    mount, unmountable = await _network_mount(ctx, pod, container)
    if unmountable is not None:
        known.wait(unmountable, reason=VOLUME_WAIT_REASON)
        await ctx.event(pod, "Warning", VOLUME_WAIT_REASON, f"waiting: {unmountable}")
        return VOLUME_RETRY
    pull = await _pull_decision(ctx, pod, container, plan)
    if pull.event is not None:
        await ctx.event(pod, "Warning", *pull.event)
    if pull.wait_reason is not None:
        known.wait(pull.wait_message, reason=pull.wait_reason)
        return ENV_RETRY
    registry_id: str | None = None
    if pull.credential is not None and ctx.registries is not None:
        registry_id = await ctx.registries.ensure(pull.credential)
    holding = (
        ctx.registries.using(registry_id)
        if registry_id is not None and ctx.registries is not None
        else contextlib.nullcontext()
    )
    with holding:
        attachments = Attachments(registry_id=registry_id, mount=mount)
        return await _walk(ctx, pod, plan, container, resolution.env, args, recorded, attachments)


async def _network_mount(
    ctx: PodContext, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> tuple[NetworkMountPlan | None, str | None]:
    """The pod's network volume as its claim and PV say now (read from the API, not a cache)."""
    spec = pod.get("spec") or {}
    refs = claim_refs(spec)
    if not refs:
        return None, None
    namespace = pod["metadata"]["namespace"]
    claims: dict[str, Mapping[str, Any] | None] = {}
    volumes: dict[str, Mapping[str, Any] | None] = {}
    for _, claim_name in refs:
        claim = claims[claim_name] = await ctx.kube.read_claim(namespace, claim_name)
        pv_name = ((claim or {}).get("spec") or {}).get("volumeName")
        if pv_name and pv_name not in volumes:
            volumes[pv_name] = await ctx.kube.read_volume(pv_name)
    return plan_network_mount(spec=spec, container=container, claims=claims, volumes=volumes)


async def _pull_decision(
    ctx: PodContext, pod: Mapping[str, Any], container: Mapping[str, Any], plan: Plan
) -> PullDecision:
    """The pod's pull secrets (else its ServiceAccount's), read and judged (`pulling`)."""
    if plan.registry_auth_id or ctx.registries is None:
        return PullDecision()  # runpod.io/container-registry-auth-id wins
    spec = pod.get("spec") or {}
    namespace = pod["metadata"]["namespace"]
    names = pull_secret_names(spec)
    if not names:
        account = await ctx.kube.read_service_account(namespace, spec.get("serviceAccountName") or "default")
        names = pull_secret_names(account or {})
    secrets = {name: await ctx.kube.read_secret(namespace, name) for name in names}
    return decide_pull(str(container.get("image") or ""), names, secrets)


async def _walk(
    ctx: PodContext,
    pod: Mapping[str, Any],
    plan: Plan,
    container: Mapping[str, Any],
    env: Mapping[str, str],
    args: str,
    recorded: str | None,
    attachments: Attachments,
) -> float | None:
    metadata = pod["metadata"]
    mount = attachments.mount
    uid: str = metadata["uid"]
    known = ctx.known_for(uid)
    skipped: list[str] = []
    over_budget: str | None = None
    last: Step | None = None
    refusals: list[str] = []  # reasons of the candidates RunPod refused, in order
    # The pod as the API server last answered: each intent write is a compare-and-swap on its
    # resourceVersion, so the next candidate's write must build on our own previous one.
    current: Mapping[str, Any] = pod

    for candidate in plan.candidates:
        violation = candidate_violation(candidate, plan, ctx.policy)
        if violation is None and mount is not None:
            violation = _volume_violation(candidate.datacenter_id, plan, ctx, mount)
        if violation is not None:
            skipped.append(violation)
            continue
        usage = ctx.ledger.usage(excluding=uid)
        vcpus = candidate.vcpu_count or 0
        over = budget_violation(
            usage=usage,
            gpus=plan.gpu_count,
            usd_per_hour=candidate.usd_per_hour,
            gpu_budget=ctx.settings.gpu_budget,
            max_spend_per_hour=ctx.settings.max_spend_per_hour,
            vcpus=vcpus,
            cpu_budget=ctx.settings.cpu_budget,
        )
        if over is not None:
            over_budget = over_budget or over
            continue
        # Reserve before any await so a concurrent worker sees this pod's share.
        now = ctx.clock()
        share = Usage(gpus=plan.gpu_count, usd_per_hour=candidate.usd_per_hour, vcpus=vcpus)
        ctx.ledger.reserve(uid, share, at=now)

        attempt = next_attempt(recorded)
        name = runpod_pod_name(cluster_id=ctx.cluster_id, uid=uid, attempt=attempt)
        markers = owner_markers(
            cluster_id=ctx.cluster_id,
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=uid,
            attempt=attempt,
        )
        request = build_create_request(
            name=name,
            plan=plan,
            candidate=candidate,
            policy=ctx.policy,
            image=container.get("image", ""),
            args=args,
            env=env,
            markers=markers,
            global_networking=wants_global_networking(candidate, ctx.catalog()),
            registry=attachments.registry_id,
            network_volume=(mount.volume_id, mount.path) if mount is not None else None,
        )
        # The binder's SSH key and 22/tcp, for kubectl exec/attach/port-forward (unless opted out).
        request = with_ssh_access(request, public_key=ctx.ssh_public_key, annotations=pod_annotations(pod))
        if mount is not None:
            # RunPod mounts a network volume only into a pod of its own data center.
            request = request.model_copy(update={"data_center_ids": [mount.datacenter_id]})
        # Intent first. If this write fails no POST is sent, and nothing needs recovering.
        known.attempt_at = now
        known.attempt_resolved = False
        try:
            written = await ctx.record_intent(current, name, attachments.state())
        except Conflict:
            # Someone changed the pod since we read it: maybe only our own earlier write the
            # cache had not shown yet, maybe another binder replica recording ITS attempt (which
            # it may be POSTing now). Until a fresh read says otherwise, treat the attempt the
            # pod records as just made: recovery waits for the list to show it before
            # superseding it, which can cost a wait but never a second pod.
            known.attempt_at = ctx.clock()
            ctx.ledger.release(uid)
            log.info("pod %s/%s changed under the create-attempt write; looking again", *_ref(metadata))
            return CONFLICT_RETRY
        except BaseException:
            known.attempt_resolved = True
            ctx.ledger.release(uid)
            raise
        current = written
        recorded = name
        if (written.get("metadata") or {}).get("deletionTimestamp"):
            # Deleted while we decided: spend nothing; the deletion path takes over.
            known.attempt_resolved = True
            ctx.ledger.release(uid)
            return 0.0
        log.info(
            "creating RunPod pod %s for %s/%s on %s",
            name,
            metadata["namespace"],
            metadata["name"],
            candidate.label,
        )
        # Checked again right before spending: the intent write may have taken long enough for
        # the lease to lapse. Intent recorded without a POST is safe: recovery looks it up.
        ctx.fence()
        try:
            created = await ctx.runpod.create_pod_safely(request, marker_env=POD_UID_ENV, marker_value=uid)
        except RunPodError as exc:
            step = classify_create_error(exc)
            ctx.metrics.created(_OUTCOMES.get(step.reason, "error"))
            last = step
            refusals.append(step.reason)
            if step.next is Next.AMBIGUOUS:
                # The pod may exist: keep the reservation and let recovery settle it. The client
                # may have POSTed again inside create_pod_safely: the visibility window counts
                # from now, after its last POST.
                known.attempt_at = ctx.clock()
                known.wait("the last create answer was ambiguous; looking the pod up")
                await ctx.event(
                    pod, "Warning", step.reason, f"{name}: {step.message}; looking it up before retrying"
                )
                return step.delay
            known.attempt_resolved = True
            ctx.ledger.release(uid)
            if step.next is Next.NEXT_CANDIDATE:
                await ctx.event(
                    pod,
                    "Warning",
                    step.reason,
                    f"{candidate.label} in {candidate.datacenter_id or 'any data center'}: {step.message}",
                )
                continue
            if step.next is Next.STOP_PAYMENT:
                ctx.pause_creates(step.delay)
                known.wait("creates paused: the RunPod account balance is too low (402)")
                await ctx.event(
                    pod,
                    "Warning",
                    step.reason,
                    f"RunPod refused the create for lack of balance: {step.message}",
                )
                await _note_failure(ctx, pod, step)
                return step.delay
            if step.next is Next.FAIL:
                await _fail(ctx, pod, Failure(reason=step.reason, message=step.message))
                return 0.0
            known.wait(f"{step.reason}: {step.message}")
            await ctx.event(pod, "Warning", step.reason, step.message)
            return step.delay

        ctx.metrics.created("created")
        await _record_created(ctx, pod, created, plan)
        cap = price_cap(plan, ctx.policy)
        per_unit = created.cost / plan.units(candidate)
        if per_unit > cap + 1e-9:
            # The catalog the plan came from was stale: RunPod bills more than the cap allows.
            # The id is recorded, so terminating it now cannot leak; the pod fails and its
            # controller (a Job, say) makes a new one that the webhook plans afresh.
            await _fail(
                ctx,
                pod,
                Failure(
                    reason="PriceAboveCap",
                    message=f"RunPod pod {created.id} costs ${per_unit:.4g}/{unit_name(plan)}-hour, "
                    f"above the cap ${cap:.4g}; terminated",
                ),
            )
            return 0.0
        await ctx.event(
            pod,
            "Normal",
            "Created",
            f"RunPod pod {created.id} ({describe_purchase(plan, candidate)}, "
            f"{created.data_center_id or 'data center pending'}, ${created.cost:.2f}/h)",
        )
        return None

    if last is None and over_budget is not None:
        known.wait(over_budget)
        await ctx.event(pod, "Warning", "OverBudget", f"waiting: {over_budget}")
        return BUDGET_RETRY
    if last is None and skipped:
        message = "no candidate of the plan is allowed by node policy now: " + "; ".join(skipped)
        known.wait(message)
        await ctx.event(pod, "Warning", "PolicyViolation", message)
        return NO_CAPACITY_RETRY
    if wants_catalog_refresh(refusals):
        ctx.request_catalog_refresh()
    detail = last.message if last is not None else "no candidates"
    known.wait(f"no candidate could be created; last answer: {detail}")
    await ctx.event(pod, "Warning", "NoCapacity", f"every candidate refused; retrying later. Last: {detail}")
    if last is not None:
        await _note_failure(ctx, pod, last)
    return NO_CAPACITY_RETRY


async def _record_created(ctx: PodContext, pod: Mapping[str, Any], created: Pod, plan: Plan) -> None:
    uid = pod["metadata"]["uid"]
    known = ctx.known_for(uid)
    known.attempt_resolved = True
    known.wait(None)
    known.id_recorded_at = ctx.clock()
    changes: dict[str, str | None] = {POD_ID: created.id, LAST_FAILURE: None}
    changes.update(state_annotations(created, plan.ports))
    await ctx.annotate(pod, changes)


async def _adopt(
    ctx: PodContext, pod: Mapping[str, Any], found: Pod, plan: Plan, *, duplicates: tuple[Pod, ...]
) -> None:
    for duplicate in duplicates:
        ctx.fence()
        if await ctx.runpod.delete_pod(duplicate.id):
            ctx.metrics.terminated("duplicate")
        await ctx.event(pod, "Warning", "DuplicateTerminated", f"terminated extra RunPod pod {duplicate.id}")
    ctx.metrics.created("adopted")
    await _record_created(ctx, pod, found, plan)
    await ctx.event(pod, "Normal", "Adopted", f"found RunPod pod {found.id} from an earlier create attempt")


async def _resolve_env(
    ctx: PodContext, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> EnvResolution:
    namespace = pod["metadata"]["namespace"]
    secret_names, config_map_names = referenced_objects(container)
    secrets: dict[str, Mapping[str, str] | None] = {}
    for name in secret_names:
        raw = await ctx.kube.read_secret(namespace, name)
        secrets[name] = None if raw is None else decode_secret_data(raw)[0]
    config_maps: dict[str, Mapping[str, str] | None] = {}
    for name in config_map_names:
        raw = await ctx.kube.read_config_map(namespace, name)
        config_maps[name] = None if raw is None else dict(raw.get("data") or {})
    return resolve_env(
        pod=pod, container=container, sources=EnvSources(secrets=secrets, config_maps=config_maps)
    )


async def _note_failure(ctx: PodContext, pod: Mapping[str, Any], step: Step) -> None:
    await ctx.annotate(pod, {LAST_FAILURE: f"{step.reason}: {step.message}"[:500]})


async def _fail(ctx: PodContext, pod: Mapping[str, Any], failure: Failure) -> None:
    """A permanent failure: remembered for the status writer, Event, last-failure annotation."""
    known = ctx.known_for(pod["metadata"]["uid"])
    known.failure = failure
    await ctx.event(pod, "Warning", failure.reason, failure.message)
    await ctx.annotate(pod, {LAST_FAILURE: f"{failure.reason}: {failure.message}"[:500]})


def _volume_violation(
    datacenter_id: str | None, plan: Plan, ctx: PodContext, mount: NetworkMountPlan
) -> str | None:
    """Why a candidate cannot mount the pod's network volume (another data center), or None."""
    where = mount.datacenter_id
    if datacenter_id is not None and datacenter_id != where:
        return f"data center {datacenter_id} is not the network volume {mount.volume_id}'s ({where})"
    if datacenter_id is None and (
        (plan.datacenter_ids and where not in plan.datacenter_ids) or not ctx.policy.allows_datacenter(where)
    ):
        return f"the network volume {mount.volume_id} is in {where}, outside the plan's data centers"
    return None


def _ref(metadata: Mapping[str, Any]) -> tuple[str, str]:
    return metadata.get("namespace", ""), metadata.get("name", "")


def _is_daemonset_pod(pod: Mapping[str, Any]) -> bool:
    owners = (pod.get("metadata") or {}).get("ownerReferences") or ()
    return any(owner.get("kind") == "DaemonSet" for owner in owners)
