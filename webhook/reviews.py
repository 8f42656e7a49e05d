"""AdmissionReview v1 on the wire: parse a request body once, render a response exactly.

Owns the boundary between bytes and the decision: `parse_review` turns a body into an
`AdmissionRequest` or raises `MalformedReview` (the HTTP layer answers 400 with its message);
`render_review` turns a `Verdict` into the response document (same `uid`, `patchType: JSONPatch`
with a base64 patch only when there is one, warnings within the apiserver's limits). JSON
pointer escaping (`~` -> `~0`, `/` -> `~1`) lives here too.

Does not own any admission decision (`admission`) or HTTP (`app`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
# The apiserver turns warnings into HTTP Warning headers: each should stay within 120 characters,
# and past 4096 in total it truncates them all; stay well inside both.
MAX_WARNING_CHARS: Final = 120
MAX_WARNINGS_TOTAL_CHARS: Final = 4000


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 we can answer; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    uid: str
    operation: str
    namespace: str
    name: str
    kind: str
    sub_resource: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool = False

    @property
    def is_pod(self) -> bool:
        return self.kind == "Pod" and not self.sub_resource


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    code: int | None = None
    reason: str | None = None
    message: str | None = None
    patch: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default=())


def parse_review(body: bytes) -> AdmissionRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedReview(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedReview("body must be a JSON object (an AdmissionReview)")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise MalformedReview(
            f"expected apiVersion {API_VERSION} and kind {KIND}, got "
            f"{_short(doc.get('apiVersion'))} and {_short(doc.get('kind'))}"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid must be a non-empty string")
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation must be one of {', '.join(sorted(OPERATIONS))}")
    obj = _optional_object(request, "object")
    old = _optional_object(request, "oldObject")
    kind = request.get("kind")
    if kind is None:
        # The apiserver always sends it; a hand-made review may not, so go by what it carries.
        kind_name = _infer_kind(request, obj)
    else:
        named = kind.get("kind") if isinstance(kind, dict) else None
        if not isinstance(named, str):
            raise MalformedReview("request.kind.kind must be a string")
        kind_name = named
    if kind_name == "Pod":
        if operation in ("CREATE", "UPDATE") and obj is None:
            raise MalformedReview(f"request.object is required for a Pod {operation}")
        if operation == "UPDATE" and old is None:
            raise MalformedReview("request.oldObject is required for a Pod UPDATE")
        for label, pod in (("object", obj), ("oldObject", old)):
            if pod is not None:
                _check_pod_shape(pod, label)
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        namespace=_string(request, "namespace"),
        name=_string(request, "name"),
        kind=kind_name,
        sub_resource=_string(request, "subResource"),
        object=obj,
        old_object=old,
        dry_run=request.get("dryRun") is True,
    )


def annotations_of(pod: Mapping[str, Any] | None) -> dict[str, str]:
    """The pod's annotations; shape already checked by `parse_review`."""
    if pod is None:
        return {}
    metadata = pod.get("metadata") or {}
    return dict(metadata.get("annotations") or {})


def render_review(uid: str, verdict: Verdict) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {
            "code": verdict.code or 403,
            "reason": verdict.reason or "Forbidden",
            "message": verdict.message or "denied",
        }
    elif verdict.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(verdict.patch))).decode()
    warnings = clean_warnings(verdict.warnings)
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def clean_warnings(warnings: Iterable[str]) -> list[str]:
    """Deduplicated, each at most 120 characters, in total well under the apiserver's limit."""
    kept: list[str] = []
    total = 0
    for text in warnings:
        line = " ".join(text.split())
        if len(line) > MAX_WARNING_CHARS:
            line = line[: MAX_WARNING_CHARS - 3] + "..."
        if not line or line in kept:
            continue
        if total + len(line) > MAX_WARNINGS_TOTAL_CHARS:
            break
        kept.append(line)
        total += len(line)
    return kept


def escape_pointer(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901): `~` first, then `/`."""
    return token.replace("~", "~0").replace("/", "~1")


def _optional_object(request: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedReview(f"request.{key} must be an object")
    return value


def _check_pod_shape(pod: Mapping[str, Any], label: str) -> None:
    metadata = pod.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedReview(f"request.{label}.metadata must be an object")
    annotations = (metadata or {}).get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise MalformedReview(f"request.{label}.metadata.annotations must be a map of strings")
    spec = pod.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise MalformedReview(f"request.{label}.spec must be an object")
    if spec is not None:
        for key in ("containers", "initContainers", "tolerations"):
            if spec.get(key) is not None and not isinstance(spec[key], list):
                raise MalformedReview(f"request.{label}.spec.{key} must be a list")


def _infer_kind(request: Mapping[str, Any], obj: Mapping[str, Any] | None) -> str:
    if obj is not None and isinstance(obj.get("kind"), str):
        return str(obj["kind"])
    resource = request.get("resource")
    if isinstance(resource, dict) and resource.get("resource") == "pods":
        return "Pod"
    return ""


def _string(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key)
    return value if isinstance(value, str) else ""


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
