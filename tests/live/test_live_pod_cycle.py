"""The one test that rents a GPU: create -> RUNNING -> logs -> DELETE, bounded in time and money.

It does what the binder does for a Job's pod, with the binder's own pieces: the deterministic
name and owner-marker env (`binder.pods.naming`), the ambiguity-safe create
(`create_pod_safely`), the completion wrapper around the command (`binder.pods.completion`),
and the look-up by name + marker (`find_created_pods`). So a pass means RunPod still behaves the
way the binder relies on: it places the cheapest in-stock SECURE GPU under the cap, echoes the
marker env verbatim, runs `args` through the image's shell so the wrapper's exit marker
reaches the v2 log stream, and forgets the pod on DELETE.

Money: one pod of one GPU at most `RUNPOD_LIVE_MAX_PRICE` (default $0.50) per hour, disk 10 GB,
alive at most RUNNING_TIMEOUT_S + LOGS_TIMEOUT_S + DELETE_TIMEOUT_S (~15 min, <= $0.13 at the
default cap). The `finally` deletes every pod carrying this run's marker and nothing else; the
session's closing sweep repeats that should this test be interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from live_support import (
    DELETE_TIMEOUT_S,
    DISK_GB,
    EXIT_CODE,
    IMAGE,
    LOGS_TIMEOUT_S,
    MAX_CANDIDATES,
    POLL_INTERVAL_S,
    RUNNING_TIMEOUT_S,
    GpuChoice,
    LiveSettings,
    RunMarker,
    choose_gpus,
    sweep,
)

from binder.pods.completion import parse_exit_marker, runpod_args
from binder.pods.naming import POD_UID_ENV
from contract.catalog import build_catalog
from runpod_api import (
    CreateGpuConfig,
    CreatePodRequest,
    Pod,
    RunPodBadRequest,
    RunPodClient,
    RunPodForbidden,
    find_created_pods,
)

pytestmark = pytest.mark.live

_BUDGET_S = RUNNING_TIMEOUT_S + LOGS_TIMEOUT_S + DELETE_TIMEOUT_S
_GREETING = "rpvk-live says hello"


@contextlib.asynccontextmanager
async def _within(seconds: float, what: str) -> AsyncIterator[None]:
    """A deadline that names the step that missed it (a bare TimeoutError says nothing)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"{what} took longer than {seconds:.0f} s") from None


async def _create_first_that_places(
    runpod: RunPodClient, marker: RunMarker, choices: list[GpuChoice]
) -> tuple[Pod, GpuChoice, CreatePodRequest]:
    """Walk the candidates like the binder: 400 (no capacity) or 403 (pool) -> next one."""
    container = {"command": ["sh", "-c", f"echo '{_GREETING}'; exit {EXIT_CODE}"]}
    refusals: list[str] = []
    for attempt, choice in enumerate(choices[:MAX_CANDIDATES]):
        request = CreatePodRequest(
            name=marker.name(attempt),
            image=IMAGE,
            gpu=CreateGpuConfig(id=choice.gpu_id, count=1),
            cloud="SECURE",
            data_center_ids=list(choice.datacenters),
            disk=DISK_GB,
            ports=[],
            env=marker.env(attempt),
            args=runpod_args(restart_policy="Never", container=container, uid=marker.uid),
        )
        try:
            pod = await runpod.create_pod_safely(request, marker_env=POD_UID_ENV, marker_value=marker.uid)
        except (RunPodBadRequest, RunPodForbidden) as exc:
            refusals.append(f"{choice.gpu_id}: {exc}")
            continue
        return pod, choice, request
    pytest.fail("no candidate GPU could be placed: " + "; ".join(refusals), pytrace=False)


async def _wait_running(runpod: RunPodClient, pod_id: str) -> Pod:
    seen: list[str] = []
    while True:
        pod = await runpod.get_pod(pod_id)
        if not seen or seen[-1] != pod.status:
            seen.append(pod.status)
        if pod.status == "RUNNING":
            return pod
        assert pod.status in ("PROVISIONING", "STARTING"), f"pod went {' -> '.join(seen)}"
        await asyncio.sleep(POLL_INTERVAL_S)


async def _read_until_exit_marker(runpod: RunPodClient, pod_id: str, uid: str) -> tuple[list[str], int]:
    lines: list[str] = []
    stream = runpod.stream_logs(pod_id, tail=100, source="container")
    async with contextlib.aclosing(stream):
        async for event in stream:
            lines.append(event.line)
            code = parse_exit_marker(event.line, uid=uid)
            if code is not None:
                return lines, code
    raise AssertionError("the log stream ended")  # it never ends by itself (client contract)


async def _wait_gone_from_list(runpod: RunPodClient, pod_id: str) -> None:
    while True:
        if pod_id not in {p.id for p in await runpod.list_pods()}:
            return
        await asyncio.sleep(POLL_INTERVAL_S)


@pytest.mark.timeout(_BUDGET_S + 120)
async def test_a_gpu_pod_is_created_runs_logs_its_exit_code_and_is_deleted(
    runpod: RunPodClient, live: LiveSettings, marker: RunMarker
) -> None:
    secure = await runpod.gpu_catalog(cloud="SECURE")
    catalog = build_catalog(gpus_by_cloud={"SECURE": secure})
    choices = choose_gpus(catalog, cloud="SECURE", max_price=live.max_price)
    if not choices:
        pytest.fail(
            f"no SECURE GPU in stock at <= ${live.max_price:.2f}/GPU-hour; "
            "raise RUNPOD_LIVE_MAX_PRICE or try later",
            pytrace=False,
        )
    started = time.monotonic()
    try:
        async with _within(RUNNING_TIMEOUT_S, "placing the pod and reaching RUNNING"):
            created, choice, request = await _create_first_that_places(runpod, marker, choices)
            assert created.cost <= live.max_price + 1e-9, f"RunPod charges ${created.cost}/h, over the cap"
            running = await _wait_running(runpod, created.id)
        assert running.name == request.name
        assert running.gpu is not None and (running.gpu.id, running.gpu.count) == (choice.gpu_id, 1)
        assert running.cloud == "SECURE" and running.data_center_id in choice.datacenters
        assert 0 < running.cost <= live.max_price + 1e-9
        assert {k: running.env.get(k) for k in request.env or {}} == request.env, "marker env not echoed"
        assert running.started_at is not None
        # What the binder does after an ambiguous create or a crash: find the pod by name + marker.
        found = find_created_pods(
            await runpod.list_pods(), name=request.name, marker_env=POD_UID_ENV, marker_value=marker.uid
        )
        assert [p.id for p in found] == [created.id]

        async with _within(LOGS_TIMEOUT_S, "the exit marker reaching the log stream"):
            lines, code = await _read_until_exit_marker(runpod, created.id, marker.uid)
        assert _GREETING in lines, f"the workload's output is missing from the log stream: {lines[-10:]}"
        assert code == EXIT_CODE

        assert await runpod.delete_pod(created.id) is True
        async with _within(DELETE_TIMEOUT_S, "the deleted pod leaving the list"):
            await _wait_gone_from_list(runpod, created.id)
    finally:
        # Bounded too: a cleanup that hangs would keep the GPU billing; the session sweep retries.
        async with _within(DELETE_TIMEOUT_S, "the cleanup sweep"):
            await sweep(runpod, marker)
    assert time.monotonic() - started < _BUDGET_S
