"""Readiness of a binder replica: connected, and leading or standing by."""

from __future__ import annotations

from binder.health import Role, readiness


def test_a_standby_replica_is_ready_to_take_over() -> None:
    assert readiness(role=Role.STANDBY, last_contact=95.0, now=100.0, stale_after=60.0) == (True, "standby")


def test_the_leader_is_ready() -> None:
    assert readiness(role=Role.LEADER, last_contact=95.0, now=100.0, stale_after=60.0)[0]


def test_not_ready_while_starting_stopping_or_cut_off_from_the_apiserver() -> None:
    assert not readiness(role=Role.STARTING, last_contact=95.0, now=100.0, stale_after=60.0)[0]
    assert not readiness(role=Role.STOPPING, last_contact=95.0, now=100.0, stale_after=60.0)[0]
    assert not readiness(role=Role.LEADER, last_contact=None, now=100.0, stale_after=60.0)[0]
    ready, reason = readiness(role=Role.LEADER, last_contact=10.0, now=100.0, stale_after=60.0)
    assert not ready
    assert "apiserver silent for 90s" in reason
