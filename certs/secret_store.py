"""The webhook's TLS material in a Secret: read it, decide, write it once, race-safely.

Owns: the Secret's layout (`kubernetes.io/tls` plus the CA pair) and `ensure_material`, the
read -> decide -> write loop. Two runs at once are safe by optimistic concurrency: a create
that meets 409 and an update with a stale resourceVersion (409) both go back to reading, and
the loser then finds the winner's fresh material valid and reuses it. So whichever run wins,
every run returns the material that is actually stored.

Does not own: the crypto and the renewal decision (`certs.material`), the caBundle patch
(`certs.ca_injection`).

Layout: `tls.crt`, `tls.key` (what the webhook pods mount — the chart projects only these two),
`ca.crt` (current CA), `ca.key` (needed to renew the leaf under the same CA, so rotation never
changes the caBundle), `ca-previous.crt` (a retired CA still trusted, only during rotation).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient

from certs.material import Action, Material, issue, plan_renewal
from kit.kube import Conflict, NotFound, get_json, post_json, put_json

__all__ = ["EnsureResult", "ensure_material", "material_from_secret", "secret_body"]

log = logging.getLogger(__name__)

TLS_CERT_KEY: Final = "tls.crt"
TLS_KEY_KEY: Final = "tls.key"
CA_CERT_KEY: Final = "ca.crt"
CA_KEY_KEY: Final = "ca.key"
PREVIOUS_CA_KEY: Final = "ca-previous.crt"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "runpod-kubelet-certs"
# Racing writers converge in two rounds; more attempts only cover a pathological storm.
MAX_ATTEMPTS: Final = 6


@dataclass(frozen=True)
class EnsureResult:
    material: Material
    # "reused", "created" or "renewed"; `reason` says why (never contains key material).
    outcome: str
    reason: str


def material_from_secret(data: Mapping[str, str] | None) -> Material | None:
    """A Secret's `data` (base64 values) -> Material, or None if a required part is absent."""
    if not data:
        return None
    decoded: dict[str, bytes] = {}
    for key in (TLS_CERT_KEY, TLS_KEY_KEY, CA_CERT_KEY, CA_KEY_KEY, PREVIOUS_CA_KEY):
        raw = data.get(key)
        if raw is None:
            continue
        try:
            decoded[key] = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            decoded[key] = b""
    if not all(k in decoded for k in (TLS_CERT_KEY, TLS_KEY_KEY, CA_CERT_KEY, CA_KEY_KEY)):
        return None
    return Material(
        ca_cert_pem=decoded[CA_CERT_KEY],
        ca_key_pem=decoded[CA_KEY_KEY],
        cert_pem=decoded[TLS_CERT_KEY],
        key_pem=decoded[TLS_KEY_KEY],
        previous_ca_pem=decoded.get(PREVIOUS_CA_KEY) or None,
    )


def secret_body(
    material: Material, *, name: str, namespace: str, resource_version: str | None = None
) -> dict[str, Any]:
    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    data = {
        TLS_CERT_KEY: b64(material.cert_pem),
        TLS_KEY_KEY: b64(material.key_pem),
        CA_CERT_KEY: b64(material.ca_cert_pem),
        CA_KEY_KEY: b64(material.ca_key_pem),
    }
    if material.previous_ca_pem:
        data[PREVIOUS_CA_KEY] = b64(material.previous_ca_pem)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": data,
    }


async def ensure_material(
    api: ApiClient,
    *,
    namespace: str,
    name: str,
    names: Sequence[str],
    clock: Callable[[], datetime],
) -> EnsureResult:
    """Make the Secret hold valid material for `names`; return what it holds afterwards.

    Repeats the read on every 409 (AlreadyExists included). Raises `kit.kube.KubeError` on anything else (e.g. 403: the caller's
    RBAC is wrong, which a retry cannot fix).
    """
    collection = f"/api/v1/namespaces/{namespace}/secrets"
    for _ in range(MAX_ATTEMPTS):
        try:
            current_obj: dict[str, Any] | None = await get_json(api, f"{collection}/{name}")
        except NotFound:
            current_obj = None
        current = material_from_secret(current_obj.get("data") if current_obj else None)
        now = clock()
        renewal = plan_renewal(current, now=now, names=names)
        if renewal.action is Action.REUSE and current is not None:
            return EnsureResult(current, "reused", renewal.reason)
        fresh = issue(renewal, current, now=now, names=names)
        try:
            if current_obj is None:
                await post_json(api, collection, secret_body(fresh, name=name, namespace=namespace))
                return EnsureResult(fresh, "created", renewal.reason)
            resource_version = str(current_obj.get("metadata", {}).get("resourceVersion", ""))
            body = secret_body(fresh, name=name, namespace=namespace, resource_version=resource_version)
            # Keep labels and annotations others put on the Secret (e.g. Helm's or GitOps's).
            old_meta = current_obj.get("metadata", {})
            body["metadata"]["labels"] = {**(old_meta.get("labels") or {}), **body["metadata"]["labels"]}
            if old_meta.get("annotations"):
                body["metadata"]["annotations"] = old_meta["annotations"]
            await put_json(api, f"{collection}/{name}", body)
            return EnsureResult(fresh, "renewed", renewal.reason)
        except Conflict:
            log.info("secret %s/%s changed under us; reading it again", namespace, name)
            continue
    raise Conflict(
        409, "Conflict", f"secret {namespace}/{name}: still conflicting after {MAX_ATTEMPTS} attempts"
    )
