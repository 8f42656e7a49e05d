"""Every sandbox answer has the shape RunPod's OpenAPI document promises (checked by `api`)."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files

import httpx
from sandbox_helpers import (
    API_KEY,
    GPU,
    OPENAPI_SHA256,
    POD_BODY,
    SHARED_OPENAPI,
    Contract,
    contract_client,
    wait_status,
)

from sandbox.testing import RunningSandbox, running_sandbox
from sandbox.validation import openapi_document


def test_bundled_openapi_copy_is_the_official_document() -> None:
    bundled = files("sandbox.data").joinpath("runpod-v2.json").read_bytes()
    # Pinned: a changed upstream document must be a reviewed change (notes: "pin its checksum").
    assert hashlib.sha256(bundled).hexdigest() == OPENAPI_SHA256
    if SHARED_OPENAPI.exists():
        assert openapi_document() == json.loads(SHARED_OPENAPI.read_text())
    assert openapi_document()["info"]["version"] == "2.0.0"


def test_catalog_answers_match_the_schema(api: httpx.Client) -> None:
    plain = api.get("/v2/catalog/gpus").json()["gpus"]
    assert {"NVIDIA A40", "NVIDIA GeForce RTX 4090", "NVIDIA H100 80GB HBM3"} <= {g["id"] for g in plain}
    assert all("availability" not in g for g in plain)
    rich = api.get(
        "/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD", "count": 2}
    ).json()
    a40 = next(g for g in rich["gpus"] if g["id"] == GPU)
    assert a40["availability"] in ("LOW", "MEDIUM", "HIGH")
    assert any(dc["id"] == "EU-RO-1" for dc in a40["dataCenters"])
    one = api.get(f"/v2/catalog/gpus/{GPU}", params={"include": "AVAILABILITY", "product": "POD"}).json()
    assert one["id"] == GPU and one["price"]["secure"] == 0.44 and one["memory"] == 48
    assert api.get("/v2/catalog/gpus/NVIDIA RTX 4090").status_code == 404  # old docs' id is not real
    dcs = api.get(
        "/v2/catalog/datacenters", params={"include": "GPU_AVAILABILITY", "regions": "EUROPE"}
    ).json()
    assert dcs["dataCenters"] and all(dc["region"] == "EUROPE" for dc in dcs["dataCenters"])


def test_catalog_parameter_rules_answer_400_and_422(api: httpx.Client) -> None:
    assert api.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400
    assert api.get("/v2/catalog/gpus", params={"product": "POD"}).status_code == 400
    assert api.get("/v2/catalog/gpus", params={"count": "2"}).status_code == 400
    both = {"include": "AVAILABILITY", "product": "POD", "cudaVersions": "12.8", "minCudaVersion": "12"}
    assert api.get("/v2/catalog/gpus", params=both).status_code == 400
    bad = api.get("/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD", "count": "0"})
    assert bad.status_code == 422 and bad.json()["errors"]
    assert api.get("/v2/catalog/gpus", params={"include": "NOPE", "product": "POD"}).status_code == 422


def test_create_list_get_patch_and_delete_pod(api: httpx.Client) -> None:
    created = api.post("/v2/pods", json=POD_BODY)
    assert created.status_code == 201
    pod = created.json()
    assert pod["status"] == "PROVISIONING" and pod["actions"] == ["stop", "terminate"]
    assert pod["dataCenterId"] == "EU-RO-1" and pod["cost"] == 0.44 and pod["runtime"] is None
    assert pod["ssh"]["direct"] is None and pod["startedAt"] is None
    assert pod["env"] == POD_BODY["env"] and len(pod["id"]) == 14
    listed = api.get("/v2/pods").json()["pods"]
    assert [p["id"] for p in listed] == [pod["id"]]
    running = wait_status(api, pod["id"], "RUNNING")
    assert running["status"] == "RUNNING" and running["startedAt"]
    patched = api.patch(f"/v2/pods/{pod['id']}", json={"locked": True, "name": "renamed"})
    assert patched.status_code == 200 and patched.json()["locked"] is True
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "stop"}).status_code == 409  # locked
    assert api.delete(f"/v2/pods/{pod['id']}").status_code == 204
    assert api.get(f"/v2/pods/{pod['id']}").status_code == 404
    assert api.delete(f"/v2/pods/{pod['id']}").status_code == 404
    assert api.get("/v2/pods").json() == {"pods": []}


def test_unknown_fields_are_422_with_json_path_errors(api: httpx.Client) -> None:
    body = {**POD_BODY, "gpuCount": 1, "gpu": {"id": GPU, "count": 0, "bogus": True}}
    answer = api.post("/v2/pods", json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        "$: additional properties 'gpuCount' not allowed",
        "$.gpu: additional properties 'bogus' not allowed",
        "$.gpu.count: must be >= 1",
    ]
    missing = api.post("/v2/pods", json={"image": "x", "gpu": {"id": GPU, "count": 1}})
    assert missing.json()["errors"] == ["$: missing property 'name'"]
    assert api.post("/v2/pods/abc/action", json={"action": "reset"}).status_code in (404, 422)


def test_no_capacity_is_400_with_the_live_wording(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.admin.set_stock(gpu_id=GPU, datacenter_id="EU-RO-1", cloud="SECURE", free=0)
    answer = api.post("/v2/pods", json=POD_BODY)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("There are no longer any instances available")
    nine = api.post("/v2/pods", json={**POD_BODY, "gpu": {"id": GPU, "count": 9}, "dataCenterIds": []})
    assert nine.status_code == 400  # more than one machine holds
    availability = api.get(f"/v2/catalog/gpus/{GPU}", params={"include": "AVAILABILITY", "product": "POD"})
    bands = {dc["id"]: dc["availability"] for dc in availability.json().get("dataCenters", [])}
    assert bands.get("EU-RO-1", "NONE") == "NONE"


def test_auth_failures_are_401_without_rate_headers(sandbox: RunningSandbox, contract: Contract) -> None:
    with contract_client(sandbox, contract, key=None) as anonymous:
        answer = anonymous.get("/v2/pods")
        assert answer.status_code == 401 and answer.json()["detail"] == "missing bearer token"
        assert "ratelimit" not in answer.headers
    with contract_client(sandbox, contract, key="wrong") as wrong:
        assert wrong.get("/v2/catalog/gpus").json()["detail"] == "invalid token"


def test_unknown_pod_path_and_method_answers(api: httpx.Client) -> None:
    assert api.get("/v2/pods/doesnotexist").json()["detail"] == "pod not found"
    assert api.get("/v2/tags").json()["detail"] == "The requested path was not found."
    refused = api.put("/v2/pods")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"


def test_rate_limit_429_carries_retry_after_and_names_the_window(contract: Contract) -> None:
    scenario = {"rateLimits": [{"window": "minute", "quota": 3, "windowS": 60}]}
    with running_sandbox(api_key=API_KEY, scenario=scenario) as sb, contract_client(sb, contract) as api:
        remaining = [api.get("/v2/pods").headers["ratelimit"] for _ in range(3)]
        assert remaining[-1].startswith('"minute";r=0;')
        refused = api.get("/v2/pods")
        assert refused.status_code == 429
        assert refused.json()["detail"] == "rate limit exceeded for the minute window"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-policy"] == '"minute";q=3;w=60'


def test_log_stream_events_follow_the_sse_contract(api: httpx.Client) -> None:
    body = {**POD_BODY, "args": "sh -c 'echo first; echo second; sleep infinity'"}
    pod = api.post("/v2/pods", json=body).json()
    wait_status(api, pod["id"], "RUNNING")
    events: list[dict[str, str]] = []
    with api.stream("GET", f"/v2/pods/{pod['id']}/logs", params={"source": "container"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
        event: dict[str, str] = {}
        for line in stream.iter_lines():
            if line.startswith(("id:", "data:")):
                key, _, value = line.partition(": ")
                event[key] = value
            elif not line and event:
                events.append(event)
                event = {}
                if len(events) == 2:
                    break
    data = [json.loads(e["data"]) for e in events]
    assert [d["line"] for d in data] == ["first", "second"]
    assert all(d["source"] == "container" and d["ts"].endswith("Z") for d in data)
    assert all(e["id"].split("/")[1].isdigit() for e in events)
    assert api.get(f"/v2/pods/{pod['id']}/logs", params={"tail": 5001}).status_code == 422
    assert api.get("/v2/pods/nope/logs").status_code == 404
