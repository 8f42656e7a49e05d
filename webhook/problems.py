"""Why a pod is denied: one `Problem` per bad value, gathered into one `Denial`.

Owns the shape of every rejection message a user reads in `kubectl` output: the field or
annotation, the bad value, why, what is allowed and where the value came from (the pod or its
Job). Does not own deciding *whether* something is wrong; callers do.

Messages stay readable whatever the input (a 500-id annotation, a 10,000-character value, a
thousand unknown keys): a value is quoted by a short prefix with its length, a list by its first
`MAX_LISTED` items and a count of the rest ("and 495 more"), each part of a problem is clipped,
a denial lists at most `MAX_LISTED` problems and counts the others, and as a last resort every
`Denial` message is cut at `MAX_MESSAGE_CHARS`. What is shown always names the field and what
is allowed, so the message stays actionable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
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
# Items of a list value, and problems of a denial, shown before "and N more".
MAX_LISTED: Final = 5
# Every denial message is at most this long (the bounds below keep real ones well inside it).
MAX_MESSAGE_CHARS: Final = 2000
_MAX_VALUE_CHARS: Final = 80
_MAX_ITEM_CHARS: Final = 64
_MAX_FIELD_CHARS: Final = 120
_MAX_TEXT_CHARS: Final = 400
# Up to this many bad items of one list get a problem each (with its own "did you mean").
_PER_ITEM: Final = 3
# Room kept at the end of a denial for "; and N more problems".
_COUNT_RESERVE: Final = 40


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(value: str, *, limit: int = _MAX_VALUE_CHARS) -> str:
    """A value as the user wrote it, JSON-quoted (so spaces and quotes stay visible), bounded:
    a long value shows its start and how long it is."""
    if len(value) <= limit:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(clip(value, limit), ensure_ascii=False) + f" ({len(value):,} characters)"


def quote_items(items: Sequence[str], *, limit: int = MAX_LISTED) -> str:
    """`"a", "b", "c"` or, past `limit` items, `"a", ..., "e" and 495 more`."""
    shown = ", ".join(quote(item, limit=_MAX_ITEM_CHARS) for item in items[:limit])
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def name_items(items: Sequence[str], *, limit: int = MAX_LISTED) -> str:
    """Names, comma-separated: `a, b, c` or, past `limit` items, `a, b, c, d, e and 7 more`."""
    shown = ", ".join(clip(item, _MAX_ITEM_CHARS) for item in items[:limit])
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def bound_message(text: str) -> str:
    """The last resort: any message longer than `MAX_MESSAGE_CHARS` is cut, saying how much."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    tail = f"... ({len(text) - MAX_MESSAGE_CHARS:,} more characters not shown)"
    return text[: MAX_MESSAGE_CHARS - len(tail)] + tail


def describe_origin(job_name: str | None) -> str:
    return f"Job {job_name}" if job_name else "the pod"


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad value. `field` is an annotation key or a pod field path; `values`, when given,
    are the bad items of a list value, shown instead of `value` (first few, then a count)."""

    field: str
    value: str
    reason: str
    allowed: str
    origin: str = "the pod"
    code: int = INVALID
    values: tuple[str, ...] = ()

    def message(self) -> str:
        shown = quote_items(self.values) if self.values else quote(self.value)
        return (
            f"{clip(self.field, _MAX_FIELD_CHARS)}={shown} on {clip(self.origin, _MAX_FIELD_CHARS)}: "
            f"{clip(self.reason, _MAX_TEXT_CHARS)}; allowed: {clip(self.allowed, _MAX_TEXT_CHARS)}"
        )


def item_problems(
    *,
    field: str,
    items: Sequence[str],
    reason: Callable[[str], str],
    reason_for_all: str,
    allowed: str,
    origin: str,
    code: int = INVALID,
) -> list[Problem]:
    """Bad items of one list value: a problem each while they are few (each with its own
    `reason`, e.g. a "did you mean"), else one problem listing them under `reason_for_all`."""
    if len(items) <= _PER_ITEM:
        return [
            Problem(field=field, value=item, reason=reason(item), allowed=allowed, origin=origin, code=code)
            for item in items
        ]
    return [
        Problem(
            field=field,
            value=",".join(items[:MAX_LISTED]),
            values=tuple(items),
            reason=reason_for_all,
            allowed=allowed,
            origin=origin,
            code=code,
        )
    ]


class Denial(Exception):
    """The pod is rejected: `allowed: false` with `code` and `message` (never an HTTP error)."""

    def __init__(self, message: str, *, code: int = INVALID) -> None:
        message = bound_message(message)
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def reason(self) -> str:
        return _REASONS.get(self.code, "Invalid")

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> Denial:
        """All problems at once, so one round of fixes suffices (past `MAX_LISTED`, the first
        ones and a count of the rest); 422 wins over 403."""
        code = INVALID if any(p.code == INVALID for p in problems) else FORBIDDEN
        shown: list[str] = []
        used = 0
        for problem in problems[:MAX_LISTED]:
            text = problem.message()
            if shown and used + len(text) + 2 > MAX_MESSAGE_CHARS - _COUNT_RESERVE:
                break
            shown.append(text)
            used += len(text) + 2
        left = len(problems) - len(shown)
        return cls("; ".join(shown) + (f"; and {left:,} more problems" if left else ""), code=code)
