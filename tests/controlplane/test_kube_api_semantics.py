"""kit.kube against the real apiserver: conflicts, patch types, subresources, typed errors."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from kit.kube import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    AlreadyExists,
    Conflict,
    NotFound,
    TransientKubeError,
    delete_json,
    get_json,
    patch_json,
    post_json,
    put_json,
)

NODE = "controlplane-test-node"  # pods only reference it; no Node object is needed for status patches


def _pod(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


async def test_update_with_a_stale_resource_version_is_rejected_with_conflict(
    kube_api: ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = await post_json(kube_api, path, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    fresh = {**created, "data": {"v": "2"}}
    await put_json(kube_api, f"{path}/c", fresh)
    stale = {**created, "data": {"v": "3"}}  # still carries the first resourceVersion
    with pytest.raises(Conflict) as caught:
        await put_json(kube_api, f"{path}/c", stale)
    assert caught.value.status == 409
    assert (await get_json(kube_api, f"{path}/c"))["data"] == {"v": "2"}


async def test_create_twice_raises_already_exists_and_missing_objects_raise_not_found(
    kube_api: ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await post_json(kube_api, path, {"metadata": {"name": "dup"}})
    with pytest.raises(AlreadyExists):
        await post_json(kube_api, path, {"metadata": {"name": "dup"}})
    with pytest.raises(NotFound) as caught:
        await get_json(kube_api, f"{path}/absent")
    assert caught.value.reason == "NotFound"


async def test_pod_status_patches_merge_conditions_by_type_or_replace_them_by_patch_type(
    kube_api: ApiClient, namespace: str
) -> None:
    await post_json(kube_api, f"/api/v1/namespaces/{namespace}/pods", _pod(namespace, "p", nodeName=NODE))
    status = f"/api/v1/namespaces/{namespace}/pods/p/status"

    def condition(kind: str, value: str) -> dict[str, str]:
        return {"type": kind, "status": value, "lastTransitionTime": "2026-01-01T00:00:00Z"}

    await patch_json(
        kube_api, status, {"status": {"conditions": [condition("Ready", "False")]}}, STRATEGIC_MERGE_PATCH
    )
    merged = await patch_json(
        kube_api,
        status,
        {"status": {"conditions": [condition("PodScheduled", "True")]}},
        STRATEGIC_MERGE_PATCH,
    )
    assert {c["type"]: c["status"] for c in merged["status"]["conditions"]} == {
        "Ready": "False",
        "PodScheduled": "True",
    }

    replaced = await patch_json(
        kube_api,
        status,
        {"status": {"conditions": [condition("Ready", "True")], "phase": "Running"}},
        MERGE_PATCH,
    )
    assert [(c["type"], c["status"]) for c in replaced["status"]["conditions"]] == [("Ready", "True")]

    patched = await patch_json(
        kube_api,
        status,
        [
            {"op": "test", "path": "/status/phase", "value": "Running"},
            {"op": "replace", "path": "/status/phase", "value": "Succeeded"},
        ],
        JSON_PATCH,
    )
    assert patched["status"]["phase"] == "Succeeded"
    pod = await get_json(kube_api, f"/api/v1/namespaces/{namespace}/pods/p")
    assert pod["spec"]["nodeName"] == NODE  # the status subresource never touches spec


async def test_binding_subresource_assigns_the_node_once(kube_api: ApiClient, namespace: str) -> None:
    # A scheduler name nobody serves keeps the real scheduler away from this pod.
    await post_json(
        kube_api, f"/api/v1/namespaces/{namespace}/pods", _pod(namespace, "b", schedulerName="nobody")
    )
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "b", "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
    }
    await post_json(kube_api, f"/api/v1/namespaces/{namespace}/pods/b/binding", binding)
    pod = await get_json(kube_api, f"/api/v1/namespaces/{namespace}/pods/b")
    assert pod["spec"]["nodeName"] == NODE
    with pytest.raises(Conflict):
        await post_json(kube_api, f"/api/v1/namespaces/{namespace}/pods/b/binding", binding)


async def test_delete_with_a_wrong_uid_precondition_is_refused(kube_api: ApiClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = await post_json(kube_api, path, {"metadata": {"name": "d"}})
    with pytest.raises(Conflict):
        await delete_json(kube_api, f"{path}/d", body={"preconditions": {"uid": "not-the-uid"}})
    await delete_json(kube_api, f"{path}/d", body={"preconditions": {"uid": created["metadata"]["uid"]}})
    with pytest.raises(NotFound):
        await get_json(kube_api, f"{path}/d")


async def test_an_unreachable_apiserver_raises_a_transient_kube_error_not_a_foreign_one() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = Configuration(host=f"https://127.0.0.1:{port}")
    async with ApiClient(configuration=configuration) as api:
        with pytest.raises(TransientKubeError) as caught:
            await get_json(api, "/api/v1/namespaces")
    assert caught.value.status == 0
