"""Helpers of the sandbox tests: the OpenAPI contract check and shared request bodies.

`contract.check(response)` validates one sandbox answer against RunPod's official OpenAPI
document (the shared copy when present, else the copy bundled with the sandbox; a test pins
that the two are identical): status documented for the operation, content type, body schema
(JSON Schema 2020-12 with $refs resolved), RateLimit headers on authenticated answers. The
`api` client runs that check on every response it receives.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sandbox.faults import route_template
from sandbox.testing import RunningSandbox
from sandbox.validation import openapi_document

SHARED_OPENAPI = Path("/work/shared/openapi/runpod-v2.json")
API_KEY = "test-key"
_DOC_URI = "urn:runpod-v2-openapi"
_RATE_MEMBER = re.compile(r'^"(minute|hour|day)";r=\d+;t=\d+$')
_POLICY_MEMBER = re.compile(r'^"(minute|hour|day)";q=\d+;w=\d+$')


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


class Contract:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(_DOC_URI, DRAFT202012.create_resource(doc))
        self.checked = 0

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def validate(self, instance: object, pointer: str) -> None:
        validator = Draft202012Validator({"$ref": f"{_DOC_URI}#{pointer}"}, registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, f"{pointer}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
        )

    def check(self, response: httpx.Response) -> None:
        request = response.request
        method = request.method.lower()
        template = route_template(request.url.path)
        status = str(response.status_code)
        op = self.doc["paths"].get(template, {}).get(method)
        if response.status_code == 405:
            spec = self.doc["components"]["responses"]["MethodNotAllowedError"]
            pointer = "/components/responses/MethodNotAllowedError"
            assert response.headers.get("allow"), "405 without Allow"
        elif op is None:
            assert response.status_code == 404, f"{method} {template} is not a documented operation"
            spec = self.doc["components"]["responses"]["NotFoundError"]
            pointer = "/components/responses/NotFoundError"
        else:
            responses = op["responses"]
            key = status if status in responses else "default"
            assert key in responses, f"{status} not documented for {method} {template}"
            spec = self._resolve(responses[key])
            raw = responses[key]
            pointer = (
                raw["$ref"].removeprefix("#")
                if "$ref" in raw
                else f"/paths/{_escape(template)}/{method}/responses/{key}"
            )
        content = spec.get("content")
        if not content:
            assert response.content == b"", f"{status} must have no body"
        else:
            media = response.headers.get("content-type", "").split(";")[0].strip()
            assert media in content, f"{media!r} not among {list(content)} for {status}"
            if media != "text/event-stream":
                self.validate(response.json(), f"{pointer}/content/{_escape(media)}/schema")
        if response.status_code != 401 and request.headers.get("authorization"):
            rate, policy = response.headers.get("ratelimit"), response.headers.get("ratelimit-policy")
            assert rate and policy, "authenticated answer without RateLimit headers"
            assert all(_RATE_MEMBER.match(m.strip()) for m in rate.split(",")), rate
            assert all(_POLICY_MEMBER.match(m.strip()) for m in policy.split(",")), policy
        if response.status_code == 429:
            assert response.headers.get("retry-after", "").isdigit()
        self.checked += 1


def contract_client(sb: RunningSandbox, contract: Contract, *, key: str | None = API_KEY) -> httpx.Client:
    """An httpx client on the sandbox whose every (non-streamed) response is contract-checked."""

    def hook(response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            contract.check(response)  # body is read by the test as a stream
            return
        response.read()
        contract.check(response)

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=sb.base_url, headers=headers, timeout=10.0, event_hooks={"response": [hook]})


FAST = {"provisioningS": 0.05, "startingS": 0.05, "restartDelayS": 0.05}

OPENAPI_SHA256 = "b8bce61c5a2290d28a7cb2ed53173637166817249986cb18b101b2fd651fd313"
GPU = "NVIDIA A40"
POD_BODY: dict[str, Any] = {
    "name": "rpvk-c1a2-7f3a9b21-0",
    "image": "nginx:1.27",
    "gpu": {"id": GPU, "count": 1},
    "cloud": "SECURE",
    "dataCenterIds": ["EU-RO-1"],
    "disk": 20,
    "ports": ["80/http", "22/tcp"],
    "env": {"RPVK_OWNER": "c1a2/ns1/web-7f3a"},
}


def load_contract() -> Contract:
    doc = json.loads(SHARED_OPENAPI.read_text()) if SHARED_OPENAPI.exists() else openapi_document()
    return Contract(doc)


def wait_status(api: httpx.Client, pod_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pod: dict[str, Any] = api.get(f"/v2/pods/{pod_id}").json()
        if pod["status"] == status or time.monotonic() > deadline:
            return pod
        time.sleep(0.02)


def logs_snapshot(
    api: httpx.Client, pod_id: str, *, source: str | None = None, idle: float = 0.3, limit: float = 1.0
) -> list[str]:
    """A log stream read until it is quiet for `idle` seconds or `limit` seconds have passed."""
    params: dict[str, Any] = {"tail": 5000} | ({"source": source} if source else {})
    lines: list[str] = []
    deadline = time.monotonic() + limit
    try:
        with api.stream(
            "GET", f"/v2/pods/{pod_id}/logs", params=params, timeout=httpx.Timeout(5, read=idle)
        ) as s:
            for line in s.iter_lines():
                if line.startswith("data: "):
                    lines.append(json.loads(line.removeprefix("data: "))["line"])
                if time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass
    return lines
