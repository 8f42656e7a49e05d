"""kit.kube.Reflector against the real apiserver: list, watch, and re-list after 410 Gone."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio.client import ApiClient

from controlplane import ControlPlane
from kit.kube import Backoff, Reflector, delete_json, get_json, load_api_client, post_json, put_json

_WAIT = 30.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append((event_type, obj["metadata"]["name"]))
        self.changed.set()

    async def wait_for(self, event: tuple[str, str]) -> None:
        async with asyncio.timeout(_WAIT):
            while event not in self.events:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Reflector], None]]:
    tasks: list[asyncio.Task[None]] = []

    def start(reflector: Reflector) -> None:
        tasks.append(asyncio.create_task(reflector.run(), name="reflector"))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_reflector_lists_existing_objects_then_reports_watch_events(
    kube_api: ApiClient, namespace: str, running: Callable[[Reflector], None]
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    await post_json(kube_api, path, {"metadata": {"name": "before", "labels": {"app": "x"}}})
    await post_json(kube_api, path, {"metadata": {"name": "unlabelled"}})
    recorder = Recorder()
    reflector = Reflector(kube_api, path=path, label_selector="app=x", on_event=recorder)
    running(reflector)
    async with asyncio.timeout(_WAIT):
        await reflector.synced.wait()
    assert list(reflector.items) == [f"{namespace}/before"]
    assert reflector.items[f"{namespace}/before"]["kind"] == "ConfigMap"

    await post_json(kube_api, path, {"metadata": {"name": "after", "labels": {"app": "x"}}})
    await recorder.wait_for(("ADDED", "after"))
    before = await get_json(kube_api, f"{path}/before")
    await put_json(kube_api, f"{path}/before", {**before, "data": {"k": "v"}})
    await recorder.wait_for(("MODIFIED", "before"))
    assert reflector.items[f"{namespace}/before"]["data"] == {"k": "v"}
    await delete_json(kube_api, f"{path}/after")
    await recorder.wait_for(("DELETED", "after"))
    assert set(reflector.items) == {f"{namespace}/before"}
    assert ("ADDED", "unlabelled") not in recorder.events
    assert reflector.relists == 1


@pytest.fixture
def private_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """etcd + apiserver of our own, because this test restarts the apiserver."""
    with tempfile.TemporaryDirectory(prefix="runpod-kubelet-cp410-") as data_dir:
        plane = ControlPlane(control_plane.bin_dir, Path(data_dir), components=("etcd", "kube-apiserver"))
        with plane:
            yield plane


def _etcd(plane: ControlPlane, call: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{plane.etcd_url}/v3/kv/{call}", json=body, timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_reflector_relists_after_410_and_reports_objects_deleted_meanwhile(
    private_plane: ControlPlane, running: Callable[[Reflector], None]
) -> None:
    api = await load_api_client(str(private_plane.kubeconfig))
    try:
        path = "/api/v1/namespaces/default/configmaps"
        for name in ("stays", "vanishes"):
            await post_json(api, path, {"metadata": {"name": name}})
        recorder = Recorder()
        reflector = Reflector(api, path=path, on_event=recorder, backoff=Backoff(initial=0.2, maximum=1.0))
        running(reflector)
        async with asyncio.timeout(_WAIT):
            await reflector.synced.wait()
        assert {"default/stays", "default/vanishes"} <= set(reflector.items)

        # While the apiserver is down the reflector cannot watch. Delete one object behind its
        # back and compact etcd's history: its resourceVersion is now older than anything the
        # restarted apiserver (whose watch cache starts afresh) or etcd can replay.
        stale = reflector.resource_version
        await asyncio.to_thread(private_plane.stop_component, "kube-apiserver")
        deleted = _etcd(private_plane, "deleterange", {"key": _b64("/registry/configmaps/default/vanishes")})
        assert deleted.get("deleted") == "1"
        _etcd(private_plane, "compaction", {"revision": deleted["header"]["revision"], "physical": True})
        await asyncio.to_thread(private_plane.start_component, "kube-apiserver")

        await recorder.wait_for(("DELETED", "vanishes"))
        assert reflector.relists >= 2
        assert "default/vanishes" not in reflector.items
        assert "default/stays" in reflector.items

        # The same stale resourceVersion, asked for directly: the apiserver accepts the watch
        # (HTTP 200) and then sends one ERROR event carrying a 410 Expired Status.
        params = {"watch": "true", "resourceVersion": stale, "timeoutSeconds": "5"}
        answer = await get_json(api, path, params=params)
        assert answer["type"] == "ERROR"
        assert (answer["object"]["code"], answer["object"]["reason"]) == (410, "Expired")

        await post_json(api, path, {"metadata": {"name": "later"}})
        await recorder.wait_for(("ADDED", "later"))  # and it watches again afterwards
    finally:
        await api.close()
