"""How material sits in the Secret and how the CA lands in webhook configurations (pure parts)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from certs.ca_injection import with_ca_bundle
from certs.material import Action, Renewal, issue, service_dns_names, trust_bundle
from certs.secret_store import material_from_secret, secret_body

NOW = datetime(2026, 11, 27, tzinfo=UTC)
NAMES = service_dns_names(service="rk-webhook", namespace="runpod")


def test_material_round_trips_through_a_tls_secret() -> None:
    material = issue(Renewal(Action.NEW_CA, "t"), None, now=NOW, names=NAMES)
    rotated = issue(Renewal(Action.NEW_CA, "t"), material, now=NOW, names=NAMES)

    body = secret_body(rotated, name="rk-webhook-tls", namespace="runpod", resource_version="42")

    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["resourceVersion"] == "42"
    assert {"tls.crt", "tls.key", "ca.crt", "ca.key", "ca-previous.crt"} == set(body["data"])
    assert material_from_secret(body["data"]) == rotated


def test_a_secret_missing_a_required_key_holds_no_material() -> None:
    material = issue(Renewal(Action.NEW_CA, "t"), None, now=NOW, names=NAMES)
    data = secret_body(material, name="x", namespace="y")["data"]
    del data["ca.key"]
    assert material_from_secret(data) is None
    assert material_from_secret(None) is None


def configuration(*ca_bundles: str | None) -> dict[str, Any]:
    webhooks: list[dict[str, Any]] = []
    for i, bundle in enumerate(ca_bundles):
        client: dict[str, Any] = {"service": {"name": "rk-webhook", "namespace": "runpod"}}
        if bundle is not None:
            client["caBundle"] = bundle
        webhooks.append({"name": f"w{i}.runpod.io", "clientConfig": client, "failurePolicy": "Fail"})
    return {"metadata": {"name": "cfg", "resourceVersion": "7"}, "webhooks": webhooks}


def test_every_webhook_of_a_configuration_gets_the_bundle_and_the_resource_version_is_kept() -> None:
    bundle = b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    updated = with_ca_bundle(configuration(None, "b2xk"), ca_bundle=bundle)

    assert updated is not None
    encoded = base64.b64encode(bundle).decode()
    assert [w["clientConfig"]["caBundle"] for w in updated["webhooks"]] == [encoded, encoded]
    assert updated["metadata"]["resourceVersion"] == "7"


def test_a_configuration_already_trusting_the_bundle_is_not_rewritten() -> None:
    material = issue(Renewal(Action.NEW_CA, "t"), None, now=NOW, names=NAMES)
    encoded = base64.b64encode(trust_bundle(material)).decode()
    assert with_ca_bundle(configuration(encoded, encoded), ca_bundle=trust_bundle(material)) is None


def test_failure_policy_is_only_changed_when_asked() -> None:
    encoded = base64.b64encode(b"x").decode()
    assert with_ca_bundle(configuration(encoded), ca_bundle=b"x") is None
    updated = with_ca_bundle(configuration(encoded), ca_bundle=b"x", failure_policy="Ignore")
    assert updated is not None
    assert updated["webhooks"][0]["failurePolicy"] == "Ignore"
