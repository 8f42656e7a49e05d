"""Why RunPod says ERROR: the system log's last lines become a kubelet's reason (read once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest

from binder.pods.diagnosing import Diagnosis, ReadTimings, diagnose_error, read_system_tail
from runpod_api.errors import RunPodNotFound

PULL = "error pulling image ghcr.io/acme/private:1: pull access denied or repository not found"
QUICK = ReadTimings(first_line=0.2, idle_gap=0.05, total=1.0)


def test_an_image_pull_line_is_err_image_pull_with_the_line_as_a_kubelet_says_it() -> None:
    lines = ["pod scheduled on a NVIDIA A40 host in EU-RO-1", "pulling image ghcr.io/acme/private:1", PULL]
    assert diagnose_error(lines, image="ghcr.io/acme/private:1") == Diagnosis(
        reason="ErrImagePull",
        message=f"RunPod: {PULL}",
        event_reason="Failed",
        event_message=f'Failed to pull image "ghcr.io/acme/private:1": {PULL} (RunPod system log)',
    )


@pytest.mark.parametrize(
    "line",
    [
        "Error response from daemon: pull access denied for acme/x, repository does not exist",
        "failed to pull and unpack image docker.io/acme/x:9: manifest unknown",
        "ImagePullBackOff: back-off pulling image",
    ],
)
def test_pull_failures_in_other_words_are_recognised(line: str) -> None:
    diagnosis = diagnose_error([line], image="x")
    assert diagnosis is not None and diagnosis.image_pull


def test_a_pull_in_progress_followed_by_a_crash_is_a_provider_error_quoting_the_last_line() -> None:
    lines = [
        "pulling image nvidia/cuda:12",
        "container started",
        "container crashed: unrecoverable error on host",
    ]
    diagnosis = diagnose_error(lines, image="nvidia/cuda:12")
    assert diagnosis is not None and not diagnosis.image_pull
    assert diagnosis.reason == diagnosis.event_reason == "ProviderError"
    assert diagnosis.message == (
        "RunPod reports the pod ERROR; its last system log line: container crashed: unrecoverable error on host"
    )


def test_no_lines_means_no_diagnosis_and_long_lines_are_cut() -> None:
    assert diagnose_error([], image="x") is None
    assert diagnose_error(["  ", ""], image="x") is None
    diagnosis = diagnose_error(["error pulling image " + "x" * 5000], image="x")
    assert diagnosis is not None and len(diagnosis.message) < 500


class _Source:
    """A stand-in for RunPodClient.stream_logs: yields `lines`, then stays silent (as RunPod does)."""

    def __init__(self, lines: list[str], *, error: Exception | None = None) -> None:
        self.lines, self.error = lines, error
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def stream_logs(
        self, pod_id: str, *, tail: int | None = None, source: str | None = None
    ) -> AsyncGenerator[Any, None]:
        self.calls.append({"pod_id": pod_id, "tail": tail, "source": source})
        return self._events()

    async def _events(self) -> AsyncGenerator[Any, None]:
        try:
            if self.error is not None:
                raise self.error
            for line in self.lines:
                yield SimpleNamespace(source="system", line=line)
            await asyncio.Future()  # the stream never ends by itself
        finally:
            self.closed = True


async def test_one_request_for_the_system_tail_closed_after_the_backfill() -> None:
    source = _Source(["pulling image x", PULL])
    assert await read_system_tail(source, "rp1", timings=QUICK) == ["pulling image x", PULL]
    assert source.calls == [{"pod_id": "rp1", "tail": 20, "source": "system"}]
    assert source.closed


async def test_a_silent_stream_gives_no_lines_after_the_first_line_wait() -> None:
    source = _Source([])
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await read_system_tail(source, "rp1", timings=QUICK) == []
    assert loop.time() - started < 0.5
    assert source.closed


async def test_a_log_request_refused_by_runpod_gives_no_lines_and_does_not_raise() -> None:
    source = _Source([], error=RunPodNotFound("pod not found", status=404))
    assert await read_system_tail(source, "rp1", timings=QUICK) == []
