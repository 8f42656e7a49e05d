"""Kubernetes resource quantities (`"500m"`, `"16Gi"`, `2`) as plain numbers.

Shared by the webhook (a CPU pod's vCPU and memory needs at admission) and the binder (what a
pod declares, for `kubectl top`). Lenient like the readers that use it: a quantity that cannot be
read is None, never an exception. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["GIB", "parse_cpu", "parse_memory"]

GIB: Final = 2**30
_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_cpu(quantity: Any) -> float | None:
    """A Kubernetes CPU quantity in cores (`"500m"` -> 0.5, `2` -> 2.0); None if unparsable."""
    return _quantity(quantity)


def parse_memory(quantity: Any) -> float | None:
    """A Kubernetes memory quantity in bytes (`"16Gi"`, `"1G"`, `"128974848"`)."""
    return _quantity(quantity)


def _quantity(quantity: Any) -> float | None:
    if isinstance(quantity, int | float) and not isinstance(quantity, bool):
        return float(quantity) if quantity >= 0 else None
    if not isinstance(quantity, str) or not quantity.strip():
        return None
    text = quantity.strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return _number(text[: -len(suffix)], factor)
    if text[-1] in _DECIMAL:
        return _number(text[:-1], _DECIMAL[text[-1]])
    return _number(text, 1.0)


def _number(text: str, factor: float) -> float | None:
    try:
        value = float(text) * factor
    except ValueError:
        return None
    return value if value >= 0 else None
