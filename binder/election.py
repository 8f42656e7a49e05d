"""Leader election among binder replicas over a `coordination.k8s.io/v1` Lease.

Owns the leader Lease (`<namespace>/runpod-kubelet-binder-<node>`); the node heartbeat Lease is
`leasing`'s. Semantics are client-go's `leaderelection` (notes/kubernetes.md §15):

- GET the Lease. Absent -> CREATE it holding it. Held by another replica and its record changed
  less than `lease_duration` ago *as observed on our own clock* (client-go's observedTime, so
  clock skew between replicas does not matter) -> wait `retry_period`. Otherwise take over:
  `leaseTransitions` + 1, new `acquireTime`. An empty holder (released on clean shutdown) is
  taken at once.
- Every write carries the resourceVersion we read, so of two racing candidates one gets 409 and
  stays a follower.
- The leader renews every `retry_period`; if it cannot renew within `renew_deadline` (or sees
  another holder) `hold()` raises `LeadershipLost`, and the process stops its leader work.
- On clean shutdown the leader releases the Lease (empty holder, 1 s duration) so a standby
  takes over immediately instead of after `lease_duration`.

Pure decisions: `observe`, `decide`, `next_record`, `released_record`; `LeaderElector` does the
I/O.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NoReturn

from binder.leasing import format_micro_time
from kit.kube import Conflict, KubeError, NotFound, get_json, post_json, put_json

__all__ = [
    "Action",
    "LeaderElector",
    "LeaderRecord",
    "LeadershipLost",
    "Observation",
    "decide",
    "leader_lease_name",
    "next_record",
    "observe",
    "released_record",
]

log = logging.getLogger(__name__)

# client-go waits retry_period * (1 + rand * 1.2) between acquire attempts.
JITTER_FACTOR: Final = 1.2


def leader_lease_name(node_name: str) -> str:
    return f"runpod-kubelet-binder-{node_name}"


class LeadershipLost(Exception):
    """This replica is no longer (or cannot prove it is) the leader; stop all leader work."""


@dataclass(frozen=True)
class LeaderRecord:
    holder: str
    lease_duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaderRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


@dataclass(frozen=True)
class Observation:
    """The last record we saw and when (our monotonic clock) we first saw it."""

    record: LeaderRecord
    at: float


class Action(StrEnum):
    CREATE = "create"  # no Lease yet
    ACQUIRE = "acquire"  # expired or released: take over
    RENEW = "renew"  # we hold it
    WAIT = "wait"  # another replica holds a live lease


def observe(previous: Observation | None, record: LeaderRecord, now: float) -> Observation:
    """Any change to the record restarts the expiry clock (a renewal is a change of renewTime)."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record=record, at=now)


def decide(*, observation: Observation | None, identity: str, now: float, lease_duration: float) -> Action:
    if observation is None:
        return Action.CREATE
    record = observation.record
    if record.holder == identity:
        return Action.RENEW
    if record.holder and observation.at + lease_duration > now:
        return Action.WAIT
    return Action.ACQUIRE


def next_record(
    *, current: LeaderRecord | None, action: Action, identity: str, wall_now: datetime, lease_duration: float
) -> LeaderRecord:
    """The record we write for `action` (not WAIT)."""
    stamp = format_micro_time(wall_now)
    duration = max(1, round(lease_duration))
    if current is None or action is Action.CREATE:
        return LeaderRecord(identity, duration, acquire_time=stamp, renew_time=stamp, transitions=0)
    if action is Action.RENEW:
        return replace(current, holder=identity, lease_duration_seconds=duration, renew_time=stamp)
    return LeaderRecord(
        identity, duration, acquire_time=stamp, renew_time=stamp, transitions=current.transitions + 1
    )


def released_record(*, current: LeaderRecord, wall_now: datetime) -> LeaderRecord:
    """client-go's release: empty holder, 1 s duration, transitions kept."""
    stamp = format_micro_time(wall_now)
    return LeaderRecord("", 1, acquire_time=stamp, renew_time=stamp, transitions=current.transitions)


class LeaderElector:
    """Campaigns for, holds and releases the leader Lease. One instance per process.

    `acquire()` blocks until this replica leads; `hold()` renews until leadership is lost and
    then raises `LeadershipLost` (it never returns); `release()` gives the Lease up if held.
    `last_contact` (monotonic) is when the apiserver last answered us, for readiness.
    """

    def __init__(
        self,
        *,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._observation: Observation | None = None
        self._lease: dict[str, Any] | None = None  # as last read or written
        self.is_leader = False
        self._last_renewed = float("-inf")
        self.last_contact: float | None = None

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases"

    def leading(self) -> bool:
        """True only while our last successful renewal is younger than renew_deadline.

        Cheap, no I/O: callers about to spend money can check it, which also covers a process
        that was frozen (SIGSTOP, VM pause) and woke up after another replica took over, before
        `hold()` had a chance to notice.
        """
        return self.is_leader and self._monotonic() - self._last_renewed < self._renew_deadline

    @property
    def holder(self) -> str | None:
        return self._observation.record.holder if self._observation else None

    async def try_acquire_or_renew(self) -> bool:
        """One round of the algorithm. True = we hold the Lease now."""
        path = f"{self._collection}/{self._name}"
        lease: dict[str, Any] | None
        try:
            lease = await get_json(self._api, path)
        except NotFound:
            lease = None
        self.last_contact = self._monotonic()
        now = self._monotonic()
        self._lease = lease
        if lease is None:
            self._observation = None
        else:
            self._observation = observe(self._observation, LeaderRecord.from_lease(lease), now)
        action = decide(
            observation=self._observation,
            identity=self.identity,
            now=now,
            lease_duration=self._lease_duration,
        )
        if action is Action.WAIT:
            self.is_leader = False
            return False
        current = self._observation.record if self._observation else None
        record = next_record(
            current=current,
            action=action,
            identity=self.identity,
            wall_now=self._wall_clock(),
            lease_duration=self._lease_duration,
        )
        written = await self._write(record, create=action is Action.CREATE)
        if written is None:
            return False
        if action is not Action.RENEW:
            log.info(
                "became leader",
                extra={"lease": self._name, "identity": self.identity, "transitions": record.transitions},
            )
        self._observation = Observation(record=record, at=self._monotonic())
        self._lease = written
        self._last_renewed = self._monotonic()
        self.is_leader = True
        return True

    async def _write(self, record: LeaderRecord, *, create: bool) -> dict[str, Any] | None:
        """CREATE, or UPDATE carrying the resourceVersion we read. None = lost a race (409)."""
        try:
            if create:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self._name, "namespace": self._namespace},
                    "spec": record.to_spec(),
                }
                return await post_json(self._api, self._collection, body)
            if self._lease is None:
                return None
            # The object as read, new spec: the apiserver answers 409 if it changed meanwhile.
            body = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.to_spec()}}
            return await put_json(self._api, f"{self._collection}/{self._name}", body)
        except Conflict:
            log.debug("lost a leader-election race", extra={"lease": self._name})
            return None

    async def acquire(self) -> None:
        """Block until we lead. apiserver errors are logged and retried."""
        log.info("standing by for leadership", extra={"lease": self._name, "identity": self.identity})
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except KubeError as exc:
                log.warning(
                    "leader election attempt failed", extra={"status": exc.status, "reason": exc.reason}
                )
            except (OSError, TimeoutError) as exc:
                log.warning("leader election attempt failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self._retry_period * (1 + random.random() * JITTER_FACTOR))

    async def hold(self) -> NoReturn:
        """Renew every retry_period; raise LeadershipLost when renew_deadline passes without a
        successful renewal, or as soon as another replica is seen holding the Lease."""
        while True:
            await asyncio.sleep(self._retry_period)
            deadline = self._last_renewed + self._renew_deadline
            while True:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    self.is_leader = False
                    raise LeadershipLost(f"could not renew the leader lease within {self._renew_deadline:g}s")
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self.try_acquire_or_renew()
                except TimeoutError:
                    continue
                except KubeError as exc:
                    log.warning(
                        "leader lease renewal failed", extra={"status": exc.status, "reason": exc.reason}
                    )
                    renewed = False
                except OSError as exc:
                    log.warning("leader lease renewal failed", extra={"error": type(exc).__name__})
                    renewed = False
                if renewed:
                    break
                if self.holder and self.holder != self.identity:
                    self.is_leader = False
                    raise LeadershipLost(f"replica {self.holder!r} holds the leader lease")
                await asyncio.sleep(min(self._retry_period, max(0.0, deadline - self._monotonic())))

    async def release(self) -> None:
        """Give the Lease up if we hold it, so a standby takes over at once. Best effort."""
        if not self.is_leader or self._observation is None:
            return
        self.is_leader = False
        record = released_record(current=self._observation.record, wall_now=self._wall_clock())
        try:
            if await self._write(record, create=False) is not None:
                log.info("released leader lease", extra={"lease": self._name})
        except (KubeError, OSError) as exc:
            log.warning("could not release the leader lease", extra={"error": str(exc)})
