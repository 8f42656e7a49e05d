"""Make both webhook configurations trust the webhook's CA (`caBundle`), race-safely.

Owns: `inject_ca_bundle`, a read -> modify -> PUT-with-resourceVersion loop over each named
MutatingWebhookConfiguration / ValidatingWebhookConfiguration, and the pure `with_ca_bundle`
that rewrites one configuration. A configuration already carrying the bundle is left untouched
(no write, no resourceVersion churn), so a second run is a no-op.

Does not own: the material (`certs.secret_store`). The chart renders the configurations without
`caBundle`, so Helm's merge on upgrade keeps what this module wrote.

`failure_policy` is optional: the chart ships `Fail` directly (see values.yaml for why) and does
not pass it, but the flag exists for installs that prefer "Ignore until the cert exists".
"""

from __future__ import annotations

import base64
import copy
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from kubernetes_asyncio.client import ApiClient

from kit.kube import Conflict, NotFound, get_json, put_json

__all__ = ["ConfigKind", "InjectionResult", "inject_ca_bundle", "with_ca_bundle"]

log = logging.getLogger(__name__)

FailurePolicy = Literal["Fail", "Ignore"]
MAX_ATTEMPTS: Final = 6
_API: Final = "/apis/admissionregistration.k8s.io/v1"


class ConfigKind(enum.Enum):
    MUTATING = "mutatingwebhookconfigurations"
    VALIDATING = "validatingwebhookconfigurations"


@dataclass(frozen=True)
class InjectionResult:
    kind: ConfigKind
    name: str
    # "patched", "unchanged" or "missing" (only when missing configurations are allowed).
    outcome: str


def with_ca_bundle(
    config: dict[str, Any], *, ca_bundle: bytes, failure_policy: FailurePolicy | None = None
) -> dict[str, Any] | None:
    """The configuration with `caBundle` (and optionally `failurePolicy`) on every webhook.

    Returns None when nothing would change, so the caller skips the write.
    """
    encoded = base64.b64encode(ca_bundle).decode("ascii")
    updated = copy.deepcopy(config)
    changed = False
    for webhook in updated.get("webhooks") or []:
        client_config = webhook.setdefault("clientConfig", {})
        if client_config.get("caBundle") != encoded:
            client_config["caBundle"] = encoded
            changed = True
        if failure_policy is not None and webhook.get("failurePolicy") != failure_policy:
            webhook["failurePolicy"] = failure_policy
            changed = True
    return updated if changed else None


async def inject_ca_bundle(
    api: ApiClient,
    *,
    names: Sequence[str],
    ca_bundle: bytes,
    failure_policy: FailurePolicy | None = None,
    allow_missing: bool = False,
) -> list[InjectionResult]:
    """Patch every configuration of either kind named in `names`.

    A name must exist as at least one kind; a name found as neither raises NotFound unless
    `allow_missing` (the pre-install hook runs before Helm has created them).
    """
    results: list[InjectionResult] = []
    for name in names:
        found = False
        for kind in ConfigKind:
            outcome = await _inject_one(api, kind=kind, name=name, ca_bundle=ca_bundle, policy=failure_policy)
            if outcome is not None:
                found = True
                results.append(InjectionResult(kind, name, outcome))
        if not found:
            if not allow_missing:
                raise NotFound(
                    404, "NotFound", f"no webhook configuration named {name!r} (mutating or validating)"
                )
            results.append(InjectionResult(ConfigKind.MUTATING, name, "missing"))
    return results


async def _inject_one(
    api: ApiClient, *, kind: ConfigKind, name: str, ca_bundle: bytes, policy: FailurePolicy | None
) -> str | None:
    path = f"{_API}/{kind.value}/{name}"
    for _ in range(MAX_ATTEMPTS):
        try:
            current = await get_json(api, path)
        except NotFound:
            return None
        updated = with_ca_bundle(current, ca_bundle=ca_bundle, failure_policy=policy)
        if updated is None:
            return "unchanged"
        # The GET's resourceVersion stays in `updated`: a concurrent writer makes this PUT a 409.
        try:
            await put_json(api, path, updated)
        except Conflict:
            log.info("%s %s changed under us; reading it again", kind.value, name)
            continue
        return "patched"
    raise Conflict(409, "Conflict", f"{kind.value}/{name}: still conflicting after {MAX_ATTEMPTS} attempts")
