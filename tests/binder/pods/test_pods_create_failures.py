"""What RunPod's refusals do to a pod: next candidate, wait, or fail — never a second pod."""

from __future__ import annotations

import asyncio

from pods_support import Harness, make_plan, phase, pod_manifest, wait_for

from contract.annotations import CREATE_ATTEMPT, POD_ID


async def _running(h: Harness, name: str) -> bool:
    return phase(await h.pod(name)) == "Running"


async def test_no_capacity_on_the_first_candidate_falls_back_to_the_second(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.set_stock(gpu_id="NVIDIA A40", datacenter_id="EU-RO-1", cloud="SECURE", free=0)
    await h.start()
    plan = make_plan((("NVIDIA A40", "EU-RO-1", 0.44), ("NVIDIA RTX A4000", None, 0.35)))
    created = await h.create_pod("fallback", plan=plan)
    await wait_for(lambda: _running(h, "fallback"), what="Running on the second candidate")
    pods = h.runpod_pods(created["metadata"]["uid"])
    assert [p["gpu"]["id"] for p in pods] == ["NVIDIA RTX A4000"]
    assert "NoCapacity" in await h.reasons("fallback")
    assert h.sandbox.admin.state()["creates"] == 1


async def test_payment_required_leaves_the_pod_pending_and_creates_nothing(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.set_balance(0.0)
    await h.start()
    await h.create_pod("broke")

    async def told() -> bool:
        return "PaymentRequired" in await h.reasons("broke")

    await wait_for(told, what="a PaymentRequired event")
    pod = await h.pod("broke")
    assert phase(pod) == "Pending"
    assert pod is not None and POD_ID not in pod["metadata"]["annotations"]
    assert (
        "402" in pod["metadata"]["annotations"]["runpod.io/last-failure"]
        or "PaymentRequired" in (pod["metadata"]["annotations"]["runpod.io/last-failure"])
    )
    assert h.runpod_pods() == []


async def test_a_schema_rejection_fails_the_pod_permanently(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.inject({"route": "POST /v2/pods", "kind": "status", "status": 422, "count": None})
    await h.start()
    await h.create_pod("rejected")

    async def failed() -> bool:
        return phase(await h.pod("rejected")) == "Failed"

    await wait_for(failed, what="pod Failed after 422")
    pod = await h.pod("rejected")
    assert pod is not None and pod["status"]["reason"] == "CreateRejected"
    posts = h.sandbox.admin.state()
    assert posts["creates"] == 0


async def test_a_burst_of_429s_is_waited_out_and_yields_exactly_one_pod(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.inject(
        {"route": "POST /v2/pods", "kind": "status", "status": 429, "count": 3, "retryAfter": 1}
    )
    await h.start()
    created = await h.create_pod("limited")
    await wait_for(lambda: _running(h, "limited"), within=45, what="Running after the 429s")
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    assert "RateLimited" in await h.reasons("limited")


async def test_an_ambiguous_create_is_adopted_not_repeated(pods_harness: Harness) -> None:
    h = pods_harness
    h.sandbox.admin.inject({"route": "POST /v2/pods", "kind": "ambiguous_create", "count": 1})
    await h.start()
    created = await h.create_pod("ambiguous")
    await wait_for(lambda: _running(h, "ambiguous"), what="Running after an ambiguous create")
    pods = h.runpod_pods(created["metadata"]["uid"])
    assert len(pods) == 1
    pod = await h.pod("ambiguous")
    assert pod is not None and pod["metadata"]["annotations"][POD_ID] == pods[0]["id"]
    assert h.sandbox.admin.state()["creates"] == 1


async def test_a_missing_secret_holds_the_pod_until_it_exists_and_its_value_reaches_runpod(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    await h.start()
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    created = await h.create_pod("needs-secret", env=env)

    async def waiting() -> bool:
        pod = await h.pod("needs-secret")
        states = [c["state"] for c in ((pod or {}).get("status") or {}).get("containerStatuses") or ()]
        return "MandatorySecretNotFound" in await h.reasons("needs-secret") and any(
            s.get("waiting", {}).get("reason") == "CreateContainerConfigError" for s in states
        )

    await wait_for(waiting, what="MandatorySecretNotFound event and CreateContainerConfigError")
    assert h.runpod_pods() == []
    events = {e["reason"]: e["message"] for e in await h.events("needs-secret")}
    assert events["MandatorySecretNotFound"] == 'secret "creds" not found'
    pod = await h.pod("needs-secret")
    assert pod is not None
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "creds" not found',
    }
    from kit.kube import post_json

    await post_json(
        h.api,
        f"/api/v1/namespaces/{h.namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"token": "t0ps3cret"},
        },
    )
    await wait_for(lambda: _running(h, "needs-secret"), within=45, what="Running once the Secret exists")
    pods = h.runpod_pods(created["metadata"]["uid"])
    assert pods[0]["env"]["TOKEN"] == "t0ps3cret"
    assert pods[0]["env"]["POD_NAME"] == "needs-secret"
    assert all("t0ps3cret" not in e["message"] for e in await h.events("needs-secret"))


async def test_absent_optional_refs_are_recorded_and_the_pod_runs_without_them(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "maybe", "key": "t", "optional": True}}},
        {"name": "KEEP", "value": "1"},
    ]
    pod = pod_manifest("optional-refs", h.node, env=env)
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "extra", "optional": True}}]
    from kit.kube import post_json

    created = await post_json(h.api, f"/api/v1/namespaces/{h.namespace}/pods", pod)
    await wait_for(lambda: _running(h, "optional-refs"), within=45, what="Running without the optional refs")
    events = {e["reason"]: e["message"] for e in await h.events("optional-refs")}
    assert events["OptionalConfigMapNotFound"] == 'configmap "extra" not found'
    assert events["OptionalSecretNotFound"] == 'skipping optional envvar "TOKEN": secret "maybe" not found'
    [runpod] = h.runpod_pods(created["metadata"]["uid"])
    assert runpod["env"]["KEEP"] == "1" and "TOKEN" not in runpod["env"]


async def test_a_pod_over_the_gpu_budget_waits_until_gpus_free_up(pods_harness: Harness) -> None:
    h = pods_harness
    h.settings = h.settings.model_copy(update={"gpu_budget": 1})
    await h.start()
    await h.create_pod("first")
    await wait_for(lambda: _running(h, "first"), what="first Running")
    second = await h.create_pod("second")

    async def over() -> bool:
        return "OverBudget" in await h.reasons("second")

    await wait_for(over, what="OverBudget event")
    assert h.runpod_pods(second["metadata"]["uid"]) == []
    await h.delete_pod("first")
    await wait_for(lambda: _running(h, "second"), within=60, what="second Running after first was deleted")


async def test_a_recorded_attempt_whose_pod_exists_is_adopted_after_a_crash(pods_harness: Harness) -> None:
    """State a binder killed after its POST left behind: intent recorded, pod created, no id."""
    from binder.pods.decisions import build_create_request
    from binder.pods.naming import POD_UID_ENV, owner_markers, runpod_pod_name
    from contract.policy import NodePolicy

    h = pods_harness
    created = await h.create_pod("crashed")
    meta = created["metadata"]
    name = runpod_pod_name(cluster_id=h.cluster_id, uid=meta["uid"], attempt=0)
    plan = make_plan()
    request = build_create_request(
        name=name,
        plan=plan,
        candidate=plan.candidates[0],
        policy=NodePolicy(),
        image="nvidia/cuda:12.4.1-base-ubuntu22.04",
        args="",
        env={},
        markers=owner_markers(
            cluster_id=h.cluster_id, namespace=h.namespace, name="crashed", uid=meta["uid"], attempt=0
        ),
    )
    from kit.kube import MERGE_PATCH, patch_json

    await patch_json(
        h.api,
        f"/api/v1/namespaces/{h.namespace}/pods/crashed",
        {"metadata": {"annotations": {CREATE_ATTEMPT: name}}},
        MERGE_PATCH,
    )
    earlier = await h.runpod.create_pod_safely(request, marker_env=POD_UID_ENV, marker_value=meta["uid"])
    await h.start()
    await wait_for(lambda: _running(h, "crashed"), what="Running on the adopted pod")
    pod = await h.pod("crashed")
    assert pod is not None and pod["metadata"]["annotations"][POD_ID] == earlier.id
    assert [p["id"] for p in h.runpod_pods(meta["uid"])] == [earlier.id]
    assert h.sandbox.admin.state()["creates"] == 1
    assert "Adopted" in await h.reasons("crashed")


async def test_a_recorded_attempt_that_never_reached_runpod_is_retried_once_after_the_window(
    pods_harness: Harness,
) -> None:
    """State a binder killed between recording intent and sending the POST left behind."""
    from binder.pods.naming import runpod_pod_name
    from kit.kube import MERGE_PATCH, patch_json

    h = pods_harness
    created = await h.create_pod("intent-only")
    uid = created["metadata"]["uid"]
    name = runpod_pod_name(cluster_id=h.cluster_id, uid=uid, attempt=0)
    await patch_json(
        h.api,
        f"/api/v1/namespaces/{h.namespace}/pods/intent-only",
        {"metadata": {"annotations": {CREATE_ATTEMPT: name}}},
        MERGE_PATCH,
    )
    await h.start()
    await asyncio.sleep(1.0)
    assert h.runpod_pods(uid) == []  # still inside the visibility window: no create yet
    await wait_for(lambda: _running(h, "intent-only"), what="Running after the window")
    pods = h.runpod_pods(uid)
    assert len(pods) == 1
    assert pods[0]["name"] == runpod_pod_name(cluster_id=h.cluster_id, uid=uid, attempt=1)


async def test_a_pod_billed_above_the_cap_is_terminated_and_fails(pods_harness: Harness) -> None:
    """The plan's price was stale (A40 really costs 0.44): never keep a pod above the cap."""
    h = pods_harness
    await h.start()
    plan = make_plan((("NVIDIA A40", "EU-RO-1", 0.30),), max_gpu_price=0.40)
    created = await h.create_pod("stale-price", plan=plan)

    async def failed() -> bool:
        return phase(await h.pod("stale-price")) == "Failed"

    await wait_for(failed, what="Failed for a price above the cap")
    pod = await h.pod("stale-price")
    assert pod is not None and pod["status"]["reason"] == "PriceAboveCap"
    await wait_for(lambda: _no_runpod(h, created["metadata"]["uid"]), what="the pricey pod terminated")


async def _no_runpod(h: Harness, uid: str) -> bool:
    return h.runpod_pods(uid) == []


async def test_an_image_runpod_cannot_pull_fails_as_err_image_pull_after_one_log_read(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    image = "ghcr.io/acme/private:1"
    h.sandbox.admin.fail_images([image])
    await h.start()
    created = await h.create_pod("unpullable", image=image)

    async def failed() -> bool:
        return phase(await h.pod("unpullable")) == "Failed"

    await wait_for(failed, what="pod Failed")
    pod = await h.pod("unpullable")
    assert pod is not None
    line = f"error pulling image {image}: pull access denied or repository not found"
    assert (pod["status"]["reason"], pod["status"]["message"]) == ("ErrImagePull", f"RunPod: {line}")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ErrImagePull",
        "message": f"RunPod: {line}",
    }
    events = {e["reason"]: e["message"] for e in await h.events("unpullable")}
    assert events["Failed"] == f'Failed to pull image "{image}": {line} (RunPod system log)'
    await wait_for(lambda: _no_runpod_pod(h, created["metadata"]["uid"]), what="the ERROR pod terminated")
    # The reason cost one log request, once: no per-tick calls beyond the list.
    assert h.sandbox.admin.state()["requests"].get("GET /v2/pods/{id}/logs") == 1


async def _no_runpod_pod(h: Harness, uid: str) -> bool:
    return h.runpod_pods(uid) == []
