"""Leader-election decisions (client-go semantics), clock injected: no cluster, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime

from binder.election import (
    Action,
    LeaderRecord,
    Observation,
    decide,
    next_record,
    observe,
    released_record,
)

WALL = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
HELD_BY_B = LeaderRecord("b", 15, acquire_time="t0", renew_time="t1", transitions=2)


def test_no_lease_means_create_it() -> None:
    assert decide(observation=None, identity="a", now=0.0, lease_duration=15) is Action.CREATE


def test_a_live_lease_of_another_replica_is_respected() -> None:
    seen = observe(None, HELD_BY_B, now=100.0)
    assert decide(observation=seen, identity="a", now=114.9, lease_duration=15) is Action.WAIT


def test_a_lease_nobody_renewed_for_lease_duration_is_taken_over() -> None:
    seen = observe(None, HELD_BY_B, now=100.0)
    # Same record seen again: the expiry clock keeps running from the first sighting.
    seen = observe(seen, HELD_BY_B, now=110.0)
    assert decide(observation=seen, identity="a", now=115.0, lease_duration=15) is Action.ACQUIRE


def test_every_renewal_restarts_the_expiry_clock_on_our_own_clock() -> None:
    seen = observe(None, HELD_BY_B, now=100.0)
    renewed = LeaderRecord("b", 15, acquire_time="t0", renew_time="t2", transitions=2)
    seen = observe(seen, renewed, now=112.0)
    assert decide(observation=seen, identity="a", now=126.0, lease_duration=15) is Action.WAIT
    assert decide(observation=seen, identity="a", now=127.0, lease_duration=15) is Action.ACQUIRE


def test_a_released_lease_is_taken_at_once() -> None:
    released = released_record(current=HELD_BY_B, wall_now=WALL)
    assert released.holder == ""
    seen = observe(None, released, now=100.0)
    assert decide(observation=seen, identity="a", now=100.0, lease_duration=15) is Action.ACQUIRE


def test_our_own_lease_is_renewed() -> None:
    seen = Observation(record=LeaderRecord("a", 15), at=0.0)
    assert decide(observation=seen, identity="a", now=1000.0, lease_duration=15) is Action.RENEW


def test_taking_over_counts_a_transition_and_renewing_keeps_acquire_time() -> None:
    taken = next_record(
        current=HELD_BY_B, action=Action.ACQUIRE, identity="a", wall_now=WALL, lease_duration=15
    )
    assert taken.holder == "a"
    assert taken.transitions == 3
    assert taken.acquire_time == taken.renew_time == "2026-11-27T10:00:00.000000Z"
    later = datetime(2026, 11, 27, 10, 0, 2, tzinfo=UTC)
    renewed = next_record(current=taken, action=Action.RENEW, identity="a", wall_now=later, lease_duration=15)
    assert renewed.acquire_time == taken.acquire_time
    assert renewed.renew_time == "2026-11-27T10:00:02.000000Z"
    assert renewed.transitions == 3


def test_the_lease_spec_round_trips_through_the_kubernetes_shape() -> None:
    record = next_record(current=None, action=Action.CREATE, identity="a", wall_now=WALL, lease_duration=15)
    assert LeaderRecord.from_lease({"spec": record.to_spec()}) == record
