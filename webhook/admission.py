"""The two admission decisions: `mutate` (validate inputs, resolve, write the plan) and
`validate` (guard the plan), each an `AdmissionRequest` -> `Verdict` function without I/O.

Rules that span both:
- Scope is re-checked here with `contract.policy.pod_targets_node`, whatever the webhook
  configurations already filtered: a pod not aimed at the node is allowed untouched.
- One container per RunPod pod (`containers`): mutate refuses extra containers the pod already
  has (fail fast); validate on CREATE judges the pod as it will be stored, after every mutating
  webhook, against the drop list the plan carries (`plan.runpod.io/drop-containers`).
- CREATE: binder state keys (`runpod.io/pod-id`, ...) are refused (a copied manifest must not
  adopt another pod's RunPod machine); `plan.runpod.io/*` keys the pod brings are never trusted:
  the whole family is replaced by a plan resolved from scratch, with a warning. A planned pod
  also gets the outage tolerations (`tolerations`), so a NotReady spell of the node does not
  evict it.
- UPDATE: plan and input annotations are frozen after creation; only the binder's state keys
  may change. Updates that leave them alone (finalizers, labels, the binder's own writes) pass,
  so a pod can always be cleaned up. In a cluster this rule normally runs in the apiserver
  (`admission_policy`, which also knows who the binder is); `/validate` judges UPDATEs only when
  the chart's `webhook.validateUpdates` sends them.

Does not own the wire format (`reviews`), the watch caches or HTTP. The Job lookup and the
planner are passed in as plain callables over in-memory data, so nothing here can block;
`write_plan` is the pure planner, which the HTTP layer memoises (many pods of one Job ask the
same question). `validate` reads the plan through `plan_from_annotations`, which is memoised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from contract import annotations as keys
from contract.catalog import Catalog
from contract.containers import split_containers
from contract.plan import PLAN_KEYS, Plan, PlanError, parse_port, plan_from_annotations, plan_to_annotations
from contract.policy import CPU_CLOUD, GPU_RESOURCE, NodePolicy, pod_targets_node
from webhook.compute import count_gpus, decide_compute
from webhook.containers import check_containers, dropped_gpu_warnings
from webhook.demands import cpu_demand, gpu_demand, vcpu_warnings
from webhook.inputs import detect_ports, read_inputs, suggest
from webhook.problems import (
    FORBIDDEN,
    FROZEN_AFTER_CREATE,
    INVALID,
    MAX_LISTED,
    STATE_ON_NEW_POD,
    UNAVAILABLE,
    Denial,
)
from webhook.resolving import (
    CpuDemand,
    Demand,
    comply_datacenters,
    resolve_candidates,
    resolve_cpu_candidates,
)
from webhook.reviews import AdmissionRequest, Verdict, annotations_of, escape_pointer
from webhook.tolerations import DEFAULT_OUTAGE_TOLERATIONS, OutageTolerations, outage_toleration_patch
from webhook.volumes import VolumeLookups, pin_datacenters, read_volumes

# (namespace, name, uid) -> the Job's annotations, or None while the Job is not (yet) known.
JobLookup = Callable[[str, str, str], Mapping[str, str] | None]


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """Everything a plan is made of, besides the catalog. Hashable: a memo key."""

    # A GPU pod's demand, or a CPU pod's (no GPU bought).
    demand: Demand | CpuDemand
    ports: tuple[str, ...]  # "8888/http"
    container_disk_gb: int
    registry_auth_id: str | None
    template_id: str | None
    drop_containers: tuple[str, ...] = ()


# PlanRequest, catalog -> plan annotations (callers must not mutate them); raises Denial.
Planner = Callable[[PlanRequest, Catalog], Mapping[str, str]]


def write_plan(request: PlanRequest, catalog: Catalog) -> dict[str, str]:
    """The plan annotations for `request`; a `Denial` naming the near miss when nothing fits."""
    demand = request.demand
    common = {
        "datacenter_ids": demand.datacenter_ids or (),
        "ports": tuple(parse_port(p) for p in request.ports),
        "container_disk_gb": request.container_disk_gb,
        "registry_auth_id": request.registry_auth_id,
        "template_id": request.template_id,
        "catalog_revision": catalog.revision,
        "drop_containers": request.drop_containers,
    }
    if isinstance(demand, CpuDemand):
        plan = Plan(
            compute_type="CPU",
            candidates=resolve_cpu_candidates(demand, catalog),
            gpu_count=0,
            cloud=CPU_CLOUD,
            max_vcpu_price=demand.max_vcpu_price,
            **common,
        )
    else:
        cuda = demand.cuda
        plan = Plan(
            candidates=resolve_candidates(demand, catalog),
            gpu_count=demand.gpu_count,
            cloud=demand.cloud,
            max_gpu_price=demand.max_gpu_price,
            min_cuda_version=cuda.minimum if cuda is not None else None,
            cuda_versions=cuda.versions if cuda is not None else (),
            **common,
        )
    return plan_to_annotations(plan)


ALLOW: Final = Verdict(allowed=True)
MAX_DISK_GB: Final = 2000
# Where validate's drop list comes from: the plan, which carries the pod's or its Job's value.
_PLANNED_ORIGIN: Final = "the pod (or its Job)"
_PRICE_SLACK: Final = 1e-9


@dataclass(frozen=True, slots=True)
class JobRef:
    name: str
    uid: str


def owning_job(pod: Mapping[str, Any]) -> JobRef | None:
    """The Job that controls this pod, from its ownerReferences."""
    refs = (pod.get("metadata") or {}).get("ownerReferences")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if (
            isinstance(ref, dict)
            and ref.get("kind") == "Job"
            and str(ref.get("apiVersion", "")).startswith("batch/")
            and isinstance(ref.get("name"), str)
        ):
            return JobRef(name=ref["name"], uid=str(ref.get("uid") or ""))
    return None


def mutate(
    request: AdmissionRequest,
    *,
    catalog: Catalog | None,
    policy: NodePolicy,
    jobs: JobLookup | None,
    planner: Planner = write_plan,
    outage: OutageTolerations = DEFAULT_OUTAGE_TOLERATIONS,
    volumes: VolumeLookups | None = None,
) -> Verdict:
    pod = request.object
    if request.is_pod and request.operation == "UPDATE":
        # The mutating configuration sends CREATE only; an UPDATE here is still judged like
        # /validate would judge it, so a misrouted review never lets tampering through.
        return validate(request, policy=policy)
    if not request.is_pod or request.operation != "CREATE" or pod is None:
        return ALLOW
    if not pod_targets_node(pod, policy.node_name):
        return ALLOW
    try:
        return _plan_pod(
            request,
            pod,
            catalog=catalog,
            policy=policy,
            jobs=jobs,
            planner=planner,
            outage=outage,
            volumes=volumes,
        )
    except Denial as denial:
        return deny(denial)


def validate(request: AdmissionRequest, *, policy: NodePolicy) -> Verdict:
    if not request.is_pod:
        return ALLOW
    new, old = request.object, request.old_object
    try:
        if request.operation == "CREATE" and new is not None and pod_targets_node(new, policy.node_name):
            _refuse_state_keys(annotations_of(new))
            plan = _check_plan(new, policy)
            # The pod as it will be stored, after every mutating webhook: sidecars count.
            split = split_containers(new.get("spec") or {}, plan.drop_containers)
            check_containers(split, final=True, origin=_PLANNED_ORIGIN)
        elif (
            request.operation == "UPDATE"
            and new is not None
            and old is not None
            and (pod_targets_node(new, policy.node_name) or pod_targets_node(old, policy.node_name))
        ):
            _check_frozen(annotations_of(old), annotations_of(new))
    except Denial as denial:
        return deny(denial)
    return ALLOW


def deny(denial: Denial) -> Verdict:
    return Verdict(allowed=False, code=denial.code, reason=denial.reason, message=denial.message)


def _plan_pod(
    request: AdmissionRequest,
    pod: dict[str, Any],
    *,
    catalog: Catalog | None,
    policy: NodePolicy,
    jobs: JobLookup | None,
    planner: Planner,
    outage: OutageTolerations,
    volumes: VolumeLookups | None = None,
) -> Verdict:
    annotations = annotations_of(pod)
    _refuse_state_keys(annotations)
    job_annotations: Mapping[str, str] | None = None
    job = owning_job(pod)
    if job is not None and jobs is not None:
        job_annotations = jobs(request.namespace, job.name, job.uid)
        if job_annotations is None:
            # Planning without the Job's annotations could buy the wrong GPU; the Job
            # controller retries pod creation, by which time the watch has caught up.
            raise Denial(
                f"owning Job {request.namespace}/{job.name} is not in the webhook's cache yet; "
                "the Job controller retries, or recreate the pod in a moment",
                code=UNAVAILABLE,
            )
    if catalog is None:
        raise Denial(
            "the GPU catalog is not loaded yet (the binder publishes ConfigMap runpod-catalog); retry shortly",
            code=UNAVAILABLE,
        )
    inputs = read_inputs(
        annotations,
        job_annotations=job_annotations,
        job_name=job.name if job_annotations is not None and job is not None else None,
        node_max_gpu_price=policy.max_gpu_price,
        node_max_vcpu_price=policy.max_vcpu_price,
    )
    spec = pod.get("spec") or {}
    # Fail fast on the containers the pod has now; `validate` judges the final pod.
    split = split_containers(spec, inputs.drop_containers)
    check_containers(split, final=False, origin=inputs.origin(keys.DROP_CONTAINERS))
    gpus = count_gpus(spec)
    compute = decide_compute(inputs, gpus, default=policy.default_compute_type)
    # Network volume (pins the data center), emptyDir (sizes the disk), the rest warned about.
    pod_volumes = read_volumes(spec, namespace=request.namespace, lookups=volumes, policy=policy)
    warnings: list[str] = [*dropped_gpu_warnings(spec, split), *pod_volumes.warnings]
    if inputs.ports is None:
        ports, port_warnings = detect_ports(spec)
        warnings += port_warnings
    else:
        ports = inputs.ports
    datacenters, dc_warnings = comply_datacenters(
        inputs.datacenter_ids, origin=inputs.origin(keys.DATACENTER_IDS), policy=policy, catalog=catalog
    )
    warnings += dc_warnings
    datacenters = pin_datacenters(datacenters, pod_volumes)
    disk_gb = inputs.container_disk_gb + pod_volumes.disk_gb
    if disk_gb > MAX_DISK_GB:
        raise Denial(
            f"container disk {inputs.container_disk_gb} GB plus emptyDir sizeLimits {pod_volumes.disk_gb} GB "
            f"is above RunPod's {MAX_DISK_GB} GB; lower them",
            code=INVALID,
        )
    demand: Demand | CpuDemand
    if compute == "CPU":
        demand = cpu_demand(inputs, spec, split, datacenters=datacenters, policy=policy, catalog=catalog)
    else:
        demand = gpu_demand(
            inputs, gpus.count, datacenters=datacenters, policy=policy, catalog=catalog, ports=ports
        )
    plan_annotations = planner(
        PlanRequest(
            demand=demand,
            ports=tuple(str(p) for p in ports),
            container_disk_gb=disk_gb,
            registry_auth_id=inputs.registry_auth_id,
            template_id=inputs.template_id,
            drop_containers=inputs.drop_containers,
        ),
        catalog,
    )
    if isinstance(demand, CpuDemand):
        warnings += vcpu_warnings(demand, plan_from_annotations(plan_annotations))
    if any(keys.is_plan_key(k) for k in annotations):
        warnings.append("plan.runpod.io/* annotations are written by the webhook: replaced with a fresh plan")
    # A GPU without a limit (`runpod.io/compute-type: GPU`, or the node's default): 1 GPU,
    # counted by the scheduler against the node's GPU budget through the limit this adds.
    gpu_limit_on = split.runs_index if compute == "GPU" and gpus.defaulted else None
    patch = build_patch(pod, plan_annotations, gpu_limit_on=gpu_limit_on)
    patch += outage_toleration_patch(spec.get("tolerations"), outage)
    return Verdict(allowed=True, patch=tuple(patch), warnings=tuple(warnings))


def build_patch(
    pod: Mapping[str, Any], plan_annotations: Mapping[str, str], *, gpu_limit_on: int | None = None
) -> list[dict[str, Any]]:
    """JSONPatch writing the plan (replacing any plan keys the pod carried) and, when the pod had
    no GPU limit, `nvidia.com/gpu: 1` on container `gpu_limit_on` (the one RunPod runs) so the
    scheduler counts it against the node's GPU budget."""
    ops: list[dict[str, Any]] = []
    metadata = pod.get("metadata")
    current = annotations_of(pod)
    if not isinstance(metadata, dict):
        ops.append({"op": "add", "path": "/metadata", "value": {"annotations": dict(plan_annotations)}})
    elif not metadata.get("annotations"):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": dict(plan_annotations)})
    else:
        for key in current:
            if keys.is_plan_key(key) and key not in plan_annotations:
                ops.append({"op": "remove", "path": _annotation_path(key)})
        for key, value in plan_annotations.items():
            ops.append({"op": "add", "path": _annotation_path(key), "value": value})
    containers = (pod.get("spec") or {}).get("containers") or []
    if (
        gpu_limit_on is not None
        and gpu_limit_on < len(containers)
        and isinstance(containers[gpu_limit_on], dict)
    ):
        base = f"/spec/containers/{gpu_limit_on}/resources"
        resources = containers[gpu_limit_on].get("resources")
        if not isinstance(resources, dict):
            ops.append({"op": "add", "path": base, "value": {"limits": {GPU_RESOURCE: "1"}}})
        elif not isinstance(resources.get("limits"), dict):
            ops.append({"op": "add", "path": base + "/limits", "value": {GPU_RESOURCE: "1"}})
        else:
            ops.append({"op": "add", "path": f"{base}/limits/{escape_pointer(GPU_RESOURCE)}", "value": "1"})
    return ops


# The plan keys' pointers, escaped once rather than on every review (hot path).
_PLAN_PATHS: Final = {key: "/metadata/annotations/" + escape_pointer(key) for key in PLAN_KEYS}


def _annotation_path(key: str) -> str:
    return _PLAN_PATHS.get(key) or "/metadata/annotations/" + escape_pointer(key)


def _refuse_state_keys(annotations: Mapping[str, str]) -> None:
    present = [k for k in keys.STATE_KEYS if k in annotations]
    if present:
        # `runpod.io/gpu-type` is state, but also one letter away from the input `gpu-types`.
        hints = "".join(suggest(k, keys.INPUT_KEYS) for k in present)
        raise Denial(
            f"{', '.join(present)}: {STATE_ON_NEW_POD}{hints}",
            code=FORBIDDEN,
        )


def _check_plan(pod: Mapping[str, Any], policy: NodePolicy) -> Plan:
    try:
        plan = plan_from_annotations(annotations_of(pod))
    except PlanError as exc:
        raise Denial(
            f"no valid plan: {exc}; the mutating webhook writes plan.runpod.io/* (is its configuration installed?)",
            code=FORBIDDEN,
        ) from None
    problems: list[str] = []
    node_cap = policy.max_unit_price(plan.compute_type)
    cap = node_cap + _PRICE_SLACK
    unit = "vCPU" if plan.compute_type == "CPU" else "GPU"
    if plan.max_unit_price() > cap:
        problems.append(f"max-{unit.lower()}-price {plan.max_unit_price():g} above the node cap {node_cap:g}")
    for candidate in plan.candidates:
        if plan.unit_price(candidate) > cap:
            problems.append(f"candidate {candidate.label} costs above the node cap per {unit}")
        if candidate.datacenter_id is not None and not policy.allows_datacenter(candidate.datacenter_id):
            problems.append(f"candidate data center {candidate.datacenter_id} not allowed on the node")
    allowed = policy.allowed_datacenter_ids
    if allowed is not None and (not plan.datacenter_ids or not set(plan.datacenter_ids) <= set(allowed)):
        problems.append(
            f"data centers {','.join(plan.datacenter_ids) or 'any'} outside the node's {','.join(allowed)}"
        )
    try:
        gpus = count_gpus(pod.get("spec") or {})
        # A CPU plan buys no GPU: the pod must not have (or have been given) a GPU limit.
        count = 0 if gpus.defaulted and plan.compute_type == "CPU" else gpus.count
    except Denial:
        count = -1
    if count != plan.gpu_count:
        if plan.compute_type == "CPU":
            problems.append(f"a CPU plan, but the pod has {GPU_RESOURCE} limits")
        else:
            problems.append(f"gpu-count {plan.gpu_count} differs from the pod's {GPU_RESOURCE} limits")
    if problems:
        shown = "; ".join(problems[:MAX_LISTED])
        if len(problems) > MAX_LISTED:
            shown += f"; and {len(problems) - MAX_LISTED:,} more"
        raise Denial(
            f"plan.runpod.io/* inconsistent with node policy: {shown}; recreate the pod so the webhook plans it again",
            code=FORBIDDEN,
        )
    return plan


def _check_frozen(old: Mapping[str, str], new: Mapping[str, str]) -> None:
    def frozen(key: str) -> bool:
        return keys.is_plan_key(key) or (keys.is_runpod_key(key) and key not in keys.STATE_KEYS)

    changed = sorted(k for k in set(old) | set(new) if frozen(k) and old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise Denial(
            f"{shown}: {FROZEN_AFTER_CREATE}",
            code=FORBIDDEN,
        )
