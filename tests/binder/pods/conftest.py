"""Fixtures for the pod lifecycle against the real control plane and the sandbox RunPod.

`pods_harness` gives a test its own virtual node name (so controllers of different tests never
see each other's pods), its own sandbox account and fast intervals; the test starts the
`PodController` with `await pods_harness.start()` (and may stop and restart it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from pods_support import API_KEY, Harness

from binder.settings import BinderSettings
from kit.kube import NotFound, delete_json, post_json
from runpod_api.backoff import RetryPolicy
from runpod_api.client import RunPodClient
from sandbox.testing import RunningSandbox, running_sandbox


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=1) as sb:
        yield sb


@pytest.fixture
async def pods_harness(
    control_plane: Any, namespace: str, kube_api: ApiClient, sandbox: RunningSandbox
) -> AsyncIterator[Harness]:
    node = f"rp-{namespace}"[:63]
    await post_json(
        kube_api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    )
    settings = BinderSettings(
        runpod_api_key=API_KEY,
        runpod_base_url=sandbox.base_url,
        node_name=node,
        reconcile_interval=2,
        fast_interval=0.5,
        sweep_interval=1,
        sweep_grace_seconds=2,
        gpu_budget=8,
        max_gpu_price=2.0,
        leader_election=False,
    )
    runpod = RunPodClient(
        api_key=API_KEY,
        base_url=sandbox.base_url,
        retry=RetryPolicy(reconcile_delays=(0.2, 0.5), backoff_base=0.05),
    )
    harness = Harness(
        api=kube_api,
        namespace=namespace,
        node=node,
        cluster_id=f"cl-{namespace}",
        sandbox=sandbox,
        settings=settings,
        runpod=runpod,
    )
    try:
        yield harness
    finally:
        await harness.stop()
        await runpod.aclose()
        with contextlib.suppress(NotFound):
            await delete_json(kube_api, f"/api/v1/nodes/{node}")
