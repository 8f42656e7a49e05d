"""The narrow Kubernetes interface the pod lifecycle uses: a handful of calls on raw dicts.

Owns: patching a pod's annotations (merge patch on the pod) and its status (merge patch on the
`pods/status` subresource), the final delete (grace 0, UID precondition; 404/409 mean someone
else finished), and reading the Secrets/ConfigMaps env refers to. Built on `kit.kube`'s
plain-dict calls, so errors are `kit.kube.KubeError` subclasses.

Every pod write carries `metadata.uid`: the API server refuses it (422 "metadata.uid: field is
immutable") when the name now belongs to a new pod, which surfaces as `PodGone` like a 404 does.
The `pods/status` subresource persists `metadata.annotations` too (checked against the real API
server), so the status writer sends annotations and status in one patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient

from kit.kube import MERGE_PATCH, Conflict, Invalid, NotFound, delete_json, get_json, patch_json


class PodGone(Exception):
    """The pod was deleted (or replaced by a new pod of the same name) meanwhile."""


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


class KubePods:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def patch_annotations(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        uid: str,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Set (or with None remove) annotations of exactly this pod (UID-guarded). With
        `resource_version` the patch is a compare-and-swap: `kit.kube.Conflict` (409) when the
        pod changed since that version."""
        metadata: dict[str, Any] = {"uid": uid, "annotations": dict(annotations)}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return await self._patch(_pod_path(namespace, name), {"metadata": metadata})

    async def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, uid: str
    ) -> dict[str, Any]:
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), "uid": uid}}
        return await self._patch(_pod_path(namespace, name) + "/status", body)

    async def delete_final(self, namespace: str, name: str, *, uid: str) -> bool:
        """Final delete once RunPod confirmed termination. False if it was already gone."""
        try:
            await delete_json(
                self._api,
                _pod_path(namespace, name),
                body={
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
        except (NotFound, Conflict):
            return False
        return True

    async def pod_uid(self, namespace: str, name: str) -> str | None:
        """The UID of the pod of that name now, None if there is none."""
        pod = await self._read(_pod_path(namespace, name))
        return None if pod is None else (pod.get("metadata") or {}).get("uid")

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(f"/api/v1/namespaces/{namespace}/secrets/{name}")

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    async def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")

    async def read_volume(self, name: str) -> dict[str, Any] | None:
        return await self._read(f"/api/v1/persistentvolumes/{name}")

    async def _patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await patch_json(self._api, path, body, MERGE_PATCH)
        except NotFound as exc:
            raise PodGone(path) from exc
        except (Conflict, Invalid) as exc:
            if "metadata.uid" in exc.message or "precondition" in exc.message.lower():
                raise PodGone(path) from exc
            raise

    async def _read(self, path: str) -> dict[str, Any] | None:
        try:
            return await get_json(self._api, path)
        except NotFound:
            return None
