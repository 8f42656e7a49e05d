"""Which network volume a pod mounts on RunPod, and when it must wait. Pure."""

from __future__ import annotations

from typing import Any

from binder.volumes.mounts import NetworkMountPlan, plan_network_mount
from contract.volumes import DATACENTER_ANNOTATION, PROVISIONER, network_volume_of, size_gb


def _spec(*claims: str) -> dict[str, Any]:
    return {
        "volumes": [
            {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
        ]
        + [{"name": "scratch", "emptyDir": {}}],
        "containers": [
            {
                "name": "main",
                "volumeMounts": [{"name": f"v{i}", "mountPath": f"/m{i}"} for i in range(len(claims))],
            }
        ],
    }


def _claim(pv: str | None) -> dict[str, Any]:
    return {"spec": {"volumeName": pv} if pv else {}, "status": {"phase": "Bound" if pv else "Pending"}}


def _pv(volume_id: str, dc: str | None = "EU-RO-1", driver: str = PROVISIONER) -> dict[str, Any]:
    annotations = {DATACENTER_ANNOTATION: dc} if dc else {}
    return {
        "metadata": {"name": f"pv-{volume_id}", "annotations": annotations},
        "spec": {"csi": {"driver": driver, "volumeHandle": volume_id}},
    }


def _plan(
    spec: dict[str, Any], claims: dict[str, Any], pvs: dict[str, Any]
) -> tuple[NetworkMountPlan | None, str | None]:
    return plan_network_mount(spec=spec, container=spec["containers"][0], claims=claims, volumes=pvs)


def test_a_bound_claim_of_ours_mounts_at_the_containers_path() -> None:
    mount, why = _plan(_spec("data"), {"data": _claim("pv-vol1")}, {"pv-vol1": _pv("vol1")})
    assert why is None and mount == NetworkMountPlan("vol1", "EU-RO-1", "/m0", "data")


def test_missing_unbound_and_unlocated_claims_wait_with_the_reason() -> None:
    assert _plan(_spec("data"), {"data": None}, {})[1] == 'persistentvolumeclaim "data" not found'
    assert "not bound yet" in str(_plan(_spec("data"), {"data": _claim(None)}, {})[1])
    unlocated = _plan(_spec("data"), {"data": _claim("pv-vol1")}, {"pv-vol1": _pv("vol1", dc=None)})
    assert "data center" in str(unlocated[1])


def test_other_storage_is_not_mounted_and_two_network_volumes_are_refused() -> None:
    other = _plan(_spec("data"), {"data": _claim("pv-x")}, {"pv-x": _pv("x", driver="ebs.csi.aws.com")})
    assert other == (None, None)
    claims = {"a": _claim("pv-v1"), "b": _claim("pv-v2")}
    two = _plan(_spec("a", "b"), claims, {"pv-v1": _pv("v1"), "pv-v2": _pv("v2")})
    assert two[0] is None and "at most one network volume" in str(two[1])


def test_pv_reading_and_sizes() -> None:
    ref = network_volume_of(_pv("vol1"))
    assert ref is not None and (ref.volume_id, ref.datacenter_id) == ("vol1", "EU-RO-1")
    attr = {
        "spec": {
            "csi": {
                "driver": PROVISIONER,
                "volumeHandle": "v",
                "volumeAttributes": {"dataCenterId": "US-KS-2"},
            }
        }
    }
    assert network_volume_of(attr) is not None and network_volume_of(attr).datacenter_id == "US-KS-2"  # type: ignore[union-attr]
    assert network_volume_of({"spec": {"hostPath": {"path": "/x"}}}) is None
    assert (size_gb("1Gi"), size_gb("20Gi"), size_gb("20G"), size_gb("bad")) == (10, 22, 20, None)
