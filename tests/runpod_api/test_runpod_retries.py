"""Which calls the client repeats after a failure, and how long it waits between tries."""

from __future__ import annotations

import httpx
import pytest
from runpod_fakes import ClientFactory, FakeClock, pod_json, problem

from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    RetryPolicy,
    RunPodNotFound,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
)
from runpod_api.backoff import backoff_delay

REQUEST = CreatePodRequest(name="rpvk-a-0", image="busybox", gpu=CreateGpuConfig(id="NVIDIA A40"))


def test_backoff_doubles_from_half_a_second_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low = [backoff_delay(n, base=0.5, cap=30.0, jitter=0.0) for n in range(8)]
    high = [backoff_delay(n, base=0.5, cap=30.0, jitter=0.999999) for n in range(8)]
    assert low == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [round(h, 3) for h in high] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_reads_are_retried_after_5xx_and_timeouts_with_growing_waits(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    answers: list[httpx.Response | Exception] = [
        problem(503, "upstream"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=pod_json("abc")),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    pod = await make_client(handler).get_pod("abc")
    assert pod.id == "abc"
    assert clock.sleeps == [0.375, 0.75, 1.5]  # jitter 0.5 -> three quarters of 0.5, 1, 2


async def test_reads_give_up_after_the_retry_budget(make_client: ClientFactory, clock: FakeClock) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return problem(500, "broken")

    with pytest.raises(RunPodServerError):
        await make_client(handler, retry=RetryPolicy(max_retries=2)).list_pods()
    assert calls == 3
    assert len(clock.sleeps) == 2


async def test_a_create_is_never_retried_blindly_after_5xx_or_timeout(make_client: ClientFactory) -> None:
    for failure in (problem(500, "oops"), httpx.ReadTimeout("slow")):
        posts = 0

        def handler(request: httpx.Request, failure: object = failure) -> httpx.Response:
            nonlocal posts
            posts += 1
            if isinstance(failure, Exception):
                raise failure
            assert isinstance(failure, httpx.Response)
            return failure

        with pytest.raises((RunPodServerError, RunPodTimeout)):
            await make_client(handler).create_pod(REQUEST)
        assert posts == 1


async def test_stop_and_restart_are_not_retried_but_terminate_is(make_client: ClientFactory) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.content.decode())
        if len(calls) in (1, 2):
            return problem(502, "bad gateway")
        return httpx.Response(204)

    client = make_client(handler)
    with pytest.raises(RunPodServerError):
        await client.pod_action("abc", "stop")
    assert await client.pod_action("abc", "terminate") is None
    assert calls == ['{"action":"stop"}', '{"action":"terminate"}', '{"action":"terminate"}']


async def test_delete_is_retried_and_a_404_means_already_gone(make_client: ClientFactory) -> None:
    answers = [problem(500, "x"), httpx.Response(204), problem(404, "pod not found")]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "DELETE"
        return answers.pop(0)

    client = make_client(handler)
    assert await client.delete_pod("abc") is True
    assert await client.delete_pod("abc") is False


async def test_get_of_an_unknown_pod_raises_not_found_without_retrying(make_client: ClientFactory) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return problem(404, "pod not found")

    with pytest.raises(RunPodNotFound):
        await make_client(handler).get_pod("nope")
    assert calls == 1


async def test_a_429_is_raised_with_its_wait_unless_the_caller_asked_to_wait(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    def limited_once() -> object:
        answers = [
            httpx.Response(
                429,
                json={"title": "Too Many Requests", "status": 429, "detail": "minute window"},
                headers={"Retry-After": "7"},
            ),
            httpx.Response(201, json=pod_json("new")),
        ]
        return lambda request: answers.pop(0)

    with pytest.raises(RunPodRateLimited) as caught:
        await make_client(limited_once()).create_pod(REQUEST)
    assert caught.value.retry_after == 7
    assert clock.sleeps == []

    waiting = make_client(limited_once(), retry=RetryPolicy(rate_limit_retries=1))
    pod = await waiting.create_pod(REQUEST)
    assert pod.id == "new"
    assert clock.sleeps == [7]


async def test_after_a_429_the_next_request_waits_for_retry_after(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(200, json={"pods": []}),
    ]
    client = make_client(lambda request: answers.pop(0))
    with pytest.raises(RunPodRateLimited):
        await client.list_pods()
    assert await client.list_pods() == []
    assert clock.sleeps == [5]


async def test_a_wait_longer_than_allowed_is_raised_instead_of_slept(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            200,
            json={"pods": []},
            headers={"RateLimit": '"minute";r=40;t=30, "hour";r=0;t=1724'},
        )

    client = make_client(handler)
    await client.list_pods()
    with pytest.raises(RunPodRateLimited) as caught:
        await client.list_pods()
    assert caught.value.status is None
    assert caught.value.retry_after == pytest.approx(1725)
    assert calls == 1, "the refused request never went out"
    assert clock.sleeps == []
