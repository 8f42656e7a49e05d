"""Fixtures for the RunPod client's unit tests: a fake clock, private metrics, a client factory.

Every client here talks to an `httpx.MockTransport` handler (no network) and sleeps on a fake
clock, so backoff and pacing run in microseconds while their decisions stay observable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from runpod_fakes import API_KEY, ClientFactory, FakeClock

from runpod_api import RetryPolicy, RunPodClient, RunPodMetrics


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_client(clock: FakeClock, registry: CollectorRegistry) -> AsyncIterator[ClientFactory]:
    clients: list[RunPodClient] = []
    metrics = RunPodMetrics(registry)

    def factory(handler: Callable[[httpx.Request], Any], **overrides: Any) -> RunPodClient:
        retry = overrides.pop("retry", RetryPolicy(reconcile_delays=(5.0, 10.0, 15.0)))
        client = RunPodClient(
            api_key=overrides.pop("api_key", API_KEY),
            base_url="https://api.runpod.test",
            transport=httpx.MockTransport(handler),
            retry=retry,
            metrics=metrics,
            clock=clock,
            sleep=clock.sleep,
            random=lambda: 0.5,
            **overrides,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
