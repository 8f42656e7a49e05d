"""Every way a RunPod call can fail, as one exception tree, and the mapping from an HTTP answer.

Callers choose what happens next by type, never by matching message text::

    RunPodError                      .status (int | None), .detail (no secrets), .retryable
    ├── RunPodAuthError              401: missing, bad or expired key; stop and alert
    ├── RunPodPaymentRequired        402: balance too low; stop all creates
    ├── RunPodForbidden              403: no access ("cannot access the requested pool") or the
    │                                     Cloudflare block `error code: 1010` (.is_cloudflare)
    ├── RunPodNotFound               404
    ├── RunPodConflict               409: action invalid for the status, cluster member
    ├── RunPodBadRequest             400: no capacity (.is_capacity) or a cross-field rule
    ├── RunPodUnprocessable          422: schema violation, .errors lists each; never retried
    ├── RunPodRateLimited            429 (or the client's own pacing refused to wait so long);
    │                                     .retry_after seconds
    ├── RunPodServerError            5xx: transient; on a create the pod may exist
    │   └── RunPodProtocolError      a 2xx answer the client could not read (same ambiguity)
    └── RunPodTimeout                timeout or connection loss; the request may have been applied

`.retryable` says whether sending the same request again later may succeed (after
`.retry_after` where given). It does not say the retry is safe: a create is never safe to repeat
blindly after a 5xx or timeout (see `RunPodClient.create_pod_safely`).

This module owns the translation of a RunPod error answer (problem+json, text/plain, HTML or
empty) into one of these types. It does not own HTTP or retries (`client`), nor rate-limit
bookkeeping (`ratelimit`). Messages carry RunPod's `detail` only after `scrub` removed the API
key and bearer tokens, truncated to a readable length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from runpod_api.ratelimit import parse_structured_list

__all__ = [
    "RunPodAuthError",
    "RunPodBadRequest",
    "RunPodConflict",
    "RunPodError",
    "RunPodForbidden",
    "RunPodNotFound",
    "RunPodPaymentRequired",
    "RunPodProtocolError",
    "RunPodRateLimited",
    "RunPodServerError",
    "RunPodTimeout",
    "RunPodUnprocessable",
    "error_from_response",
    "scrub",
]

MAX_DETAIL_CHARS: Final = 300
_BEARER: Final = re.compile(r"(?i)(bearer\s+)\S+")
# RunPod has no machine-readable code for "no capacity"; these phrases are what it says (notes §2.2).
_CAPACITY_HINTS: Final = (
    "no longer any instances available",
    "no instances available",
    "not enough capacity",
    "insufficient capacity",
    "no capacity",
    "out of stock",
    "no available",
)
_CLOUDFLARE_1010: Final = re.compile(r"error code:\s*1010")


def scrub(text: str, *, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret and bearer token masked, whitespace folded, truncated."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = " ".join(text.split())
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 1] + "…"
    return text


class RunPodError(Exception):
    """Base of every error the RunPod client raises; no foreign exception type leaves the client."""

    retryable: bool = False

    def __init__(self, detail: str, *, status: int | None = None, retryable: bool | None = None) -> None:
        self.detail = detail
        self.status = status
        if retryable is not None:
            self.retryable = retryable
        super().__init__(detail)

    def __str__(self) -> str:
        prefix = f"RunPod {self.status}: " if self.status is not None else "RunPod: "
        return prefix + self.detail


class RunPodAuthError(RunPodError):
    """401: the API key is missing, wrong, expired or not yet allowed (v2 allowlist)."""


class RunPodPaymentRequired(RunPodError):
    """402: the account balance cannot pay for the pod; every create will fail until topped up."""


class RunPodForbidden(RunPodError):
    """403: no access to the resource or GPU pool; or Cloudflare refused the client (1010)."""

    def __init__(self, detail: str, *, status: int | None = 403, is_cloudflare: bool = False) -> None:
        super().__init__(detail, status=status)
        self.is_cloudflare = is_cloudflare


class RunPodNotFound(RunPodError):
    """404: absent, not this account's, or already terminated."""


class RunPodConflict(RunPodError):
    """409: the action is not valid in the pod's current status, or the pod is a cluster member."""


class RunPodBadRequest(RunPodError):
    """400: a valid body RunPod refused: no capacity (`is_capacity`) or a cross-field rule."""

    def __init__(self, detail: str, *, status: int | None = 400, is_capacity: bool = False) -> None:
        # Capacity comes back; a broken rule does not.
        super().__init__(detail, status=status, retryable=is_capacity)
        self.is_capacity = is_capacity


class RunPodUnprocessable(RunPodError):
    """422: the request violates RunPod's schema; `errors` lists each violation. Never retried."""

    def __init__(self, detail: str, *, status: int | None = 422, errors: list[str] | None = None) -> None:
        super().__init__(detail, status=status, retryable=False)
        self.errors: list[str] = list(errors or [])


class RunPodRateLimited(RunPodError):
    """429, or the client's pacing would have to wait longer than allowed; wait `retry_after` s."""

    retryable = True

    def __init__(self, detail: str, *, status: int | None = 429, retry_after: float = 1.0) -> None:
        super().__init__(detail, status=status)
        self.retry_after = retry_after


class RunPodServerError(RunPodError):
    """5xx: transient upstream failure. After a create, the pod may nevertheless exist."""

    retryable = True


class RunPodProtocolError(RunPodServerError):
    """A 2xx answer whose body could not be read; as ambiguous as a 5xx."""


class RunPodTimeout(RunPodError):
    """No (complete) answer: timeout or connection loss. The request may have been applied."""

    retryable = True


def _parse_problem(body: str) -> tuple[str | None, list[str]]:
    """(detail, errors[]) from a problem+json body, leniently; (None, []) if it is not one."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, []
    if not isinstance(data, Mapping):
        return None, []
    errors: list[str] = []
    raw_errors = data.get("errors")
    if isinstance(raw_errors, list):
        for item in raw_errors:
            if isinstance(item, str):
                errors.append(item)
            elif isinstance(item, Mapping):
                text = item.get("message") or item.get("detail") or item.get("msg")
                location = item.get("location") or item.get("path") or item.get("loc")
                if text is not None:
                    errors.append(f"{location}: {text}" if location else str(text))
                else:
                    errors.append(json.dumps(item, sort_keys=True))
            elif item is not None:
                errors.append(str(item))
    detail = data.get("detail") or data.get("message") or data.get("error") or data.get("title")
    return (str(detail) if detail is not None else None), errors


def _retry_after(headers: Mapping[str, str]) -> float:
    """Seconds to wait after a 429: max(`Retry-After`, reset of every exhausted window), ≥ 1."""
    wait = 0.0
    raw = headers.get("retry-after")
    if raw:
        try:
            wait = max(wait, float(raw.strip()))
        except ValueError:
            wait = max(wait, 1.0)  # an HTTP-date: rare; waiting a little is the safe reading
    for params in parse_structured_list(headers.get("ratelimit", "")).values():
        remaining, reset = params.get("r"), params.get("t")
        if remaining is not None and reset is not None and remaining <= 0:
            wait = max(wait, reset)
    return wait if wait > 0 else 1.0


def error_from_response(
    *,
    status: int,
    headers: Mapping[str, str],
    body: str,
    secrets: Iterable[str] = (),
) -> RunPodError:
    """The typed error for a non-2xx RunPod answer. `headers` must be case-insensitive lower keys."""
    secrets = tuple(secrets)
    content_type = headers.get("content-type", "")
    detail, errors = (
        _parse_problem(body) if "json" in content_type or body.lstrip()[:1] == "{" else (None, [])
    )
    if detail is None:
        # text/plain (Cloudflare), HTML gateway pages, or empty bodies.
        detail = (
            body if body.strip() and "html" not in content_type else f"HTTP {status} without a readable body"
        )
    detail = scrub(detail, secrets=secrets)
    errors = [scrub(e, secrets=secrets) for e in errors]
    if status == 400:
        lowered = detail.lower()
        return RunPodBadRequest(detail, is_capacity=any(h in lowered for h in _CAPACITY_HINTS))
    if status == 401:
        return RunPodAuthError(detail, status=status)
    if status == 402:
        return RunPodPaymentRequired(detail, status=status)
    if status == 403:
        if _CLOUDFLARE_1010.search(body):
            return RunPodForbidden(
                f"{detail} (Cloudflare refused the client; the User-Agent is probably blocked)",
                is_cloudflare=True,
            )
        return RunPodForbidden(detail)
    if status == 404:
        return RunPodNotFound(detail, status=status)
    if status == 408:
        return RunPodTimeout(detail, status=status)
    if status == 409:
        return RunPodConflict(detail, status=status)
    if status == 422:
        shown = f"{detail}: {'; '.join(errors)}" if errors else detail
        return RunPodUnprocessable(scrub(shown, secrets=secrets), errors=errors)
    if status == 429:
        return RunPodRateLimited(detail, retry_after=_retry_after(headers))
    if status >= 500:
        return RunPodServerError(detail, status=status)
    return RunPodError(detail, status=status)
