"""The client against the sandbox RunPod: every error row the emulator can produce, and safe create.

A real HTTP server on loopback (`sandbox.testing.running_sandbox`), real sockets, real time;
retry delays are shortened through `RetryPolicy` so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    LogEvent,
    RetryPolicy,
    RunPodAuthError,
    RunPodBadRequest,
    RunPodClient,
    RunPodConflict,
    RunPodForbidden,
    RunPodMetrics,
    RunPodNotFound,
    RunPodPaymentRequired,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
    RunPodUnprocessable,
)
from sandbox.testing import RunningSandbox, running_sandbox

KEY = "sandbox-key-0123456789"
MARKER = "RPVK_POD_UID"
FAST = RetryPolicy(backoff_base=0.01, backoff_cap=0.05, reconcile_delays=(0.05, 0.2, 0.4))


def request(name: str = "rpvk-c1a2-7f3a9b21-0", *, uid: str = "uid-1", **fields: Any) -> CreatePodRequest:
    values: dict[str, Any] = {
        "name": name,
        "image": "busybox",
        "gpu": CreateGpuConfig(id="NVIDIA A40"),
        "cloud": "SECURE",
        "disk": 10,
        "env": {MARKER: uid},
        "args": "sh -c 'echo ready; sleep infinity'",
    }
    values.update(fields)
    return CreatePodRequest(**values)


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=KEY, seed=1) as sb:
        yield sb


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(sandbox: RunningSandbox, registry: CollectorRegistry) -> AsyncIterator[RunPodClient]:
    async with RunPodClient(
        api_key=KEY, base_url=sandbox.base_url, timeout=2.0, retry=FAST, metrics=RunPodMetrics(registry)
    ) as rp:
        yield rp


async def test_a_pod_is_created_read_listed_and_deleted(client: RunPodClient) -> None:
    created = await client.create_pod(request())
    assert created.status == "PROVISIONING"
    assert created.gpu is not None and created.gpu.count == 1
    assert (await client.get_pod(created.id)).name == "rpvk-c1a2-7f3a9b21-0"
    assert created.id in [p.id for p in await client.list_pods()]
    assert await client.delete_pod(created.id) is True
    assert await client.delete_pod(created.id) is False
    assert created.id not in [p.id for p in await client.list_pods()]


async def test_the_catalog_answers_are_returned_raw(client: RunPodClient) -> None:
    gpus = await client.gpu_catalog(cloud="SECURE")
    assert any(g["id"] == "NVIDIA A40" for g in gpus["gpus"])
    assert "availability" in gpus["gpus"][0]
    centers = await client.datacenters()
    assert any(dc["id"] == "EU-RO-1" for dc in centers["dataCenters"])


async def test_the_cpu_catalog_and_cuda_scoped_gpu_catalog_are_returned_raw(client: RunPodClient) -> None:
    cpus = await client.cpu_catalog()
    assert {"cpu3c", "cpu5c"} <= {c["id"] for c in cpus["cpus"]}
    assert all("availability" in c for c in cpus["cpus"])
    scoped = await client.gpu_catalog(cloud="SECURE", cuda_versions=["12.4"])
    v100 = next(g for g in scoped["gpus"] if g["id"] == "Tesla V100-SXM2-32GB")
    a40 = next(g for g in scoped["gpus"] if g["id"] == "NVIDIA A40")
    assert v100["availability"] != "NONE" and a40["availability"] == "NONE"


async def test_a_cpu_pod_is_created_and_read_back_without_a_gpu(client: RunPodClient) -> None:
    from runpod_api import CreateCpuConfig

    created = await client.create_pod(request(gpu=None, cpu=CreateCpuConfig(id="cpu5c", vcpu_count=8)))
    assert created.gpu is None and created.cpu is not None
    assert (created.cpu.id, created.cpu.vcpu_count, created.cpu.memory) == ("cpu5c", 8, 16)
    assert created.cost == pytest.approx(0.28)
    listed = next(p for p in await client.list_pods() if p.id == created.id)
    assert listed.cpu == created.cpu
    assert await client.delete_pod(created.id) is True


async def test_a_revoked_key_is_an_auth_error(sandbox: RunningSandbox, client: RunPodClient) -> None:
    sandbox.admin.revoke_key(KEY)
    with pytest.raises(RunPodAuthError) as caught:
        await client.list_pods()
    assert KEY not in str(caught.value)


async def test_an_empty_balance_is_payment_required(sandbox: RunningSandbox, client: RunPodClient) -> None:
    sandbox.admin.set_balance(0.0)
    with pytest.raises(RunPodPaymentRequired):
        await client.create_pod(request())


async def test_a_denied_gpu_pool_is_forbidden(sandbox: RunningSandbox, client: RunPodClient) -> None:
    sandbox.admin.deny_gpus(["NVIDIA A40"])
    with pytest.raises(RunPodForbidden) as caught:
        await client.create_pod(request())
    assert not caught.value.is_cloudflare


async def test_a_read_only_key_cannot_create(sandbox: RunningSandbox, registry: CollectorRegistry) -> None:
    sandbox.admin.add_key("read-only-key-123", read_only=True)
    async with RunPodClient(
        api_key="read-only-key-123", base_url=sandbox.base_url, retry=FAST, metrics=RunPodMetrics(registry)
    ) as reader:
        assert isinstance(await reader.list_pods(), list)
        with pytest.raises(RunPodForbidden):
            await reader.create_pod(request())


async def test_no_stock_in_the_pinned_data_center_is_a_capacity_refusal(
    sandbox: RunningSandbox, client: RunPodClient
) -> None:
    sandbox.admin.set_stock(gpu_id="NVIDIA A40", datacenter_id="EU-RO-1", cloud="SECURE", free=0)
    with pytest.raises(RunPodBadRequest) as caught:
        await client.create_pod(request(data_center_ids=["EU-RO-1"]))
    assert caught.value.is_capacity
    assert caught.value.retryable


async def test_an_unknown_gpu_type_is_a_bad_request_but_not_capacity(client: RunPodClient) -> None:
    with pytest.raises(RunPodBadRequest) as caught:
        await client.create_pod(request(gpu=CreateGpuConfig(id="NVIDIA RTX 4090")))
    assert not caught.value.is_capacity


async def test_schema_violations_are_unprocessable_with_each_error_listed(client: RunPodClient) -> None:
    with pytest.raises(RunPodUnprocessable) as caught:
        await client.create_pod(request(image=None))
    assert caught.value.errors
    pod = await client.create_pod(request())
    with pytest.raises(RunPodUnprocessable) as patched:
        await client.patch_pod(pod.id, {"gpuCount": 2})
    assert any("gpuCount" in e for e in patched.value.errors)


async def test_unknown_pods_are_not_found(client: RunPodClient) -> None:
    with pytest.raises(RunPodNotFound):
        await client.get_pod("nosuchpod00000")
    with pytest.raises(RunPodNotFound):
        await client.pod_action("nosuchpod00000", "stop")


async def test_an_action_invalid_for_the_status_is_a_conflict(client: RunPodClient) -> None:
    pod = await client.create_pod(request())
    with pytest.raises(RunPodConflict):
        await client.pod_action(pod.id, "start")
    stopped = await client.pod_action(pod.id, "stop")
    assert stopped is not None and stopped.id == pod.id
    assert await client.pod_action(pod.id, "terminate") is None


async def test_a_429_carries_its_retry_after(sandbox: RunningSandbox, client: RunPodClient) -> None:
    sandbox.admin.inject({"route": "GET /v2/pods", "kind": "status", "status": 429, "retry_after": 3})
    with pytest.raises(RunPodRateLimited) as caught:
        await client.list_pods()
    assert caught.value.retry_after >= 3


async def test_reads_ride_out_transient_server_errors(
    sandbox: RunningSandbox, client: RunPodClient, registry: CollectorRegistry
) -> None:
    sandbox.admin.inject({"route": "GET /v2/pods", "kind": "status", "status": 503, "count": 2})
    assert await client.list_pods() == []
    labels = {"method": "GET", "endpoint": "/v2/pods"}
    assert registry.get_sample_value("runpod_api_requests_total", {**labels, "status": "503"}) == 2
    assert registry.get_sample_value("runpod_api_requests_total", {**labels, "status": "200"}) == 1


async def test_a_plain_create_surfaces_a_server_error_without_retrying(
    sandbox: RunningSandbox, client: RunPodClient
) -> None:
    sandbox.admin.inject({"route": "POST /v2/pods", "kind": "status", "status": 500})
    with pytest.raises(RunPodServerError):
        await client.create_pod(request())
    assert sandbox.admin.state()["creates"] == 0


async def test_reads_that_keep_timing_out_raise_a_timeout(sandbox: RunningSandbox) -> None:
    sandbox.admin.inject({"route": "GET /v2/pods/{id}", "kind": "timeout", "delaySeconds": 1, "count": None})
    async with RunPodClient(
        api_key=KEY,
        base_url=sandbox.base_url,
        timeout=0.2,
        retry=FAST,
        metrics=RunPodMetrics(CollectorRegistry()),
    ) as impatient:
        with pytest.raises(RunPodTimeout):
            await impatient.get_pod("nosuchpod00000")
    sandbox.admin.clear_faults()


@pytest.mark.parametrize("kind", ["ambiguous_create", "ambiguous_timeout"])
async def test_an_ambiguous_create_yields_exactly_one_pod(
    sandbox: RunningSandbox, registry: CollectorRegistry, kind: str
) -> None:
    fault: dict[str, Any] = {"route": "POST /v2/pods", "kind": kind, "count": 1}
    if kind == "ambiguous_timeout":
        fault["delaySeconds"] = 2
    sandbox.admin.inject(fault)
    name = "rpvk-c1a2-7f3a9b21-0"
    async with RunPodClient(
        api_key=KEY, base_url=sandbox.base_url, timeout=0.5, retry=FAST, metrics=RunPodMetrics(registry)
    ) as rp:
        pod = await asyncio.wait_for(
            rp.create_pod_safely(request(name), marker_env=MARKER, marker_value="uid-1"), timeout=120
        )
    state = sandbox.admin.state()
    ever = [p for p in state["pods"] + state["terminated"] if p["name"] == name]
    assert [p["id"] for p in ever] == [pod.id]
    assert state["creates"] == 1


async def test_a_burst_is_paced_under_the_sandbox_quota_without_429s(
    sandbox: RunningSandbox, client: RunPodClient, registry: CollectorRegistry
) -> None:
    # A one-second "minute" window keeps the test short; the decisions are the same.
    sandbox.admin.set_rate_limits([{"window": "minute", "quota": 15, "windowS": 1}])
    results = await asyncio.gather(*(client.list_pods() for _ in range(40)))
    assert results == [[]] * 40
    labels = {"method": "GET", "endpoint": "/v2/pods"}
    assert registry.get_sample_value("runpod_api_requests_total", {**labels, "status": "429"}) is None
    assert registry.get_sample_value("runpod_api_requests_total", {**labels, "status": "200"}) == 40


async def container_lines(client: RunPodClient, pod_id: str, count: int, **query: Any) -> list[LogEvent]:
    lines: list[LogEvent] = []
    async with contextlib.aclosing(client.stream_logs(pod_id, source="container", **query)) as events:
        async for event in events:
            lines.append(event)
            if len(lines) == count:
                break
    return lines


async def test_logs_stream_live_and_resume_after_a_known_event(client: RunPodClient) -> None:
    pod = await client.create_pod(request(args="sh -c 'echo one; echo two; echo three; sleep infinity'"))
    first = await asyncio.wait_for(container_lines(client, pod.id, 3, tail=100), timeout=30)
    assert [e.line for e in first] == ["one", "two", "three"]
    assert all(e.id for e in first)
    resumed = await asyncio.wait_for(
        container_lines(client, pod.id, 2, last_event_id=first[0].id), timeout=30
    )
    assert [e.line for e in resumed] == ["two", "three"], "resume is exclusive: no line twice"


async def test_registry_credentials_and_network_volumes_round_trip(client: RunPodClient) -> None:
    from runpod_api.errors import RunPodBadRequest
    from runpod_api.models import CreateNetworkVolumeRequest, CreateRegistryRequest

    registry = await client.create_registry(CreateRegistryRequest(name="rpvk-x", username="u", password="pw"))
    assert [r.id for r in await client.list_registries()] == [registry.id]
    volume = await client.create_network_volume(
        CreateNetworkVolumeRequest(name="v", size=10, data_center="EU-RO-1")
    )
    assert (volume.data_center, volume.size) == ("EU-RO-1", 10)
    assert (await client.get_network_volume(volume.id)).id == volume.id
    assert (await client.resize_network_volume(volume.id, 20)).size == 20
    with pytest.raises(RunPodBadRequest):
        await client.resize_network_volume(volume.id, 15)
    assert [v.id for v in await client.list_network_volumes()] == [volume.id]
    assert await client.delete_network_volume(volume.id) is True
    assert await client.delete_network_volume(volume.id) is False
    assert await client.delete_registry(registry.id) is True
    assert await client.delete_registry(registry.id) is False
