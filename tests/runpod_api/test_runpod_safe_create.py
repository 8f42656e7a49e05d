"""The safe create: an ambiguous answer is settled by looking the pod up, never by a blind re-POST."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from runpod_fakes import ClientFactory, FakeClock, pod_json, problem

from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    RunPodPaymentRequired,
    RunPodServerError,
    RunPodTimeout,
)

MARKER = "RPVK_POD_UID"
UID = "7f3a9b21-1111-2222-3333-444455556666"
REQUEST = CreatePodRequest(
    name="rpvk-c1a2-7f3a9b21-0",
    image="busybox",
    gpu=CreateGpuConfig(id="NVIDIA A40"),
    env={MARKER: UID, "RPVK_OWNER": "c1a2/ns1/job"},
)


class Account:
    """A RunPod account's pod list, with scripted answers to the create."""

    def __init__(self, create_answers: list[str], *, visible_after_lists: int = 0) -> None:
        self.create_answers = create_answers
        self.visible_after_lists = visible_after_lists
        self.pods: list[dict[str, Any]] = [
            pod_json("foreign1", name=REQUEST.name, env={"SOMEONE": "else"}),  # same name, no marker
            pod_json("other1", name="rpvk-c1a2-other-0", env={MARKER: "other-uid"}),
        ]
        self.posts = self.lists = 0
        self.deleted: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v2/pods":
            self.posts += 1
            kind = self.create_answers.pop(0)
            if kind in ("created", "created-then-500", "created-then-timeout"):
                self.pods.append(
                    pod_json(f"new{self.posts}", name=REQUEST.name, env=REQUEST.env, status="PROVISIONING")
                )
            if kind == "created":
                return httpx.Response(201, json=self.pods[-1])
            if kind == "created-then-timeout":
                raise httpx.ReadTimeout("no answer")
            if kind == "402":
                return problem(402, "insufficient balance")
            return problem(500, "internal error")
        if request.method == "GET" and request.url.path == "/v2/pods":
            self.lists += 1
            if self.lists <= self.visible_after_lists:
                return httpx.Response(200, json={"pods": self.pods[:2]})
            return httpx.Response(200, json={"pods": self.pods})
        if request.method == "DELETE":
            pod_id = request.url.path.rsplit("/", 1)[1]
            self.deleted.append(pod_id)
            self.pods = [p for p in self.pods if p["id"] != pod_id]
            return httpx.Response(204)
        return problem(404, "The requested path was not found.")


@pytest.mark.parametrize("ambiguity", ["created-then-500", "created-then-timeout"])
async def test_an_ambiguous_create_adopts_the_pod_it_made_without_posting_again(
    make_client: ClientFactory, clock: FakeClock, ambiguity: str
) -> None:
    account = Account([ambiguity])
    pod = await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert pod.id == "new1"
    assert account.posts == 1
    assert clock.sleeps == [5.0], "looked up after the first reconcile delay"


async def test_a_late_visible_pod_is_still_found_before_any_second_post(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    account = Account(["created-then-500"], visible_after_lists=2)
    pod = await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert pod.id == "new1"
    assert (account.posts, account.lists) == (1, 3)
    assert clock.sleeps == [5.0, 10.0, 15.0]


async def test_when_no_pod_appeared_the_create_is_sent_once_more(make_client: ClientFactory) -> None:
    account = Account(["500", "created"])
    pod = await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert pod.id == "new2"
    assert account.posts == 2
    assert account.lists == 3


async def test_posts_are_bounded_when_every_create_is_ambiguous_and_nothing_appears(
    make_client: ClientFactory,
) -> None:
    account = Account(["500", "500", "500"])
    with pytest.raises(RunPodServerError):
        await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert account.posts == 2


async def test_if_the_pod_cannot_be_looked_up_the_ambiguity_is_raised_not_reposted(
    make_client: ClientFactory,
) -> None:
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "POST":
            posts += 1
            raise httpx.ReadTimeout("no answer")
        return problem(503, "list unavailable")

    with pytest.raises(RunPodTimeout):
        await make_client(handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert posts == 1


async def test_duplicates_found_after_an_ambiguous_create_are_reduced_to_the_oldest(
    make_client: ClientFactory,
) -> None:
    account = Account(["created-then-500"])
    account.pods.append(
        pod_json("older", name=REQUEST.name, env=REQUEST.env, createdAt="2026-01-01T00:00:00Z")
    )
    pod = await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert pod.id == "older"
    assert account.deleted == ["new1"]
    assert "foreign1" in [p["id"] for p in account.pods], "a pod without our marker is never touched"


async def test_definite_refusals_are_raised_without_a_lookup(make_client: ClientFactory) -> None:
    account = Account(["402"])
    with pytest.raises(RunPodPaymentRequired):
        await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value=UID)
    assert (account.posts, account.lists) == (1, 0)


async def test_a_request_without_the_marker_is_refused_before_spending_money(
    make_client: ClientFactory,
) -> None:
    account = Account(["created"])
    with pytest.raises(ValueError, match=MARKER):
        await make_client(account.handler).create_pod_safely(REQUEST, marker_env=MARKER, marker_value="wrong")
    assert account.posts == 0
