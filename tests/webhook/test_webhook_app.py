"""The HTTP layer: reviews in and out, 400 for malformed bodies, health, readiness and metrics."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from webhook_samples import gpu_pod, review, sample_catalog

from contract.catalog import Catalog
from contract.policy import NodePolicy
from webhook.app import Dependencies, create_app

POLICY = NodePolicy(allowed_datacenter_ids=("EU-RO-1", "US-KS-2"), max_gpu_price=2.0)


class StaticCatalog:
    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog

    def current(self) -> Catalog | None:
        return self.catalog

    def loaded_at(self) -> float | None:
        return 0.0


class BrokenCatalog(StaticCatalog):
    def current(self) -> Catalog | None:
        raise RuntimeError("boom")


async def _client(source: StaticCatalog) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Dependencies(policy=POLICY, catalog=source, jobs=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(StaticCatalog(sample_catalog())):
        yield c


async def test_mutate_answers_with_the_same_uid_and_a_json_patch(client: httpx.AsyncClient) -> None:
    answer = await client.post("/mutate", json=review(gpu_pod(), uid="abc-123"))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert body["response"]["uid"] == "abc-123"
    assert body["response"]["allowed"] is True
    assert body["response"]["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(body["response"]["patch"]))
    assert ops[0]["path"] == "/metadata/annotations"


async def test_validate_never_returns_a_patch(client: httpx.AsyncClient) -> None:
    body = (await client.post("/validate", json=review(gpu_pod()))).json()
    assert body["response"]["allowed"] is False
    assert "patch" not in body["response"] and "patchType" not in body["response"]
    assert body["response"]["status"]["code"] == 403


async def test_a_denial_is_http_200_with_code_and_message(client: httpx.AsyncClient) -> None:
    pod = gpu_pod(annotations={"runpod.io/datacenter-ids": "US-TX-3"})
    answer = await client.post("/mutate", json=review(pod))
    assert answer.status_code == 200
    status = answer.json()["response"]["status"]
    assert status["code"] == 403
    assert status["reason"] == "Forbidden"
    assert "allowed: EU-RO-1, US-KS-2" in status["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "body is not JSON"),
        (b"", "body is not JSON"),
        (b'{"kind":"Pod"}', "expected apiVersion admission.k8s.io/v1"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}', "operation"),
    ],
)
async def test_malformed_bodies_get_400_with_a_clear_message(
    client: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    for path in ("/mutate", "/validate"):
        answer = await client.post(path, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400
        assert answer.text.startswith("malformed AdmissionReview: ")
        assert fragment in answer.text


async def test_an_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post("/mutate", content=b"x" * (8 * 1024 * 1024 + 1))
    assert answer.status_code == 413


async def test_an_internal_failure_is_a_denial_not_an_http_error() -> None:
    async for client in _client(BrokenCatalog(None)):
        answer = await client.post("/mutate", json=review(gpu_pod(), uid="u-1"))
        assert answer.status_code == 200
        response = answer.json()["response"]
        assert (response["uid"], response["allowed"], response["status"]["code"]) == ("u-1", False, 500)
        assert "internal error (review uid u-1)" in response["status"]["message"]


async def test_readiness_waits_for_the_catalog() -> None:
    source = StaticCatalog(None)
    async for client in _client(source):
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        source.catalog = sample_catalog()
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert source.catalog.revision in ready.text


async def test_metrics_count_admissions_by_result_and_report_catalog_age() -> None:
    fetched = datetime.now(UTC) - timedelta(minutes=10)
    source = StaticCatalog(sample_catalog().model_copy(update={"fetched_at": fetched}))
    async for client in _client(source):
        await client.post("/mutate", json=review(gpu_pod()))
        await client.post("/mutate", json=review(gpu_pod(annotations={"runpod.io/x": "1"})))
        await client.post("/mutate", json=review(gpu_pod(aimed=False)))
        await client.post("/validate", content=b"nope")
        text = (await client.get("/metrics")).text
    assert 'runpod_webhook_admissions_total{endpoint="mutate",result="patched"} 1.0' in text
    assert 'runpod_webhook_admissions_total{endpoint="mutate",result="denied"} 1.0' in text
    assert 'runpod_webhook_admissions_total{endpoint="mutate",result="allowed"} 1.0' in text
    assert 'runpod_webhook_admissions_total{endpoint="validate",result="malformed"} 1.0' in text
    assert 'runpod_webhook_admission_seconds_count{endpoint="mutate"} 3.0' in text
    age_line = next(
        line for line in text.splitlines() if line.startswith("runpod_webhook_catalog_age_seconds ")
    )
    assert 590 <= float(age_line.split()[1]) <= 700


async def test_a_review_sent_in_several_chunks_is_answered_whole(client: httpx.AsyncClient) -> None:
    body = json.dumps(review(gpu_pod(), uid="chunked")).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    answer = await client.post("/mutate", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["response"]["uid"] == "chunked"
    assert answer.json()["response"]["allowed"] is True


async def test_review_routes_accept_only_post(client: httpx.AsyncClient) -> None:
    for path in ("/mutate", "/validate"):
        answer = await client.get(path)
        assert answer.status_code == 405
        assert answer.headers["allow"] == "POST"
