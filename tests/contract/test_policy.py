"""Which pods are aimed at the virtual node, and how comma lists are read."""

from __future__ import annotations

import pytest

from contract.policy import TAINT_KEY, NodePolicy, parse_id_list, pod_targets_node


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"tolerations": [{"key": TAINT_KEY, "operator": "Exists"}]}, True),
        ({"nodeSelector": {"type": "virtual-kubelet"}}, True),
        ({"nodeSelector": {"kubernetes.io/hostname": "virtual-runpod"}}, True),
        ({"nodeName": "virtual-runpod"}, True),
        ({"nodeName": "worker-1"}, False),
        ({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}, False),
        ({}, False),
    ],
)
def test_only_pods_aimed_at_the_node_are_in_scope(spec: dict[str, object], expected: bool) -> None:
    assert pod_targets_node({"spec": spec}) is expected


def test_id_lists_are_trimmed_deduplicated_and_ordered() -> None:
    assert parse_id_list(" EU-RO-1, US-KS-2,,EU-RO-1 ") == ("EU-RO-1", "US-KS-2")
    assert parse_id_list(None) == ()


def test_no_node_restriction_allows_every_datacenter() -> None:
    assert NodePolicy().allows_datacenter("AP-JP-1")
    assert not NodePolicy(allowed_datacenter_ids=("EU-RO-1",)).allows_datacenter("AP-JP-1")
