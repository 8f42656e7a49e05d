"""The client paces itself under RunPod's quota headers instead of running into 429s (notes §8)."""

from __future__ import annotations

import asyncio
import itertools
import math

import httpx
import pytest
from prometheus_client import CollectorRegistry
from runpod_fakes import ClientFactory, FakeClock, pod_json

from runpod_api import CreateGpuConfig, CreatePodRequest
from runpod_api.ratelimit import RESET_MARGIN, RateLimitState, pacing_delay, parse_structured_list

POLICY = '"minute";q=60;w=60, "hour";q=3000;w=3600, "day";q=50000;w=86400'


def state_from(headers: dict[str, str], *, now: float = 0.0) -> RateLimitState:
    state = RateLimitState()
    state.observe(headers, now=now)
    return state


def test_structured_header_lists_are_parsed_leniently() -> None:
    parsed = parse_structured_list('"minute";r=0;t=12, hour;r=2800;t=1812, "day";r=x;t=5, ,;junk')
    assert parsed == {"minute": {"r": 0, "t": 12}, "hour": {"r": 2800, "t": 1812}, "day": {"t": 5}}


def test_no_rate_limit_headers_means_no_waiting() -> None:
    state = state_from({})
    state.reserve(now=0.0)
    assert pacing_delay(state, now=0.0) == 0.0


def test_plenty_remaining_means_no_waiting() -> None:
    state = state_from({"ratelimit-policy": POLICY, "ratelimit": '"minute";r=50;t=40, "hour";r=2800;t=1812'})
    state.reserve(now=0.0)
    assert pacing_delay(state, now=0.0) == 0.0


def test_an_exhausted_window_blocks_until_its_reset() -> None:
    state = state_from({"ratelimit-policy": POLICY, "ratelimit": '"minute";r=0;t=12, "hour";r=2800;t=1812'})
    assert pacing_delay(state, now=0.0) == pytest.approx(12 + RESET_MARGIN)
    assert pacing_delay(state, now=5.0) == pytest.approx(7 + RESET_MARGIN)
    assert pacing_delay(state, now=14.0) == 0.0


def test_the_longest_exhausted_window_wins() -> None:
    state = state_from({"ratelimit": '"minute";r=12;t=44, "hour";r=0;t=1724, "day";r=31839;t=23324'})
    assert pacing_delay(state, now=0.0) == pytest.approx(1724 + RESET_MARGIN)


def test_a_low_window_spreads_its_remaining_requests_over_the_time_to_reset() -> None:
    # 10 of 60 left, 20 s to reset (trusted 1 s late): one request every 2.1 s, all before it.
    state = state_from({"ratelimit-policy": POLICY, "ratelimit": '"minute";r=10;t=20'})
    state.reserve(now=0.0)
    first = pacing_delay(state, now=0.0)
    assert first == pytest.approx((20 + RESET_MARGIN) / 10)
    sent = [0.0]
    now = 0.0
    for _ in range(9):
        now += pacing_delay(state, now=now)
        state.reserve(now=now)
        sent.append(now)
    assert sent[-1] == pytest.approx((20 + RESET_MARGIN) * 0.9), "all ten inside the window"
    assert state.remaining()["minute"] == 0
    assert pacing_delay(state, now=now) == pytest.approx((20 + RESET_MARGIN) * 0.1), "then the reset"
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert max(gaps) - min(gaps) < 1e-6, "evenly spaced"


def test_retry_after_blocks_every_request_even_without_window_headers() -> None:
    state = state_from({"retry-after": "9"}, now=100.0)
    assert pacing_delay(state, now=100.0) == 9.0
    assert pacing_delay(state, now=109.0) == 0.0


def test_requests_in_flight_are_not_counted_twice_but_not_forgotten() -> None:
    state = state_from({"ratelimit-policy": POLICY, "ratelimit": '"minute";r=30;t=50'})
    for _ in range(5):
        state.reserve(now=0.0)
    # The answer to the first of five reflects only that one; four are still on their way.
    state.observe({"ratelimit": '"minute";r=29;t=50'}, now=0.1, in_flight=4)
    assert state.remaining()["minute"] == 25


def test_a_window_starts_over_after_its_reset() -> None:
    state = state_from({"ratelimit-policy": POLICY, "ratelimit": '"minute";r=0;t=10'})
    state.reserve(now=20.0)
    assert state.remaining()["minute"] == 59
    assert pacing_delay(state, now=20.0) == 0.0


class QuotaServer:
    """RunPod's per-minute and per-hour counters on fixed windows of a fake clock."""

    def __init__(self, clock: FakeClock, *, per_minute: int, per_hour: int) -> None:
        self.clock = clock
        self.start = clock.now
        self.per_minute, self.per_hour = per_minute, per_hour
        self.counts: dict[tuple[str, int], int] = {}
        self.created = 0
        self.rejected = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        elapsed = self.clock.now - self.start
        windows = {"minute": (60, self.per_minute), "hour": (3600, self.per_hour)}
        state = []
        exhausted = False
        for name, (length, quota) in windows.items():
            index = int(elapsed // length)
            used = self.counts.get((name, index), 0)
            exhausted = exhausted or used >= quota
            reset = math.floor((index + 1) * length - elapsed)  # whole seconds, rounded down
            state.append((name, index, quota, used, reset))
        headers = {
            "RateLimit-Policy": f'"minute";q={self.per_minute};w=60, "hour";q={self.per_hour};w=3600',
        }
        if exhausted:
            self.rejected += 1
            headers["RateLimit"] = ", ".join(f'"{n}";r={max(0, q - u)};t={t}' for n, _, q, u, t in state)
            return httpx.Response(
                429, headers=headers, json={"title": "Too Many Requests", "status": 429, "detail": "x"}
            )
        for name, index, *_ in state:
            self.counts[(name, index)] = self.counts.get((name, index), 0) + 1
        headers["RateLimit"] = ", ".join(f'"{n}";r={q - u - 1};t={t}' for n, _, q, u, t in state)
        self.created += 1
        return httpx.Response(
            201, headers=headers, json=pod_json(f"pod{self.created}", status="PROVISIONING")
        )


async def test_a_burst_of_a_thousand_creates_goes_out_at_the_allowed_rate_without_429s(
    make_client: ClientFactory, clock: FakeClock, registry: CollectorRegistry
) -> None:
    server = QuotaServer(clock, per_minute=60, per_hour=3000)
    client = make_client(server.handler)

    async def create(n: int) -> str:
        request = CreatePodRequest(
            name=f"rpvk-burst-{n}", image="busybox", gpu=CreateGpuConfig(id="NVIDIA A40")
        )
        return (await client.create_pod(request)).id

    ids = await asyncio.gather(*(create(n) for n in range(1000)))

    assert len(set(ids)) == 1000
    assert server.rejected == 0, "no 429 storm"
    elapsed = clock.now - 1000.0
    # 60 per minute: the 1000th create cannot go before minute 16, and pacing wastes < 2 minutes.
    assert 16 * 60 <= elapsed <= 18 * 60
    waited = registry.get_sample_value("runpod_api_pacing_wait_seconds_total")
    assert waited is not None and waited > 15 * 60
    remaining = registry.get_sample_value("runpod_api_ratelimit_remaining", {"window": "hour"})
    assert remaining == 2000


async def test_before_the_first_answer_a_cold_burst_sends_one_request_at_a_time(
    make_client: ClientFactory,
) -> None:
    in_flight = peak = 0
    first_answered = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if not first_answered.is_set():
            await asyncio.sleep(0.01)
            first_answered.set()
        in_flight -= 1
        return httpx.Response(200, json={"pods": []}, headers={"RateLimit": '"minute";r=2;t=60'})

    client = make_client(handler)
    results = await asyncio.gather(*(client.list_pods() for _ in range(5)))
    assert peak == 1
    assert results == [[]] * 5
