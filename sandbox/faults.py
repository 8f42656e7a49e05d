"""Scripted misbehaviour: which request gets which fault (429 bursts, 5xx, timeouts, ambiguity).

Rules come from the scenario file or `POST /_sandbox/faults` at runtime. `FaultBook.match` picks
the first live rule whose route matches a request and consumes one use of it; the gateway then
acts it out. Routes are `"METHOD /v2/template"` with `{id}` placeholders (`"DELETE
/v2/pods/{id}"`), a `*` method (`"* /v2/pods/{id}"`) or `"*"` for everything under /v2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sandbox.scenario import FaultRule

__all__ = ["ROUTE_TEMPLATES", "FaultBook", "route_template"]

# The /v2 routes the sandbox serves, most specific first.
ROUTE_TEMPLATES: Final = (
    "/v2/pods/{id}/logs",
    "/v2/pods/{id}/action",
    "/v2/pods/{id}",
    "/v2/pods",
    "/v2/catalog/gpus/{id}",
    "/v2/catalog/gpus",
    "/v2/catalog/cpus/{id}",
    "/v2/catalog/cpus",
    "/v2/catalog/datacenters",
    "/v2/registries/{id}",
    "/v2/registries",
    "/v2/network-volumes/{id}",
    "/v2/network-volumes",
)
_PATTERNS: Final = tuple(
    (re.compile("^" + re.escape(t).replace(re.escape("{id}"), "[^/]+") + "$"), t) for t in ROUTE_TEMPLATES
)


def route_template(path: str) -> str:
    """`/v2/pods/abc/logs` -> `/v2/pods/{id}/logs`; unknown paths map to themselves."""
    for pattern, template in _PATTERNS:
        if pattern.match(path):
            return template
    return path


@dataclass
class _Live:
    rule: FaultRule
    seen: int = 0
    used: int = 0


def _matches(rule_route: str, method: str, template: str) -> bool:
    if rule_route.strip() == "*":
        return True
    rule_method, _, rule_path = rule_route.strip().partition(" ")
    return rule_method.upper() in ("*", method.upper()) and rule_path.strip() == template


class FaultBook:
    def __init__(self, rules: Sequence[FaultRule] = ()) -> None:
        self._live = [_Live(rule) for rule in rules]

    def add(self, rule: FaultRule) -> None:
        self._live.append(_Live(rule))

    def clear(self) -> None:
        self._live.clear()

    def rules(self) -> list[dict[str, object]]:
        return [
            {**live.rule.model_dump(by_alias=True), "used": live.used}
            for live in self._live
            if live.rule.count is None or live.used < live.rule.count
        ]

    def match(self, method: str, path: str, *, kinds: frozenset[str] | None = None) -> FaultRule | None:
        """The fault for this request, consuming one use; None = behave."""
        template = route_template(path)
        for live in self._live:
            rule = live.rule
            if kinds is not None and rule.kind not in kinds:
                continue
            if rule.count is not None and live.used >= rule.count:
                continue
            if not _matches(rule.route, method, template):
                continue
            live.seen += 1
            if live.seen <= rule.skip:
                continue
            live.used += 1
            return rule
        return None
