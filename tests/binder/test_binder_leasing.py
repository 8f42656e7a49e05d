"""The node heartbeat Lease: renewed only after a clean status push; its Kubernetes shape."""

from __future__ import annotations

from datetime import UTC, datetime

from binder.leasing import build_node_lease, lease_may_renew


def test_no_renewal_before_the_first_clean_status_push() -> None:
    assert not lease_may_renew(last_clean_push=None, now=100.0, max_age=25.0)


def test_renewal_only_while_the_last_clean_push_is_recent() -> None:
    assert lease_may_renew(last_clean_push=90.0, now=100.0, max_age=25.0)
    assert not lease_may_renew(last_clean_push=70.0, now=100.0, max_age=25.0)


def test_node_lease_is_held_by_the_node_for_forty_seconds_and_owned_by_it() -> None:
    lease = build_node_lease(
        node_name="virtual-runpod", node_uid="uid-1", now=datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)
    )
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["name"] == "virtual-runpod"
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "virtual-runpod", "uid": "uid-1"}
    ]
    assert lease["spec"] == {
        "holderIdentity": "virtual-runpod",
        "leaseDurationSeconds": 40,
        "renewTime": "2026-01-02T03:04:05.678900Z",
    }
