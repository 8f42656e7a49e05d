"""Who may call the kubelet API, decided as the kubelet decides it.

Authentication: a client certificate the TLS layer verified against `kubelet_client_ca_file`
(user = CN, groups = O, as the apiserver's x509 authenticator does), else a bearer token the
apiserver vouches for through a TokenReview. Nothing else: anonymous callers get 401.

Authorisation: a SubjectAccessReview for the node itself, like the kubelet's webhook mode —
resource `nodes`, name = the node, verb from the HTTP method, and the subresource from the
path. The kubelet asks `nodes/log` for `/logs/` and `nodes/proxy` for everything else,
container logs included; this node serves nothing but container logs, so holding either
`nodes/log` or `nodes/proxy` is enough to read them. Denied → 403.

Pure decisions (`identity_from_certificate`, `access_checks`, `subject_access_review_body`,
`forbidden_message`) are plain functions; `KubeAuth` does the two API calls and caches their
answers (2 min for tokens, 5 min for allowed and 30 s for denied reviews: the kubelet's
defaults) with an injected clock.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient

from kit.kube import KubeError, post_json

__all__ = [
    "AccessCheck",
    "AuthError",
    "Identity",
    "KubeAuth",
    "access_checks",
    "forbidden_message",
    "identity_from_certificate",
    "subject_access_review_body",
]

log = logging.getLogger(__name__)

AUTHENTICATED_GROUP: Final = "system:authenticated"
TOKEN_TTL: Final = 120.0
ALLOWED_TTL: Final = 300.0
DENIED_TTL: Final = 30.0
CACHE_SIZE: Final = 1024
_VERBS: Final = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


class AuthError(Exception):
    """The apiserver could not answer a review (not a denial): the kubelet answers 401/500."""


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    via: str = "token"  # "certificate" or "token", for logs


@dataclass(frozen=True, slots=True)
class AccessCheck:
    """One SubjectAccessReview's resource attributes."""

    verb: str
    node: str
    subresource: str


def identity_from_certificate(peercert: Mapping[str, Any]) -> Identity | None:
    """The user of a verified client certificate (`ssl.SSLSocket.getpeercert()` form).

    None when the certificate names no CN: such a certificate authenticates nobody.
    """
    common_name: str | None = None
    organisations: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and common_name is None:
                common_name = str(value)
            elif key == "organizationName":
                organisations.append(str(value))
    if not common_name:
        return None
    return Identity(
        user=common_name,
        groups=(*organisations, AUTHENTICATED_GROUP),
        via="certificate",
    )


def identity_from_token_review(review: Mapping[str, Any]) -> Identity | None:
    """The user of an authenticated TokenReview answer (raw dict), else None."""
    status: Mapping[str, Any] = review.get("status") or {}
    user: Mapping[str, Any] = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        return None
    groups = [str(g) for g in user.get("groups") or []]
    if AUTHENTICATED_GROUP not in groups:
        groups.append(AUTHENTICATED_GROUP)
    extra = tuple(
        sorted(
            (str(key), tuple(str(v) for v in values or ()))
            for key, values in (user.get("extra") or {}).items()
        )
    )
    return Identity(
        user=str(user["username"]),
        groups=tuple(groups),
        uid=str(user.get("uid") or ""),
        extra=extra,
        via="token",
    )


def access_checks(*, method: str, path: str, node: str) -> list[AccessCheck]:
    """The reviews of which one must allow the request, in the order they are asked."""
    verb = _VERBS.get(method.upper(), method.lower())
    if path.startswith("/containerLogs/"):
        subresources: Sequence[str] = ("log", "proxy")
    elif path.startswith("/logs/") or path == "/logs":
        subresources = ("log",)
    elif path.startswith("/stats"):
        subresources = ("stats",)
    elif path.startswith("/metrics"):
        subresources = ("metrics",)
    else:
        subresources = ("proxy",)
    return [AccessCheck(verb=verb, node=node, subresource=sub) for sub in subresources]


def subject_access_review_body(identity: Identity, check: AccessCheck) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "user": identity.user,
        "groups": list(identity.groups),
        "resourceAttributes": {
            "verb": check.verb,
            "group": "",
            "version": "v1",
            "resource": "nodes",
            "subresource": check.subresource,
            "name": check.node,
        },
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {key: list(values) for key, values in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def forbidden_message(identity: Identity, checks: Sequence[AccessCheck]) -> str:
    """The kubelet's wording, so people recognise it."""
    verb = checks[0].verb if checks else "get"
    subs = " ".join(check.subresource for check in checks)
    return f"Forbidden (user={identity.user}, verb={verb}, resource=nodes, subresource(s)=[{subs}])"


@dataclass(slots=True)
class _TtlCache:
    clock: Callable[[], float]
    entries: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> tuple[bool, Any]:
        hit = self.entries.get(key)
        if hit is None:
            return False, None
        expires, value = hit
        if expires <= self.clock():
            del self.entries[key]
            return False, None
        return True, value

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if len(self.entries) >= CACHE_SIZE:
            now = self.clock()
            for stale in [k for k, (exp, _) in self.entries.items() if exp <= now]:
                del self.entries[stale]
            if len(self.entries) >= CACHE_SIZE:
                self.entries.pop(next(iter(self.entries)))
        self.entries[key] = (self.clock() + ttl, value)


class KubeAuth:
    """TokenReview and SubjectAccessReview through the binder's API client, cached.

    May block on the apiserver (one call per cache miss). Raises `AuthError` when the apiserver
    does not answer; a denial is a normal `False`/`None` answer.
    """

    def __init__(self, *, api: ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._tokens = _TtlCache(clock)
        self._reviews = _TtlCache(clock)

    async def authenticate_token(self, token: str) -> Identity | None:
        # Cache by digest: the token itself never sits in memory longer than the request.
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, cached = self._tokens.get(key)
        if hit:
            return cached  # type: ignore[no-any-return]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            review = await post_json(self._api, "/apis/authentication.k8s.io/v1/tokenreviews", body)
        except KubeError as exc:
            # The answer could echo the token: keep only the status.
            raise AuthError(f"TokenReview failed: HTTP {exc.status} {exc.reason}") from None
        identity = identity_from_token_review(review)
        self._tokens.put(key, identity, TOKEN_TTL)
        return identity

    async def authorize(self, identity: Identity, check: AccessCheck) -> bool:
        key = (identity, check)
        hit, cached = self._reviews.get(key)
        if hit:
            return bool(cached)
        try:
            review = await post_json(
                self._api,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                subject_access_review_body(identity, check),
            )
        except KubeError as exc:
            raise AuthError(f"SubjectAccessReview failed: HTTP {exc.status} {exc.reason}") from exc
        allowed = bool((review.get("status") or {}).get("allowed"))
        self._reviews.put(key, allowed, ALLOWED_TTL if allowed else DENIED_TTL)
        return allowed

    async def authorize_any(self, identity: Identity, checks: Sequence[AccessCheck]) -> bool:
        for check in checks:
            if await self.authorize(identity, check):
                return True
        return False
