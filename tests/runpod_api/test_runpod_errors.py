"""Every row of RunPod's error table becomes the typed error callers branch on (notes §1.4, §9.1)."""

from __future__ import annotations

import httpx
import pytest
from runpod_fakes import API_KEY, ClientFactory, problem

from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    RunPodAuthError,
    RunPodBadRequest,
    RunPodConflict,
    RunPodError,
    RunPodForbidden,
    RunPodNotFound,
    RunPodPaymentRequired,
    RunPodRateLimited,
    RunPodServerError,
    RunPodUnprocessable,
)
from runpod_api.errors import error_from_response

REQUEST = CreatePodRequest(
    name="rpvk-c1a2-7f3a9b21-0",
    image="nginx:1.27",
    gpu=CreateGpuConfig(id="NVIDIA A40"),
    env={"RPVK_OWNER": "c1a2/ns1/web"},
)

CAPACITY = "There are no longer any instances available with the requested specifications. Please refresh and try again."


@pytest.mark.parametrize(
    ("answer", "expected", "retryable"),
    [
        (problem(400, CAPACITY), RunPodBadRequest, True),
        (problem(400, "gpu and cpu are mutually exclusive"), RunPodBadRequest, False),
        (problem(401, "missing bearer token"), RunPodAuthError, False),
        (problem(402, "insufficient balance"), RunPodPaymentRequired, False),
        (problem(403, "account cannot access the requested pool"), RunPodForbidden, False),
        (problem(404, "template not found"), RunPodNotFound, False),
        (problem(409, "pod is locked"), RunPodConflict, False),
        (
            problem(422, "Request validation failed.", errors=["$.gpu.count: must be >= 1"]),
            RunPodUnprocessable,
            False,
        ),
        (problem(429, "rate limit exceeded for the minute window"), RunPodRateLimited, True),
        (problem(500, "internal error"), RunPodServerError, True),
        (
            httpx.Response(502, text="<html>Bad Gateway</html>", headers={"content-type": "text/html"}),
            RunPodServerError,
            True,
        ),
        (httpx.Response(503), RunPodServerError, True),
    ],
)
async def test_each_create_refusal_raises_the_documented_error_type(
    make_client: ClientFactory, answer: httpx.Response, expected: type[RunPodError], retryable: bool
) -> None:
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        return answer

    client = make_client(handler)
    with pytest.raises(expected) as caught:
        await client.create_pod(REQUEST)
    assert type(caught.value) is expected
    assert caught.value.status == answer.status_code
    assert caught.value.retryable is retryable
    assert posts == 1, "a create is never sent twice by create_pod"


def test_capacity_and_rule_violations_are_told_apart() -> None:
    capacity = error_from_response(status=400, headers={}, body=problem(400, CAPACITY).text)
    rule = error_from_response(status=400, headers={}, body=problem(400, "both mounts given").text)
    assert isinstance(capacity, RunPodBadRequest) and capacity.is_capacity
    assert isinstance(rule, RunPodBadRequest) and not rule.is_capacity
    assert "no longer any instances" in capacity.detail


def test_unprocessable_lists_each_violation_whether_strings_or_objects() -> None:
    body = problem(
        422,
        "Request validation failed.",
        errors=[
            "$: additional properties 'gpuCount' not allowed",
            {"message": "must be >= 1", "location": "$.disk"},
        ],
    ).text
    error = error_from_response(status=422, headers={"content-type": "application/problem+json"}, body=body)
    assert isinstance(error, RunPodUnprocessable)
    assert error.errors == ["$: additional properties 'gpuCount' not allowed", "$.disk: must be >= 1"]
    assert "gpuCount" in str(error)


def test_rate_limited_waits_for_the_longest_exhausted_window() -> None:
    headers = {
        "retry-after": "12",
        "ratelimit": '"minute";r=12;t=44, "hour";r=0;t=1724, "day";r=31839;t=23324',
    }
    error = error_from_response(status=429, headers=headers, body=problem(429, "hour window").text)
    assert isinstance(error, RunPodRateLimited)
    assert error.retry_after == 1724


def test_rate_limited_without_headers_still_waits_a_little() -> None:
    error = error_from_response(status=429, headers={}, body="")
    assert isinstance(error, RunPodRateLimited)
    assert error.retry_after >= 1


def test_cloudflare_block_is_a_forbidden_that_names_the_user_agent() -> None:
    error = error_from_response(status=403, headers={"content-type": "text/plain"}, body="error code: 1010")
    assert isinstance(error, RunPodForbidden)
    assert error.is_cloudflare
    assert "User-Agent" in str(error)
    plain = error_from_response(status=403, headers={}, body=problem(403, "access denied").text)
    assert isinstance(plain, RunPodForbidden) and not plain.is_cloudflare


def test_live_404_body_and_unknown_statuses_are_read_leniently() -> None:
    live = error_from_response(
        status=404, headers={}, body='{"detail":"pod not found","status":404,"title":"Not Found"}'
    )
    assert isinstance(live, RunPodNotFound) and live.detail == "pod not found"
    odd = error_from_response(status=405, headers={"allow": "GET, POST"}, body="")
    assert type(odd) is RunPodError and odd.status == 405 and not odd.retryable


def test_error_detail_never_carries_the_api_key_or_a_bearer_token() -> None:
    body = problem(401, f"invalid token {API_KEY} (Authorization: Bearer {API_KEY})").text
    error = error_from_response(status=401, headers={}, body=body, secrets=(API_KEY,))
    assert API_KEY not in str(error)
    assert API_KEY not in error.detail
    assert "invalid token" in error.detail


def test_long_bodies_are_truncated_in_the_detail() -> None:
    error = error_from_response(status=500, headers={"content-type": "text/plain"}, body="x" * 10_000)
    assert len(error.detail) <= 300
