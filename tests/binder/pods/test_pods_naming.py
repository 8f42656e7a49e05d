"""Ownership markers and names: what lets the binder find its own RunPod pods and nothing else."""

from __future__ import annotations

from binder.pods.naming import (
    attempt_of,
    owned_by_cluster,
    owned_by_pod,
    owner_markers,
    owner_of,
    runpod_pod_name,
)

UID = "7f3a9b21-1111-2222-3333-444455556666"


def test_names_are_deterministic_per_attempt_and_differ_between_attempts() -> None:
    first = runpod_pod_name(cluster_id="c1", uid=UID, attempt=0)
    assert first == runpod_pod_name(cluster_id="c1", uid=UID, attempt=0)
    assert first != runpod_pod_name(cluster_id="c1", uid=UID, attempt=1)
    assert first != runpod_pod_name(cluster_id="c2", uid=UID, attempt=0)
    assert first.startswith("rpvk-") and first.endswith("-7f3a9b21-0")


def test_attempt_is_read_back_from_our_names_only() -> None:
    assert attempt_of(runpod_pod_name(cluster_id="c1", uid=UID, attempt=12)) == 12
    assert attempt_of("my-console-pod") is None
    assert attempt_of("rpvk-abc") is None


def test_markers_round_trip_including_cluster_ids_with_slashes() -> None:
    env = owner_markers(cluster_id="org/prod", namespace="ns1", name="web", uid=UID, attempt=3)
    owner = owner_of(env)
    assert owner is not None
    assert (owner.cluster_id, owner.namespace, owner.name, owner.uid, owner.attempt) == (
        "org/prod",
        "ns1",
        "web",
        UID,
        3,
    )


def test_pods_without_a_full_marker_belong_to_nobody() -> None:
    assert owner_of(None) is None
    assert owner_of({"RPVK_OWNER": "c1/ns/web"}) is None
    assert owner_of({"RPVK_POD_UID": UID}) is None
    assert owner_of({"RPVK_OWNER": "broken", "RPVK_POD_UID": UID}) is None


def test_another_clusters_pod_is_never_ours() -> None:
    env = owner_markers(cluster_id="other", namespace="ns1", name="web", uid=UID, attempt=0)
    assert owned_by_cluster(env, "c1") is None
    assert not owned_by_pod(env, cluster_id="c1", uid=UID)


def test_a_pod_is_owned_only_with_this_cluster_and_this_uid() -> None:
    env = owner_markers(cluster_id="c1", namespace="ns1", name="web", uid=UID, attempt=0)
    assert owned_by_pod(env, cluster_id="c1", uid=UID)
    assert not owned_by_pod(env, cluster_id="c1", uid="another-uid")
