"""What every call guarantees: headers sent, the key kept secret, only our errors, clean metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from runpod_fakes import API_KEY, ClientFactory, pod_json, problem

from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    RunPodClient,
    RunPodError,
    RunPodProtocolError,
)

REQUEST = CreatePodRequest(
    name="rpvk-a-0", image="busybox", gpu=CreateGpuConfig(id="NVIDIA A40"), env={"RPVK_POD_UID": "u1"}
)


async def test_every_request_carries_the_key_a_custom_user_agent_and_gpu_count(
    make_client: ClientFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json=pod_json("p1"))
        if request.url.path == "/v2/pods":
            return httpx.Response(200, json={"pods": []})
        return httpx.Response(200, json={"gpus": [], "dataCenters": []})

    client = make_client(handler)
    await client.gpu_catalog(cloud="COMMUNITY", count=2)
    await client.datacenters()
    await client.list_pods()
    await client.create_pod(REQUEST)
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.headers["user-agent"].startswith("runpod-kubelet/")
    assert seen[0].url.path == "/v2/catalog/gpus"
    assert dict(seen[0].url.params) == {
        "include": "AVAILABILITY",
        "product": "POD",
        "cloud": "COMMUNITY",
        "count": "2",
    }
    assert seen[1].url.path == "/v2/catalog/datacenters"
    assert b'"gpu":{"id":"NVIDIA A40","count":1}' in seen[3].content


async def test_pod_ids_are_escaped_in_paths(make_client: ClientFactory) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json=pod_json("a b/c"))

    await make_client(handler).get_pod("a b/c")
    assert seen == ["/v2/pods/a%20b%2Fc"]


async def test_pagination_is_followed_when_runpod_sends_it(make_client: ClientFactory) -> None:
    pages = {
        "": {"pods": [pod_json("p1")], "pagination": {"hasNextPage": True, "nextCursor": "c2"}},
        "c2": {"pods": [pod_json("p2")], "pagination": {"hasNextPage": True, "nextCursor": "c3"}},
        "c3": {
            "pods": [pod_json("p3"), {"name": "no id"}],
            "pagination": {"hasNextPage": False, "nextCursor": None},
        },
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor", "")])

    pods = await make_client(handler).list_pods()
    assert [p.id for p in pods] == ["p1", "p2", "p3"]


def leaking_answers() -> list[Callable[[httpx.Request], httpx.Response]]:
    def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        return handler

    return [
        raising(httpx.ConnectError("refused")),
        raising(httpx.ReadTimeout("slow")),
        raising(httpx.RemoteProtocolError("peer closed")),
        raising(httpx.WriteError("broken pipe")),
        raising(httpx.PoolTimeout("pool")),
        raising(httpx.UnsupportedProtocol("gopher")),
        lambda request: httpx.Response(200, content=b"{not json"),
        lambda request: httpx.Response(200, json=["a", "list"]),
        lambda request: httpx.Response(200, json={"pods": "nope"}),
        lambda request: httpx.Response(200, json={"name": "a pod without id", "env": {"K": API_KEY}}),
        lambda request: httpx.Response(204),
        lambda request: httpx.Response(302, headers={"location": "https://elsewhere"}),
        lambda request: httpx.Response(418, text="teapot"),
    ]


Operation = Callable[[RunPodClient], Awaitable[Any]]
OPERATIONS: list[Operation] = [
    lambda c: c.get_pod("p1"),
    lambda c: c.list_pods(),
    lambda c: c.create_pod(REQUEST),
    lambda c: c.gpu_catalog(cloud="SECURE"),
    lambda c: c.pod_action("p1", "stop"),
    lambda c: c.patch_pod("p1", {"image": "x"}),
]


@pytest.mark.parametrize("answer", leaking_answers())
async def test_no_foreign_exception_type_leaves_the_client(
    make_client: ClientFactory, answer: Callable[[httpx.Request], httpx.Response]
) -> None:
    client = make_client(answer)
    for operation in OPERATIONS:
        try:
            await operation(client)
        except RunPodError as exc:
            assert type(exc).__module__ == "runpod_api.errors"
            assert API_KEY not in str(exc)
        # Any other exception type fails the test by propagating.


async def test_an_unreadable_pod_is_reported_without_echoing_its_env(make_client: ClientFactory) -> None:
    client = make_client(
        lambda request: httpx.Response(200, json={"name": "x", "env": {"TOKEN": "s3cr3t-value"}})
    )
    with pytest.raises(RunPodProtocolError) as caught:
        await client.get_pod("p1")
    assert "s3cr3t-value" not in str(caught.value)
    assert caught.value.__cause__ is None, "the validation error (which holds the body) is not chained"


async def test_the_api_key_never_reaches_logs_or_exceptions(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[httpx.Response | Exception] = [
        problem(401, f"invalid token {API_KEY}"),
        problem(500, f"upstream echoed Authorization: Bearer {API_KEY}"),
        httpx.ReadTimeout(f"timed out talking with key {API_KEY}"),
        httpx.Response(200, json={"pods": []}),
        problem(500, "create failed"),
        httpx.Response(200, json={"pods": []}),
        httpx.Response(200, json={"pods": []}),
        httpx.Response(200, json={"pods": []}),
        problem(422, "Request validation failed.", errors=[f"$.env: {API_KEY} not allowed"]),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = make_client(handler)
    messages: list[str] = [repr(client)]
    for operation in (
        lambda: client.list_pods(),
        lambda: client.list_pods(),
        lambda: client.create_pod_safely(REQUEST, marker_env="RPVK_POD_UID", marker_value="u1"),
    ):
        try:
            await operation()
        except RunPodError as exc:
            messages += [str(exc), repr(exc), exc.detail]
    assert not answers, "every scripted answer was used"
    assert caplog.records, "the client does log"
    for record in caplog.records:
        messages.append(record.getMessage())
    assert all(API_KEY not in message for message in messages)


async def test_metrics_label_calls_by_templated_endpoint_and_status_never_by_id(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    answers = [
        httpx.Response(200, json=pod_json("secretpodid123"), headers={"RateLimit": '"minute";r=41;t=20'}),
        problem(404, "pod not found"),
    ]
    client = make_client(lambda request: answers.pop(0))
    await client.get_pod("secretpodid123")
    assert await client.delete_pod("secretpodid123") is False

    ok = {"method": "GET", "endpoint": "/v2/pods/{id}", "status": "200"}
    gone = {"method": "DELETE", "endpoint": "/v2/pods/{id}", "status": "404"}
    assert registry.get_sample_value("runpod_api_requests_total", ok) == 1
    assert registry.get_sample_value("runpod_api_requests_total", gone) == 1
    assert (
        registry.get_sample_value(
            "runpod_api_request_duration_seconds_count", {"method": "GET", "endpoint": "/v2/pods/{id}"}
        )
        == 1
    )
    assert registry.get_sample_value("runpod_api_ratelimit_remaining", {"window": "minute"}) == 40
    for metric in registry.collect():
        for sample in metric.samples:
            assert all("secretpodid123" not in value for value in sample.labels.values())
            assert all(API_KEY not in value for value in sample.labels.values())


async def test_a_registry_password_never_reaches_an_error(make_client: ClientFactory) -> None:
    from runpod_api.models import CreateRegistryRequest

    def handler(request: httpx.Request) -> httpx.Response:
        return problem(400, "bad credential hunter2 for robot")

    client = make_client(handler)
    with pytest.raises(RunPodError) as caught:
        await client.create_registry(CreateRegistryRequest(name="n", username="robot", password="hunter2"))
    assert "hunter2" not in str(caught.value) and "hunter2" not in caught.value.detail
    assert "hunter2" not in repr(CreateRegistryRequest(name="n", username="robot", password="hunter2"))
