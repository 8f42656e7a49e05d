"""Registry credentials, private images, network volumes and `mounts.network` in the sandbox,
every answer checked against RunPod's OpenAPI document (the `api` client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandbox_helpers import FAST, POD_BODY, Contract, contract_client, logs_snapshot, wait_status

from sandbox.testing import RunningSandbox, running_sandbox

PRIVATE = {"host": "registry.sandbox.test", "username": "robot", "password": "s3cret-pass"}
PRIVATE_IMAGE = "registry.sandbox.test/team/trainer:1"


@pytest.fixture
def private(contract: Contract) -> Iterator[tuple[RunningSandbox, httpx.Client]]:
    with (
        running_sandbox(seed=3, timings=FAST, scenario={"privateRegistries": [PRIVATE]}) as sb,
        contract_client(sb, contract) as client,
    ):
        yield sb, client


def _pod(**changes: Any) -> dict[str, Any]:
    return {**POD_BODY, **changes}


def test_registry_credentials_are_write_only_and_deleted_only_when_unused(
    private: tuple[RunningSandbox, httpx.Client],
) -> None:
    sb, api = private
    created = api.post(
        "/v2/registries", json={"name": "k8s-a", "username": "robot", "password": "s3cret-pass"}
    )
    assert created.status_code == 201
    reg = created.json()
    assert set(reg) == {"id", "name"} and reg["name"] == "k8s-a"
    assert api.get("/v2/registries").json() == {"registries": [reg]}
    assert api.get(f"/v2/registries/{reg['id']}").json() == reg
    assert api.get("/v2/registries/nope").status_code == 404
    assert api.post("/v2/registries", json={"name": "x", "username": "u"}).status_code == 422

    pod = api.post("/v2/pods", json=_pod(image=PRIVATE_IMAGE, registry=reg["id"])).json()
    refused = api.delete(f"/v2/registries/{reg['id']}")
    assert refused.status_code == 400 and "in use" in refused.json()["detail"]
    state = sb.admin.state()
    assert state["registries"] == [{**reg, "usedBy": [pod["id"]]}]
    assert "s3cret-pass" not in json.dumps(state) and "robot" not in json.dumps(state["registries"])

    assert api.delete(f"/v2/pods/{pod['id']}").status_code == 204
    assert api.delete(f"/v2/registries/{reg['id']}").status_code == 204
    assert api.delete(f"/v2/registries/{reg['id']}").status_code == 404
    assert sb.admin.state()["registries"] == []


def test_a_private_image_pulls_only_with_a_matching_credential(
    private: tuple[RunningSandbox, httpx.Client],
) -> None:
    _, api = private
    good = api.post("/v2/registries", json={"name": "good", "username": "robot", "password": "s3cret-pass"})
    wrong = api.post("/v2/registries", json={"name": "bad", "username": "robot", "password": "old"})
    with_good = api.post("/v2/pods", json=_pod(image=PRIVATE_IMAGE, registry=good.json()["id"])).json()
    with_wrong = api.post("/v2/pods", json=_pod(image=PRIVATE_IMAGE, registry=wrong.json()["id"])).json()
    without = api.post("/v2/pods", json=_pod(image=PRIVATE_IMAGE)).json()
    public = api.post("/v2/pods", json=_pod(image="busybox:1.36")).json()
    assert wait_status(api, with_good["id"], "RUNNING")["registry"] == good.json()["id"]
    assert wait_status(api, public["id"], "RUNNING")
    for failed in (with_wrong, without):
        wait_status(api, failed["id"], "ERROR")
        lines = logs_snapshot(api, failed["id"], source="system")
        assert f"error pulling image {PRIVATE_IMAGE}: pull access denied or repository not found" in lines
    unknown = api.post("/v2/pods", json=_pod(registry="missing"))
    assert unknown.status_code == 404


def test_network_volumes_are_placed_grow_only_and_pin_their_pods(
    private: tuple[RunningSandbox, httpx.Client],
) -> None:
    sb, api = private
    body = {"name": "ckpt", "size": 20, "dataCenter": "EU-RO-1"}
    volume = api.post("/v2/network-volumes", json=body)
    assert volume.status_code == 201
    vol = volume.json()
    assert (vol["dataCenter"], vol["size"], vol["type"]) == ("EU-RO-1", 20, "STANDARD")
    assert api.get("/v2/network-volumes").json() == {"networkVolumes": [vol]}
    assert api.get(f"/v2/network-volumes/{vol['id']}").json() == vol
    assert api.post("/v2/network-volumes", json={**body, "size": 5}).status_code == 422
    assert api.post("/v2/network-volumes", json={**body, "dataCenter": "XX-1"}).status_code == 400
    assert api.post("/v2/network-volumes", json={**body, "type": "HIGH_PERFORMANCE"}).status_code == 400
    assert api.patch(f"/v2/network-volumes/{vol['id']}", json={"size": 10}).status_code == 400
    assert api.patch(f"/v2/network-volumes/{vol['id']}", json={}).status_code == 422
    assert api.patch(f"/v2/network-volumes/{vol['id']}", json={"size": 30}).json()["size"] == 30

    mount = {"network": [{"volumeId": vol["id"], "path": "/workspace"}]}
    elsewhere = api.post("/v2/pods", json=_pod(dataCenterIds=["EU-SE-1"], mounts=mount))
    assert elsewhere.status_code == 400 and "EU-RO-1" in elsewhere.json()["detail"]
    missing = api.post("/v2/pods", json=_pod(mounts={"network": [{"volumeId": "nope", "path": "/w"}]}))
    assert missing.status_code == 404
    two = api.post("/v2/pods", json=_pod(mounts={"network": [mount["network"][0]] * 2}))
    assert two.status_code == 422
    anywhere = {k: v for k, v in POD_BODY.items() if k != "dataCenterIds"}
    pod = api.post("/v2/pods", json={**anywhere, "mounts": mount}).json()
    assert pod["dataCenterId"] == "EU-RO-1" and pod["mounts"] == mount
    assert sb.admin.state()["networkVolumes"] == [{**vol, "size": 30, "usedBy": [pod["id"]]}]

    assert api.delete(f"/v2/network-volumes/{vol['id']}").status_code == 204
    assert api.get(f"/v2/network-volumes/{vol['id']}").status_code == 404
    assert sb.admin.state()["networkVolumes"] == []


def test_private_registries_can_change_at_runtime(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.admin.set_private_registries([PRIVATE])
    pod = api.post("/v2/pods", json=_pod(image=PRIVATE_IMAGE)).json()
    wait_status(api, pod["id"], "ERROR")
