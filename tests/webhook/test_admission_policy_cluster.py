"""Every rule of the admission policy, through the real kube-apiserver, without any webhook.

The policy and binding `webhook.admission_policy` renders (what the chart installs) are applied
for namespaces carrying this module's label; pods are created with plans written by
`contract.plan` (the webhook is not involved) and held back from scheduling by a gate. Users
are the admin of the control plane or `alice` (both cluster-admins: the policy, not RBAC, is what
refuses them); the binder is impersonated by its ServiceAccount name.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from webhook_cluster_support import LABEL, WAIT, apply
from webhook_samples import gpu_pod

from contract.plan import Candidate, Plan, plan_to_annotations
from controlplane import ControlPlane
from webhook.admission_policy import render_admission_policy

BINDER = "system:serviceaccount:runpod-system:runpod-kubelet-binder"
AS_BINDER = (f"--as={BINDER}", "--as-group=system:masters")
AS_ALICE = ("--as=alice", "--as-group=system:masters")


@dataclass
class Guarded:
    plane: ControlPlane
    name: str
    label: str

    @property
    def denied(self) -> str:
        """How the apiserver introduces this policy's refusals."""
        return f"ValidatingAdmissionPolicy '{self.name}' with binding '{self.name}' denied request: "


@pytest.fixture(scope="module")
def guarded(control_plane: ControlPlane) -> Iterator[Guarded]:
    tag = secrets.token_hex(3)
    name = f"runpod-kubelet-policy-{tag}"
    apply(
        control_plane,
        *render_admission_policy(
            name=name,
            service_namespace="runpod-system",
            state_writers=[BINDER],
            namespace_labels={LABEL: f"policy-{tag}"},
        ),
    )
    try:
        yield Guarded(control_plane, name, f"policy-{tag}")
    finally:
        control_plane.kubectl(
            "delete", "validatingadmissionpolicy,validatingadmissionpolicybinding", name, check=False
        )


def plan(**overrides: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "candidates": (Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),),
        "gpu_count": 1,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1",),
        "container_disk_gb": 50,
        "max_gpu_price": 0.5,
        "catalog_revision": "3f2a9c1b7d00",
    }
    return plan_to_annotations(Plan(**{**fields, **overrides}))


def cpu_plan(**overrides: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "compute_type": "CPU",
        "candidates": (
            Candidate(cpu_type_id="cpu3c", vcpu_count=2, datacenter_id="EU-RO-1", usd_per_hour=0.06),
        ),
        "gpu_count": 0,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1",),
        "container_disk_gb": 20,
        "max_vcpu_price": 0.1,
        "catalog_revision": "3f2a9c1b7d00",
    }
    return plan_to_annotations(Plan(**{**fields, **overrides}))


def pod(name: str, annotations: dict[str, str], *, aimed: bool = True, gpus: int | None = 1) -> str:
    manifest = gpu_pod(annotations=annotations, aimed=aimed, gpus=gpus)
    manifest["metadata"] = {"name": name, "annotations": annotations}
    manifest["spec"]["containers"][0]["image"] = "registry.invalid/never-pulled:1"
    # Never scheduled, wherever other tests' virtual nodes are.
    manifest["spec"]["schedulingGates"] = [{"name": "runpod-kubelet.test/hold"}]
    return json.dumps(manifest)


@pytest.fixture
def served(guarded: Guarded, namespace: str) -> str:
    """`namespace`, labelled for the policy, once the apiserver applies the policy there."""
    plane = guarded.plane
    plane.kubectl("label", "namespace", namespace, f"{LABEL}={guarded.label}")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        probe = plane.kubectl("create", "-n", namespace, "-f", "-", input=pod("probe", {}), check=False)
        if probe.returncode != 0 and guarded.denied in probe.stderr:
            return namespace
        plane.kubectl("delete", "pod", "-n", namespace, "probe", "--wait=false", check=False)
        time.sleep(0.2)
    pytest.fail("the apiserver never applied the admission policy in the labelled namespace")


def create(guarded: Guarded, namespace: str, name: str, annotations: dict[str, str], **kw: Any) -> Any:
    return guarded.plane.kubectl(
        "create", "-n", namespace, "-f", "-", input=pod(name, annotations, **kw), check=False
    )


def test_the_apiserver_type_checks_the_policy_without_a_warning(guarded: Guarded) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        policy = json.loads(
            guarded.plane.kubectl("get", "validatingadmissionpolicy", guarded.name, "-o", "json").stdout
        )
        status = policy.get("status") or {}
        if status.get("observedGeneration") == policy["metadata"]["generation"]:
            break
        assert time.monotonic() < deadline, f"the policy was never type-checked: {status}"
        time.sleep(0.2)

    assert (status.get("typeChecking") or {}).get("expressionWarnings") in (None, []), status


MISSING_VERSION = (
    "plan.runpod.io/version missing: the pod has no plan; the mutating webhook mutate.runpod-kubelet.io "
    "writes plan.runpod.io/* (is its configuration installed?)"
)
REPLAN = "recreate the pod so the webhook plans it again"


def _without(*keys: str) -> dict[str, str]:
    return {k: v for k, v in plan().items() if k not in keys}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({}, MISSING_VERSION),
        ({"runpod.io/required-gpu-memory": "80"}, MISSING_VERSION),
        (
            {**plan(), "plan.runpod.io/version": "3"},
            f"plan.runpod.io/version=3 not supported; expected 1 or 2: {REPLAN}",
        ),
        (
            {**plan(), "plan.runpod.io/version": "2"},
            f"incomplete plan: plan.runpod.io/compute-type missing; {REPLAN}",
        ),
        (
            {k: v for k, v in cpu_plan().items() if k != "plan.runpod.io/max-vcpu-price"},
            f"incomplete plan: plan.runpod.io/max-vcpu-price missing; {REPLAN}",
        ),
        (
            {**plan(min_cuda_version="12.4"), "plan.runpod.io/compute-type": "gpu"},
            f"malformed plan: plan.runpod.io/compute-type not in the format the webhook writes; {REPLAN}",
        ),
        (
            {**plan(min_cuda_version="12.4"), "plan.runpod.io/min-cuda-version": "12"},
            f"malformed plan: plan.runpod.io/min-cuda-version not in the format the webhook writes; {REPLAN}",
        ),
        (
            _without("plan.runpod.io/candidates", "plan.runpod.io/cloud"),
            f"incomplete plan: plan.runpod.io/candidates, plan.runpod.io/cloud missing; {REPLAN}",
        ),
        (
            {**plan(), "plan.runpod.io/catalog-revision": ""},
            f"incomplete plan: plan.runpod.io/catalog-revision missing; {REPLAN}",
        ),
        (
            {**plan(), "plan.runpod.io/gpu-count": "two", "plan.runpod.io/ports": "8888/udp"},
            "malformed plan: plan.runpod.io/gpu-count, plan.runpod.io/ports not in the format the webhook "
            f"writes; {REPLAN}",
        ),
        (
            {**plan(), "runpod.io/pod-id": "someone-elses", "runpod.io/exit-code": "0"},
            "runpod.io/pod-id, runpod.io/exit-code: written only by the binder, not on a new pod (a copied "
            "manifest would adopt another pod's RunPod machine); remove these annotations",
        ),
    ],
    ids=[
        "no annotations",
        "inputs but no plan",
        "unknown version",
        "version 2 without its compute type",
        "cpu plan without its price cap",
        "compute type malformed",
        "cuda floor malformed",
        "keys missing",
        "key empty",
        "values malformed",
        "binder state on a new pod",
    ],
)
def test_a_pod_for_the_node_without_a_complete_plan_of_a_known_version_is_refused(
    guarded: Guarded, served: str, annotations: dict[str, str], message: str
) -> None:
    result = create(guarded, served, "refused", annotations)

    assert result.returncode != 0
    assert guarded.denied + message in result.stderr
    assert "is forbidden" in result.stderr  # reason Forbidden: HTTP 403, as the webhook answered


def test_a_pod_with_a_complete_plan_and_pods_outside_the_scope_are_admitted(
    guarded: Guarded, served: str, namespace: str, control_plane: ControlPlane
) -> None:
    assert create(guarded, served, "planned", plan()).returncode == 0
    # A complete CPU plan (version 2, no GPU keys) on a pod without a GPU limit, and a GPU plan
    # with a CUDA floor (version 2 too).
    cpu = create(guarded, served, "cpu-planned", cpu_plan(), gpus=None)
    assert cpu.returncode == 0, cpu.stderr
    cuda = create(guarded, served, "cuda-planned", plan(cuda_versions=("12.4", "12.8")))
    assert cuda.returncode == 0, cuda.stderr
    assert create(guarded, served, "elsewhere", {"runpod.io/anything": "x"}, aimed=False).returncode == 0
    # Another namespace (not labelled for this policy): out of scope, like the webhooks'.
    other = f"{served[:50]}-other"
    control_plane.kubectl("create", "namespace", other)
    try:
        deadline = time.monotonic() + WAIT
        while control_plane.kubectl("get", "sa", "default", "-n", other, check=False).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert create(guarded, other, "unplanned", {}).returncode == 0
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.fixture
def planned(guarded: Guarded, served: str) -> str:
    """A pod with a complete plan in the served namespace; its name."""
    created = create(guarded, served, "planned", plan())
    assert created.returncode == 0, created.stderr
    return "planned"


def annotate(guarded: Guarded, namespace: str, *args: str) -> Any:
    return guarded.plane.kubectl(
        "annotate", "-n", namespace, "pod", "planned", "--overwrite", *args, check=False
    )


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("plan.runpod.io/cloud=COMMUNITY", "plan.runpod.io/cloud"),
        ("plan.runpod.io/ports-", "plan.runpod.io/ports"),
        ("plan.runpod.io/extra=1", "plan.runpod.io/extra"),
        ("runpod.io/required-gpu-memory=80", "runpod.io/required-gpu-memory"),
        ("runpod.io/gpu-memory=80", "runpod.io/gpu-memory"),
    ],
    ids=["plan key changed", "plan key removed", "plan key added", "input added", "unknown runpod.io key"],
)
@pytest.mark.parametrize("who", [(), AS_BINDER], ids=["a user", "the binder"])
def test_plan_and_input_annotations_are_frozen_for_everyone(
    guarded: Guarded, served: str, planned: str, change: str, key: str, who: tuple[str, ...]
) -> None:
    result = annotate(guarded, served, change, *who)

    assert result.returncode != 0
    assert (
        guarded.denied + f"{key}: cannot change after the pod is created (only the binder's state "
        "annotations may); delete the pod and create it again with the new values"
    ) in result.stderr


def _annotations(guarded: Guarded, namespace: str) -> dict[str, str]:
    stored = guarded.plane.kubectl("get", "pod", "-n", namespace, "planned", "-o", "json").stdout
    return dict(json.loads(stored)["metadata"]["annotations"])


def test_only_the_binder_writes_changes_and_removes_its_state_annotations(
    guarded: Guarded, served: str, planned: str
) -> None:
    forged = annotate(guarded, served, "runpod.io/pod-id=abc123")
    assert forged.returncode != 0
    assert (
        guarded.denied + f"runpod.io/pod-id: written only by the binder ({BINDER}), not by admin; "
        "they record what the binder did on RunPod"
    ) in forged.stderr
    by_alice = annotate(guarded, served, "runpod.io/exit-code=0", *AS_ALICE)
    assert by_alice.returncode != 0 and f"({BINDER}), not by alice;" in by_alice.stderr

    recorded = annotate(guarded, served, "runpod.io/pod-id=abc123", "runpod.io/exit-code=3", *AS_BINDER)
    assert recorded.returncode == 0, recorded.stderr
    assert annotate(guarded, served, "runpod.io/exit-code=0", *AS_BINDER).returncode == 0
    assert _annotations(guarded, served)["runpod.io/exit-code"] == "0"

    for change in ("runpod.io/exit-code-", "runpod.io/exit-code=1"):
        refused = annotate(guarded, served, change)
        assert refused.returncode != 0 and "runpod.io/exit-code: written only by the binder" in refused.stderr
    assert annotate(guarded, served, "runpod.io/pod-id-", *AS_BINDER).returncode == 0
    assert "runpod.io/pod-id" not in _annotations(guarded, served)


def test_everything_else_on_the_pod_stays_writable_by_its_users(
    guarded: Guarded, served: str, planned: str
) -> None:
    plane = guarded.plane

    assert plane.kubectl("label", "-n", served, "pod", "planned", "team=ml", *AS_ALICE).returncode == 0
    assert annotate(guarded, served, "example.com/owner=alice", *AS_ALICE).returncode == 0
    # The binder's own writes may come with anything else that is not frozen.
    assert (
        annotate(guarded, served, "runpod.io/public-ip=203.0.113.7", "example.com/x=1", *AS_BINDER).returncode
        == 0
    )
    annotations = _annotations(guarded, served)
    assert annotations["example.com/owner"] == "alice" and annotations["runpod.io/public-ip"] == "203.0.113.7"
    assert plane.kubectl("delete", "pod", "-n", served, "planned", "--wait=false").returncode == 0
