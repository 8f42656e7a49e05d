"""Network volumes and emptyDir at admission: the data-center pin, the refusals, the disk. Pure."""

from __future__ import annotations

from typing import Any

from webhook_samples import apply_patch, gpu_pod, review_bytes, sample_catalog

from contract.plan import plan_from_annotations
from contract.policy import NodePolicy
from contract.volumes import DATACENTER_ANNOTATION, PROVISIONER
from webhook.admission import mutate
from webhook.reviews import Verdict, parse_review
from webhook.volumes import VolumeLookups

CATALOG = sample_catalog()
POLICY = NodePolicy(
    allowed_datacenter_ids=("EU-RO-1", "US-KS-2", "EU-SE-1"), max_gpu_price=2.0, max_candidates=3
)


def _claim(pv: str | None, *, provisioner: str | None = PROVISIONER) -> dict[str, Any]:
    annotations = {"volume.kubernetes.io/storage-provisioner": provisioner} if provisioner else {}
    return {
        "metadata": {"annotations": annotations},
        "spec": {"volumeName": pv} if pv else {},
        "status": {"phase": "Bound" if pv else "Pending"},
    }


def _pv(volume_id: str, dc: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pv-{volume_id}", "annotations": {DATACENTER_ANNOTATION: dc} if dc else {}},
        "spec": {"csi": {"driver": PROVISIONER, "volumeHandle": volume_id}},
    }


CLAIMS = {
    "data": _claim("pv-vol1"),
    "far": _claim("pv-vol2"),
    "pending": _claim(None),
    "ebs": _claim("pv-ebs", provisioner="ebs.csi.aws.com"),
}
PVS = {
    "pv-vol1": _pv("vol1", "US-KS-2"),
    "pv-vol2": _pv("vol2", "AP-JP-1"),
    "pv-ebs": {
        "metadata": {"name": "pv-ebs"},
        "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "x"}},
    },
}
LOOKUPS = VolumeLookups(claims=lambda ns, name: CLAIMS.get(name), volumes=PVS.get)


def _pod(*volumes: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = gpu_pod(annotations=annotations)
    pod["spec"]["volumes"] = list(volumes)
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": v["name"], "mountPath": f"/{v['name']}"} for v in volumes
    ]
    return pod


def _claim_volume(name: str, claim: str) -> dict[str, Any]:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim}}


def _mutate(pod: dict[str, Any]) -> Verdict:
    return mutate(parse_review(review_bytes(pod)), catalog=CATALOG, policy=POLICY, jobs=None, volumes=LOOKUPS)


def test_a_network_volume_pins_the_plan_to_its_data_center() -> None:
    pod = _pod(_claim_volume("ckpt", "data"))
    verdict = _mutate(pod)
    assert verdict.allowed, verdict.message
    plan = plan_from_annotations(apply_patch(pod, list(verdict.patch))["metadata"]["annotations"])
    assert plan.datacenter_ids == ("US-KS-2",)
    assert {c.datacenter_id for c in plan.candidates} == {"US-KS-2"}
    assert not any("ckpt" in w for w in verdict.warnings)


def test_volumes_outside_the_node_unbound_missing_or_two_are_refused_clearly() -> None:
    far = _mutate(_pod(_claim_volume("v", "far")))
    assert (
        not far.allowed
        and far.code == 403
        and "AP-JP-1" in str(far.message)
        and "does not allow" in str(far.message)
    )
    pending = _mutate(_pod(_claim_volume("v", "pending")))
    assert not pending.allowed and "not bound yet" in str(pending.message)
    missing = _mutate(_pod(_claim_volume("v", "nope")))
    assert not missing.allowed and 'persistentvolumeclaim "nope" not found' in str(missing.message)
    two = _mutate(_pod(_claim_volume("a", "data"), _claim_volume("b", "far")))
    assert not two.allowed and "at most one network volume" in str(two.message)
    mismatch = _mutate(_pod(_claim_volume("v", "data"), annotations={"runpod.io/datacenter-ids": "EU-RO-1"}))
    assert not mismatch.allowed and "not among the pod's data centers" in str(mismatch.message)


def test_empty_dirs_size_the_disk_and_other_volumes_are_warned_about() -> None:
    pod = _pod(
        {"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "c"}},
        _claim_volume("disk", "ebs"),
    )
    verdict = _mutate(pod)
    assert verdict.allowed, verdict.message
    plan = plan_from_annotations(apply_patch(pod, list(verdict.patch))["metadata"]["annotations"])
    assert plan.container_disk_gb == 50 + 22
    assert [w.split(" is ")[0] for w in verdict.warnings if w.startswith("volume ")] == [
        "volume conf (configMap)",
        "volume disk (persistentVolumeClaim)",
    ]
    huge = _mutate(_pod({"name": "scratch", "emptyDir": {"sizeLimit": "3T"}}))
    assert not huge.allowed and "above RunPod's 2000 GB" in str(huge.message)
