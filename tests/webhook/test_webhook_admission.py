"""The mutate and validate decisions over whole AdmissionReviews, without HTTP or a cluster."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from webhook_samples import apply_patch, gpu_pod, review, review_bytes, sample_catalog

from contract.plan import plan_from_annotations, plan_to_annotations
from contract.policy import NodePolicy
from webhook.admission import mutate, validate
from webhook.reviews import (
    MalformedReview,
    Verdict,
    clean_warnings,
    escape_pointer,
    parse_review,
    render_review,
)

CATALOG = sample_catalog()
POLICY = NodePolicy(
    allowed_datacenter_ids=("EU-RO-1", "US-KS-2", "EU-SE-1"), max_gpu_price=2.0, max_candidates=3
)


def _mutate(pod: dict[str, Any], jobs: dict[tuple[str, str], dict[str, str]] | None = None) -> Verdict:
    lookup = None
    if jobs is not None:
        table = jobs

        def lookup(namespace: str, name: str, uid: str) -> dict[str, str] | None:
            return table.get((name, uid))

    return mutate(parse_review(review_bytes(pod)), catalog=CATALOG, policy=POLICY, jobs=lookup)


def _planned(pod: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    assert verdict.allowed, verdict.message
    return apply_patch(pod, list(verdict.patch))


def test_a_valid_pod_gets_a_plan_that_the_one_parser_reads() -> None:
    pod = gpu_pod(annotations={"runpod.io/required-gpu-memory": "40"}, gpus=2, ports=[8888, 22])
    verdict = _mutate(pod)
    planned = _planned(pod, verdict)
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert [(c.gpu_type_id, c.datacenter_id, c.usd_per_hour) for c in plan.candidates] == [
        ("NVIDIA A40", "US-KS-2", 0.88),
        ("NVIDIA A40", "EU-SE-1", 0.88),
        ("NVIDIA RTX A6000", "EU-SE-1", 0.98),
    ]
    assert plan.gpu_count == 2
    assert [str(p) for p in plan.ports] == ["8888/http", "22/tcp"]
    assert plan.datacenter_ids == ("EU-RO-1", "US-KS-2", "EU-SE-1")
    assert plan.max_gpu_price == 2.0
    assert plan.catalog_revision == CATALOG.revision
    assert planned["metadata"]["annotations"]["runpod.io/required-gpu-memory"] == "40"
    assert verdict.warnings == ()


def test_a_pod_without_a_public_port_is_planned_first_where_it_gets_a_private_address() -> None:
    # EU-SE-1 has global networking; a pod with only an http port and SSH off has no public IP,
    # so at the A40's one price it goes there first, while a pod with 22/tcp (a public IP: its
    # own, or the binder's for SSH) follows stock.
    catalog = CATALOG.model_copy(
        update={
            "data_centers": tuple(
                dc.model_copy(update={"global_network": dc.id == "EU-SE-1"}) for dc in CATALOG.data_centers
            )
        }
    )

    def first_datacenters(pod: dict[str, Any]) -> list[str | None]:
        verdict = mutate(parse_review(review_bytes(pod)), catalog=catalog, policy=POLICY, jobs=None)
        plan = plan_from_annotations(_planned(pod, verdict)["metadata"]["annotations"])
        return [c.datacenter_id for c in plan.candidates[:2]]

    memory = {"runpod.io/required-gpu-memory": "40"}
    no_ssh = {**memory, "runpod.io/ssh": "disabled"}
    assert first_datacenters(gpu_pod(annotations=no_ssh, ports=[8888])) == ["EU-SE-1", "US-KS-2"]
    assert first_datacenters(gpu_pod(annotations=no_ssh, ports=[8888, 22])) == ["US-KS-2", "EU-SE-1"]
    assert first_datacenters(gpu_pod(annotations=memory, ports=[8888])) == ["US-KS-2", "EU-SE-1"]


def test_a_pod_without_annotations_gets_the_annotations_map_added() -> None:
    pod = gpu_pod()
    verdict = _mutate(pod)
    assert verdict.patch[0]["path"] == "/metadata/annotations"
    assert "plan.runpod.io/candidates" in _planned(pod, verdict)["metadata"]["annotations"]


def test_plan_keys_are_escaped_in_the_patch_paths() -> None:
    verdict = _mutate(gpu_pod(annotations={"team": "ml"}))
    paths = [op["path"] for op in verdict.patch]
    assert "/metadata/annotations/plan.runpod.io~1candidates" in paths
    assert escape_pointer("a~b/c") == "a~0b~1c"


def test_a_pod_asking_for_a_gpu_by_annotation_without_a_limit_gets_one_gpu_and_the_limit() -> None:
    pod = gpu_pod(gpus=None, annotations={"runpod.io/compute-type": "GPU"})
    verdict = _mutate(pod)
    planned = _planned(pod, verdict)
    assert planned["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert (plan.compute_type, plan.gpu_count) == ("GPU", 1)
    assert verdict.warnings == ()  # asked for explicitly: nothing to warn about


def test_the_gpu_limit_is_added_next_to_existing_limits() -> None:
    pod = gpu_pod(gpus=None, annotations={"runpod.io/compute-type": "GPU"})
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    planned = _planned(pod, _mutate(pod))
    assert planned["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "nvidia.com/gpu": "1"}


def test_dropped_datacenters_come_back_as_warnings() -> None:
    verdict = _mutate(gpu_pod(annotations={"runpod.io/datacenter-ids": "US-TX-3,US-KS-2"}))
    assert verdict.allowed
    assert verdict.warnings == (
        "runpod.io/datacenter-ids: dropped US-TX-3: not allowed on node virtual-runpod",
    )


def test_pods_not_aimed_at_the_node_are_allowed_untouched() -> None:
    verdict = _mutate(gpu_pod(aimed=False, annotations={"runpod.io/cloud-type": "nonsense"}))
    assert verdict == Verdict(allowed=True)


@pytest.mark.parametrize(
    ("annotations", "code", "fragment"),
    [
        ({"runpod.io/gpu-memory": "80"}, 422, "did you mean runpod.io/required-gpu-memory?"),
        ({"runpod.io/max-gpu-price": "9"}, 403, "above the node cap $2/GPU-hour"),
        ({"runpod.io/datacenter-ids": "US-TX-3"}, 403, "none of these data centers is allowed"),
        ({"runpod.io/gpu-types": "NVIDIA A4O"}, 422, "did you mean NVIDIA A40?"),
        (
            {"runpod.io/required-gpu-memory": "80", "runpod.io/max-gpu-price": "1"},
            422,
            "above your cap $1.00",
        ),
        ({"runpod.io/pod-id": "abc123"}, 403, "written only by the binder"),
    ],
)
def test_bad_pods_are_denied_with_a_code_and_a_message(
    annotations: dict[str, str], code: int, fragment: str
) -> None:
    verdict = _mutate(gpu_pod(annotations=annotations))
    assert not verdict.allowed
    assert verdict.code == code
    assert verdict.reason == ("Invalid" if code == 422 else "Forbidden")
    assert fragment in (verdict.message or "")
    assert verdict.patch == ()


def test_a_typo_of_gpu_types_that_hits_a_state_key_suggests_the_input() -> None:
    verdict = _mutate(gpu_pod(annotations={"runpod.io/gpu-type": "NVIDIA A40"}))
    assert "did you mean runpod.io/gpu-types?" in (verdict.message or "")


def test_a_plan_brought_by_the_pod_is_replaced_from_scratch() -> None:
    forged = plan_to_annotations(
        plan_from_annotations(_planned(gpu_pod(), _mutate(gpu_pod()))["metadata"]["annotations"])
    )
    forged["plan.runpod.io/max-gpu-price"] = "100"
    forged["plan.runpod.io/candidates"] = '[{"gpu":"NVIDIA H200","dc":"US-TX-3","usdPerHour":3.99}]'
    forged["plan.runpod.io/extra"] = "x"
    pod = gpu_pod(annotations=forged)
    verdict = _mutate(pod)
    annotations = _planned(pod, verdict)["metadata"]["annotations"]
    assert "plan.runpod.io/extra" not in annotations
    plan = plan_from_annotations(annotations)
    assert plan.max_gpu_price == 2.0
    assert plan.candidates[0].gpu_type_id == "NVIDIA L4"
    assert any("replaced with a fresh plan" in w for w in verdict.warnings)


def test_job_annotations_fill_in_what_the_pod_does_not_say() -> None:
    pod = gpu_pod(owner_job=("train", "uid-1"))
    jobs = {("train", "uid-1"): {"runpod.io/required-gpu-memory": "80", "runpod.io/cloud-type": "COMMUNITY"}}
    plan = plan_from_annotations(_planned(pod, _mutate(pod, jobs))["metadata"]["annotations"])
    assert plan.cloud == "COMMUNITY"
    assert plan.candidates[0].gpu_type_id == "NVIDIA A100 80GB PCIe"


def test_a_bad_job_annotation_is_reported_as_coming_from_the_job() -> None:
    pod = gpu_pod(owner_job=("train", "uid-1"))
    verdict = _mutate(pod, {("train", "uid-1"): {"runpod.io/cloud-type": "cheap"}})
    assert (verdict.message or "").startswith('runpod.io/cloud-type="cheap" on Job train: unknown cloud type')


def test_a_job_not_yet_in_the_cache_is_a_retryable_denial() -> None:
    pod = gpu_pod(owner_job=("train", "uid-2"))
    verdict = _mutate(pod, {("train", "uid-1"): {}})
    assert (verdict.allowed, verdict.code) == (False, 503)
    assert "ml/train is not in the webhook's cache yet" in (verdict.message or "")


def test_without_job_fallback_a_job_pod_is_planned_from_its_own_annotations() -> None:
    assert _mutate(gpu_pod(owner_job=("train", "uid-1")), jobs=None).allowed


def test_no_catalog_yet_is_a_retryable_denial() -> None:
    verdict = mutate(parse_review(review_bytes(gpu_pod())), catalog=None, policy=POLICY, jobs=None)
    assert (verdict.allowed, verdict.code) == (False, 503)


def _validate(
    pod: dict[str, Any], *, operation: str = "CREATE", old: dict[str, Any] | None = None
) -> Verdict:
    return validate(parse_review(review_bytes(pod, operation=operation, old=old)), policy=POLICY)


def test_validate_accepts_what_mutate_produced() -> None:
    pod = gpu_pod(
        gpus=None, annotations={"runpod.io/gpu-types": "NVIDIA A40", "runpod.io/compute-type": "GPU"}
    )
    assert _validate(_planned(pod, _mutate(pod))) == Verdict(allowed=True)


def test_validate_rejects_a_pod_without_a_plan() -> None:
    verdict = _validate(gpu_pod())
    assert (verdict.allowed, verdict.code) == (False, 403)
    assert "no valid plan: plan.runpod.io/version missing" in (verdict.message or "")


def test_validate_rejects_a_plan_outside_node_policy() -> None:
    planned = _planned(gpu_pod(), _mutate(gpu_pod()))
    planned["metadata"]["annotations"]["plan.runpod.io/candidates"] = (
        '[{"gpu":"NVIDIA H200","dc":"US-TX-3","usdPerHour":3.99}]'
    )
    planned["metadata"]["annotations"]["plan.runpod.io/max-gpu-price"] = "4"
    message = _validate(planned).message or ""
    assert "max-gpu-price 4 above the node cap 2" in message
    assert "candidate data center US-TX-3 not allowed" in message
    assert "candidate NVIDIA H200 costs above the node cap per GPU" in message


def test_validate_rejects_a_gpu_count_that_does_not_match_the_pod() -> None:
    planned = _planned(gpu_pod(gpus=2), _mutate(gpu_pod(gpus=2)))
    planned["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    assert "gpu-count 2 differs" in (_validate(planned).message or "")


def test_validate_judges_one_plan_again_under_each_node_policy() -> None:
    # The plan check is memoised; a node policy tightened at runtime must still be applied.
    planned = _planned(gpu_pod(), _mutate(gpu_pod()))
    assert _validate(planned).allowed
    review_ = parse_review(review_bytes(planned))
    tighter = POLICY.model_copy(update={"max_gpu_price": 0.01})
    verdict = validate(review_, policy=tighter)
    assert not verdict.allowed
    assert "above the node cap 0.01" in (verdict.message or "")
    assert validate(review_, policy=POLICY).allowed


def _running(pod: dict[str, Any]) -> dict[str, Any]:
    planned = _planned(pod, _mutate(pod))
    planned["spec"]["nodeName"] = "virtual-runpod"
    return planned


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plan.runpod.io/candidates", '[{"gpu":"NVIDIA H100 80GB HBM3","usdPerHour":2.69}]'),
        ("plan.runpod.io/new", "x"),
        ("runpod.io/required-gpu-memory", "80"),
        ("runpod.io/cloud-type", None),
    ],
)
def test_updates_to_plan_or_inputs_are_denied(key: str, value: str | None) -> None:
    old = _running(gpu_pod(annotations={"runpod.io/cloud-type": "SECURE"}))
    new = json.loads(json.dumps(old))
    if value is None:
        del new["metadata"]["annotations"][key]
    else:
        new["metadata"]["annotations"][key] = value
    verdict = _validate(new, operation="UPDATE", old=old)
    assert (verdict.allowed, verdict.code) == (False, 403)
    assert (verdict.message or "").startswith(f"{key}: cannot change after the pod is created")


def test_the_binder_may_update_its_state_keys_and_anyone_the_rest() -> None:
    old = _running(gpu_pod())
    new = json.loads(json.dumps(old))
    new["metadata"]["annotations"]["runpod.io/pod-id"] = "abc123"
    new["metadata"]["annotations"]["runpod.io/cost-per-hour"] = "0.39"
    new["metadata"]["labels"] = {"x": "y"}
    new["metadata"]["finalizers"] = []
    assert _validate(new, operation="UPDATE", old=old).allowed


def test_validate_leaves_unrelated_pods_alone() -> None:
    assert _validate(gpu_pod(aimed=False)).allowed


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[]", "must be a JSON object"),
        (
            b'{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}',
            "expected apiVersion admission.k8s.io/v1",
        ),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "has no request object"),
        (
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}',
            "request.uid",
        ),
    ],
)
def test_malformed_reviews_raise_a_clear_error(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedReview, match=fragment):
        parse_review(body)


def test_a_pod_create_without_an_object_is_malformed() -> None:
    with pytest.raises(MalformedReview, match=r"request\.object is required"):
        parse_review(review_bytes(None))


def test_annotations_that_are_not_strings_are_malformed() -> None:
    pod = gpu_pod()
    pod["metadata"]["annotations"] = {"runpod.io/required-gpu-memory": 80}
    with pytest.raises(MalformedReview, match="map of strings"):
        parse_review(review_bytes(pod))


def test_the_response_echoes_the_uid_and_carries_a_base64_json_patch() -> None:
    doc = review(gpu_pod(), uid="1234")
    request = parse_review(json.dumps(doc).encode())
    verdict = mutate(request, catalog=CATALOG, policy=POLICY, jobs=None)
    rendered = render_review(request.uid, verdict)
    assert rendered["apiVersion"] == "admission.k8s.io/v1"
    assert rendered["kind"] == "AdmissionReview"
    response = rendered["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == ("1234", True, "JSONPatch")
    assert json.loads(base64.b64decode(response["patch"])) == list(verdict.patch)


def test_a_denial_renders_a_status_and_no_patch() -> None:
    rendered = render_review("u", Verdict(allowed=False, code=422, reason="Invalid", message="nope"))
    assert rendered["response"] == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 422, "reason": "Invalid", "message": "nope"},
    }


def test_warnings_are_deduplicated_and_kept_within_the_apiserver_limits() -> None:
    long = "x" * 300
    warnings = clean_warnings(["a", "a", long, *[f"w{i}" * 40 for i in range(100)]])
    assert warnings[0] == "a" and warnings.count("a") == 1
    assert all(len(w) <= 120 for w in warnings)
    assert warnings[1].endswith("...")
    assert sum(len(w) for w in warnings) <= 4096


def test_a_hand_made_review_without_request_kind_is_read_by_its_object() -> None:
    doc = review(gpu_pod())
    del doc["request"]["kind"], doc["request"]["resource"], doc["request"]["requestKind"]
    request = parse_review(json.dumps(doc).encode())
    assert request.is_pod
    assert mutate(request, catalog=CATALOG, policy=POLICY, jobs=None).patch


def test_tampering_sent_to_mutate_is_denied_too() -> None:
    old = _running(gpu_pod())
    new = json.loads(json.dumps(old))
    new["metadata"]["annotations"]["plan.runpod.io/cloud"] = "COMMUNITY"
    request = parse_review(review_bytes(new, operation="UPDATE", old=old))
    verdict = mutate(request, catalog=CATALOG, policy=POLICY, jobs=None)
    assert (verdict.allowed, verdict.code) == (False, 403)


def test_other_operations_and_kinds_pass_untouched() -> None:
    delete = parse_review(review_bytes(None, operation="DELETE", old=gpu_pod()))
    assert mutate(delete, catalog=CATALOG, policy=POLICY, jobs=None) == Verdict(allowed=True)
    assert validate(delete, policy=POLICY) == Verdict(allowed=True)
    doc = review(gpu_pod())
    doc["request"]["subResource"] = "status"
    status = parse_review(json.dumps(doc).encode())
    assert validate(status, policy=POLICY) == Verdict(allowed=True)
