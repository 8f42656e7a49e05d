"""RunPod's error bodies (RFC 9457 subset) and the one exception the sandbox raises for them.

Every refusal in the sandbox is an `ApiError`; the HTTP layer renders it as
`application/problem+json` `{"title", "status", "detail"[, "errors"]}` exactly as RunPod does
(no `type`, no `instance`, no machine-readable code). The wording of details RunPod is known to
use lives here as constants so tests and the emulator agree on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Final

__all__ = [
    "BALANCE_DETAIL",
    "CAPACITY_DETAIL",
    "PATH_NOT_FOUND_DETAIL",
    "POD_NOT_FOUND_DETAIL",
    "POOL_DENIED_DETAIL",
    "PROBLEM_JSON",
    "VALIDATION_DETAIL",
    "ApiError",
    "problem_body",
]

PROBLEM_JSON: Final = "application/problem+json"
# Observed live (notes §2.2).
CAPACITY_DETAIL: Final = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
POOL_DENIED_DETAIL: Final = "account cannot access the requested pool"
PATH_NOT_FOUND_DETAIL: Final = "The requested path was not found."
POD_NOT_FOUND_DETAIL: Final = "pod not found"
VALIDATION_DETAIL: Final = "Request validation failed."
# EMU: RunPod documents 402 only as "insufficient balance".
BALANCE_DETAIL: Final = "insufficient balance: deploying this pod needs at least one hour of credit"


class ApiError(Exception):
    """A RunPod-shaped refusal: HTTP status, human detail, optional validation errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return problem_body(self.status, self.detail, self.errors)


def problem_body(status: int, detail: str, errors: Sequence[str] | None = None) -> bytes:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    doc: dict[str, object] = {"title": title, "status": status, "detail": detail}
    if errors is not None:
        doc["errors"] = list(errors)
    return json.dumps(doc, separators=(",", ":")).encode()
