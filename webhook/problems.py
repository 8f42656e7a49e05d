"""Why a pod is denied: one `Problem` per bad value, gathered into one `Denial`.

Owns the shape of every rejection message a user reads in `kubectl` output: the field or
annotation, the bad value, why, what is allowed and where the value came from (the pod or its
Job). Does not own deciding *whether* something is wrong; callers do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# 422 = the object as written can never be admitted (fix the manifest);
# 403 = node policy forbids it (ask the operator, or stay inside the policy).
INVALID: Final = 422
FORBIDDEN: Final = 403
UNAVAILABLE: Final = 503

# Endings shared by the validating webhook and the ValidatingAdmissionPolicy (same words either way).
FROZEN_AFTER_CREATE: Final = (
    "cannot change after the pod is created (only the binder's state annotations may); "
    "delete the pod and create it again with the new values"
)
STATE_ON_NEW_POD: Final = (
    "written only by the binder, not on a new pod (a copied manifest would adopt another pod's RunPod "
    "machine); remove these annotations"
)

_REASONS: Final = {INVALID: "Invalid", FORBIDDEN: "Forbidden", UNAVAILABLE: "ServiceUnavailable"}
_MAX_VALUE_CHARS: Final = 80


def quote(value: str) -> str:
    """A value as the user wrote it, JSON-quoted (so spaces and quotes stay visible), bounded."""
    if len(value) > _MAX_VALUE_CHARS:
        value = value[: _MAX_VALUE_CHARS - 3] + "..."
    return json.dumps(value, ensure_ascii=False)


def describe_origin(job_name: str | None) -> str:
    return f"Job {job_name}" if job_name else "the pod"


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad value. `field` is an annotation key or a pod field path."""

    field: str
    value: str
    reason: str
    allowed: str
    origin: str = "the pod"
    code: int = INVALID

    def message(self) -> str:
        return f"{self.field}={quote(self.value)} on {self.origin}: {self.reason}; allowed: {self.allowed}"


class Denial(Exception):
    """The pod is rejected: `allowed: false` with `code` and `message` (never an HTTP error)."""

    def __init__(self, message: str, *, code: int = INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def reason(self) -> str:
        return _REASONS.get(self.code, "Invalid")

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> Denial:
        """All problems at once, so one round of fixes suffices; 422 wins over 403."""
        code = INVALID if any(p.code == INVALID for p in problems) else FORBIDDEN
        return cls("; ".join(p.message() for p in problems), code=code)
