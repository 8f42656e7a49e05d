"""The network-volume provisioner's decisions: placement, the PV it makes, names. Pure."""

from __future__ import annotations

from typing import Any

from binder.volumes.provisioning import build_pv, choose_datacenter, pv_name, volume_name
from contract.catalog import build_catalog
from contract.policy import NodePolicy
from contract.volumes import DATACENTER_ANNOTATION, FINALIZER, PROVISIONER, network_volume_of

POLICY = NodePolicy(allowed_datacenter_ids=("EU-RO-1", "US-KS-2"), max_gpu_price=2.0)
CLASS: dict[str, Any] = {
    "metadata": {"name": "runpod-network-volume"},
    "provisioner": PROVISIONER,
    "reclaimPolicy": "Delete",
}


def _claim(size: str = "20Gi", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "ckpt", "namespace": "ml", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def test_placement_is_fixed_by_the_claim_or_class_else_the_best_allowed_offering() -> None:
    fixed = choose_datacenter(
        _claim(annotations={"runpod.io/datacenter-id": "US-KS-2"}),
        CLASS,
        policy=POLICY,
        offering=None,
        catalog=None,
    )
    assert (fixed.datacenter_id, fixed.size_gb, fixed.problem) == ("US-KS-2", 22, None)
    by_class = choose_datacenter(
        _claim(),
        {**CLASS, "parameters": {"dataCenterId": "EU-RO-1"}},
        policy=POLICY,
        offering=None,
        catalog=None,
    )
    assert by_class.datacenter_id == "EU-RO-1"
    outside = choose_datacenter(
        _claim(annotations={"runpod.io/datacenter-id": "AP-JP-1"}),
        CLASS,
        policy=POLICY,
        offering=None,
        catalog=None,
    )
    assert outside.problem is not None and "not allowed" in outside.problem
    needs = choose_datacenter(_claim(), CLASS, policy=POLICY, offering=None, catalog=None)
    assert needs.datacenter_id is None and needs.problem is None
    stock = [{"id": "EU-RO-1", "availability": "LOW"}, {"id": "US-KS-2", "availability": "HIGH"}]
    gpus = {"gpus": [{"id": "NVIDIA A40", "memory": 48, "price": {"secure": 0.44}, "dataCenters": stock}]}
    catalog = build_catalog(gpus_by_cloud={"SECURE": gpus})
    offering = ["AP-JP-1", "EU-RO-1", "US-KS-2"]
    chosen = choose_datacenter(_claim(), CLASS, policy=POLICY, offering=offering, catalog=catalog)
    assert chosen.datacenter_id == "US-KS-2"  # allowed, offers volumes, the most GPU stock
    none = choose_datacenter(_claim(), CLASS, policy=POLICY, offering=["AP-JP-1"], catalog=None)
    assert none.problem is not None and "offers network volumes" in none.problem
    assert (
        choose_datacenter(_claim("5T"), CLASS, policy=POLICY, offering=None, catalog=None).problem is not None
    )
    bad = choose_datacenter(
        _claim(), {**CLASS, "parameters": {"zone": "x"}}, policy=POLICY, offering=None, catalog=None
    )
    assert bad.problem is not None and "zone" in bad.problem


def test_the_pv_is_pre_bound_to_the_claim_and_records_the_volume() -> None:
    pv = build_pv(
        claim=_claim(),
        storage_class=CLASS,
        volume_id="vol1",
        datacenter_id="US-KS-2",
        size=22,
        node_name="virtual-runpod",
    )
    assert pv["metadata"]["name"] == pv_name("u-1") == "pvc-u-1"
    assert pv["metadata"]["annotations"][DATACENTER_ANNOTATION] == "US-KS-2"
    assert pv["metadata"]["finalizers"] == [FINALIZER]
    spec = pv["spec"]
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ml",
        "name": "ckpt",
        "uid": "u-1",
    }
    assert spec["capacity"] == {"storage": "22G"} and spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["accessModes"] == ["ReadWriteOnce"] and spec["storageClassName"] == "runpod-network-volume"
    terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["virtual-runpod"]
    ref = network_volume_of(pv)
    assert ref is not None and (ref.volume_id, ref.datacenter_id) == ("vol1", "US-KS-2")
    assert volume_name("c1", "u-1") == volume_name("c1", "u-1") != volume_name("c2", "u-1")
