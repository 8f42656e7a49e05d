"""Private images and network volumes through the whole chain on the real control plane: the
real kube-apiserver calls the webhook, the scheduler binds to the virtual node, the binder
creates on the sandbox RunPod, and the controller-manager's PV controller binds claims to the
PVs the binder's provisioner makes.

- A pod with `imagePullSecrets` and an image of a private registry (the sandbox refuses its pull
  without the matching credential) runs; the sandbox shows one registry credential, used by it;
  a second pod with the same Secret reuses it; none is left once both pods are gone.
- A claim of class `runpod-network-volume` binds; a pod mounting it runs in the volume's data
  center with `mounts.network`; a second pod later mounts the same volume; growing the claim
  grows the volume; deleting the claim deletes the volume.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhook_cluster_support import Stack, apply, get_pod, running_stack
from webhook_samples import gpu_pod

from binder.testing import wait_for
from contract.volumes import DATACENTER_ANNOTATION, STORAGE_CLASS, render_storage_class
from controlplane import ControlPlane

pytestmark = pytest.mark.cluster

PRIVATE = {"host": "registry.sandbox.test", "username": "robot", "password": "correct-horse"}
IMAGE = "registry.sandbox.test/team/trainer:1"


@pytest.fixture
def stack(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    apply(control_plane, render_storage_class())
    try:
        with running_stack(
            control_plane,
            apps=namespace,
            tmp_path=tmp_path,
            purpose="vols",
            binder_args=["--max-gpu-price", "2", "--sweep-interval", "1", "--sweep-grace-seconds", "1"],
            webhook_args=["--max-gpu-price=2"],
        ) as stack:
            yield stack
    finally:
        # Cluster-scoped: left behind, it would stop any later `helm install` of the chart
        # (helm refuses to adopt a StorageClass it did not make).
        control_plane.kubectl("delete", "storageclass", STORAGE_CLASS, "--ignore-not-found", check=False)


def _pod(stack: Stack, name: str, *, image: str = "busybox", **spec: Any) -> str:
    pod = gpu_pod()
    pod["metadata"] = {"name": name}
    pod["spec"]["nodeSelector"] = {"type": "virtual-kubelet", "kubernetes.io/hostname": stack.node}
    container = pod["spec"]["containers"][0]
    container.update({"image": image, "command": ["sh", "-c", "echo up; sleep infinity"]})
    if "mount" in spec:
        claim, path = spec.pop("mount")
        pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        container["volumeMounts"] = [{"name": "data", "mountPath": path}]
    pod["spec"].update(spec)
    return json.dumps(pod)


def _create(stack: Stack, manifest: str) -> None:
    created = stack.plane.kubectl("create", "-n", stack.apps, "-f", "-", input=manifest, check=False)
    assert created.returncode == 0, created.stderr


def _running(stack: Stack, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = get_pod(stack.plane, stack.apps, name)
        return pod if pod.get("status", {}).get("phase") == "Running" else None

    return wait_for(f"pod {name} Running", probe, timeout=120)


def _runpod(stack: Stack, pod_id: str) -> dict[str, Any]:
    (found,) = [p for p in stack.sandbox.admin.state()["pods"] if p["id"] == pod_id]
    return dict(found)


def test_image_pull_secrets_become_one_runpod_credential_used_while_pods_live(stack: Stack) -> None:
    stack.sandbox.admin.set_private_registries([PRIVATE])
    config = {"auths": {PRIVATE["host"]: {"username": PRIVATE["username"], "password": PRIVATE["password"]}}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": stack.apps},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    apply(stack.plane, secret)
    _create(stack, _pod(stack, "first", image=IMAGE, imagePullSecrets=[{"name": "pull"}]))
    first = _running(stack, "first")["metadata"]["annotations"]
    registry_id = first["runpod.io/registry-auth-id"]
    assert _runpod(stack, first["runpod.io/pod-id"])["registry"] == registry_id
    (credential,) = stack.sandbox.admin.state()["registries"]
    assert credential["id"] == registry_id and credential["usedBy"] == [first["runpod.io/pod-id"]]
    assert PRIVATE["password"] not in json.dumps(get_pod(stack.plane, stack.apps, "first"))
    assert PRIVATE["password"] not in stack.binder.output()

    _create(stack, _pod(stack, "second", image=IMAGE, imagePullSecrets=[{"name": "pull"}]))
    second = _running(stack, "second")["metadata"]["annotations"]
    assert second["runpod.io/registry-auth-id"] == registry_id
    (shared,) = stack.sandbox.admin.state()["registries"]
    assert sorted(shared["usedBy"]) == sorted([first["runpod.io/pod-id"], second["runpod.io/pod-id"]])

    stack.plane.kubectl("delete", "pod", "-n", stack.apps, "first", "second", "--wait=false")
    wait_for(
        "no registry credential left", lambda: stack.sandbox.admin.state()["registries"] == [], timeout=90
    )


def test_a_network_volume_claim_binds_pins_its_pods_and_goes_with_the_claim(stack: Stack) -> None:
    plane = stack.plane
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "ckpt", "namespace": stack.apps},
        "spec": {
            "storageClassName": "runpod-network-volume",
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "20Gi"}},
        },
    }
    apply(plane, claim)

    def bound() -> dict[str, Any] | None:
        found = json.loads(plane.kubectl("get", "pvc", "-n", stack.apps, "ckpt", "-o", "json").stdout)
        return found if found.get("status", {}).get("phase") == "Bound" else None

    pvc = wait_for("the claim Bound", bound, timeout=90)
    pv = json.loads(plane.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    datacenter = pv["metadata"]["annotations"][DATACENTER_ANNOTATION]
    (volume,) = stack.sandbox.admin.state()["networkVolumes"]
    assert (volume["id"], volume["dataCenter"], volume["size"]) == (volume_id, datacenter, 22)

    _create(stack, _pod(stack, "writer", mount=("ckpt", "/workspace")))
    writer = _running(stack, "writer")["metadata"]["annotations"]
    assert writer["plan.runpod.io/datacenter-ids"] == datacenter
    assert writer["runpod.io/network-volume-id"] == volume_id
    runpod = _runpod(stack, writer["runpod.io/pod-id"])
    assert runpod["dataCenterId"] == datacenter
    assert runpod["mounts"] == {"network": [{"volumeId": volume_id, "path": "/workspace"}]}
    plane.kubectl("delete", "pod", "-n", stack.apps, "writer", "--wait=true", "--timeout=90s")

    _create(stack, _pod(stack, "reader", mount=("ckpt", "/data")))
    reader = _running(stack, "reader")["metadata"]["annotations"]
    assert _runpod(stack, reader["runpod.io/pod-id"])["mounts"]["network"][0]["volumeId"] == volume_id
    plane.kubectl("delete", "pod", "-n", stack.apps, "reader", "--wait=true", "--timeout=90s")

    # Growing the claim grows the volume (RunPod only grows), then the PV and the claim's status.
    plane.kubectl(
        "patch", "pvc", "-n", stack.apps, "ckpt", "--type=merge",
        "-p", json.dumps({"spec": {"resources": {"requests": {"storage": "30Gi"}}}}),
    )  # fmt: skip
    wait_for(
        "the volume grown",
        lambda: [v["size"] for v in stack.sandbox.admin.state()["networkVolumes"]] == [33],
        timeout=60,
    )
    wait_for(
        "the claim's capacity grown",
        lambda: json.loads(plane.kubectl("get", "pvc", "-n", stack.apps, "ckpt", "-o", "json").stdout)
        .get("status", {}).get("capacity", {}).get("storage") == "33G",
        timeout=60,
    )  # fmt: skip

    plane.kubectl("delete", "pvc", "-n", stack.apps, "ckpt", "--wait=false")
    wait_for("the volume deleted", lambda: stack.sandbox.admin.state()["networkVolumes"] == [], timeout=90)
    wait_for(
        "the PV gone",
        lambda: plane.kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0,
        timeout=60,
    )


def test_a_static_pv_for_an_existing_volume_is_located_and_mounted(stack: Stack) -> None:
    plane = stack.plane
    import httpx

    made = httpx.post(
        f"{stack.sandbox.base_url}/v2/network-volumes",
        json={"name": "datasets", "size": 50, "dataCenter": "EU-SE-1"},
        headers={"Authorization": "Bearer test-key"},
    ).json()
    name = f"static-{stack.apps}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "50G"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": "network-volume.runpod-kubelet.io", "volumeHandle": made["id"]},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "datasets", "namespace": stack.apps},
        "spec": {
            "storageClassName": "",
            "volumeName": name,
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "50G"}},
        },
    }
    apply(plane, pv, claim)
    try:

        def located() -> str | None:
            found = json.loads(plane.kubectl("get", "pv", name, "-o", "json").stdout)
            bound = found.get("status", {}).get("phase") == "Bound"
            return found["metadata"].get("annotations", {}).get(DATACENTER_ANNOTATION) if bound else None

        assert wait_for("the static PV located and bound", located, timeout=90) == "EU-SE-1"
        _create(stack, _pod(stack, "static", mount=("datasets", "/datasets")))
        annotations = _running(stack, "static")["metadata"]["annotations"]
        runpod = _runpod(stack, annotations["runpod.io/pod-id"])
        assert runpod["dataCenterId"] == "EU-SE-1"
        assert runpod["mounts"]["network"] == [{"volumeId": made["id"], "path": "/datasets"}]
    finally:
        plane.kubectl(
            "delete", "pod", "-n", stack.apps, "static", "--wait=true", "--timeout=90s", check=False
        )
        plane.kubectl("delete", "pvc", "-n", stack.apps, "datasets", "--wait=false", check=False)
        plane.kubectl("delete", "pv", name, "--wait=false", check=False)
    # Retain: the RunPod volume outlives its claim and PV.
    assert made["id"] in {v["id"] for v in stack.sandbox.admin.state()["networkVolumes"]}


def test_a_missing_pull_secret_keeps_the_pod_waiting_until_it_exists(stack: Stack) -> None:
    stack.sandbox.admin.set_private_registries([PRIVATE])
    _create(stack, _pod(stack, "patient", image=IMAGE, imagePullSecrets=[{"name": "later"}]))

    def warned() -> bool:
        events = json.loads(stack.plane.kubectl("get", "events", "-n", stack.apps, "-o", "json").stdout)[
            "items"
        ]
        return any(
            e["reason"] == "FailedToRetrieveImagePullSecret" and "(later)" in e["message"]
            and e["involvedObject"]["name"] == "patient"
            for e in events
        )  # fmt: skip

    wait_for("the kubelet's Event for the missing Secret", warned, timeout=60)
    waiting = get_pod(stack.plane, stack.apps, "patient")
    assert waiting["status"]["phase"] == "Pending" and stack.sandbox.admin.state()["pods"] == []
    config = {"auths": {PRIVATE["host"]: {"username": PRIVATE["username"], "password": PRIVATE["password"]}}}
    apply(
        stack.plane,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "later", "namespace": stack.apps},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
        },
    )
    running = _running(stack, "patient")["metadata"]["annotations"]
    assert running["runpod.io/registry-auth-id"] == _runpod(stack, running["runpod.io/pod-id"])["registry"]
