"""Outage tolerations: running pods outlive the virtual node's NotReady spells.

The node is NotReady whenever RunPod's API fails, the key is refused or no binder replica
renews the node Lease (`binder.node`). With any other Ready node in the zone, the node lifecycle
controller then taints it `node.kubernetes.io/not-ready` (or `unreachable`) with effect NoExecute,
and each pod is evicted once its toleration runs out: the DefaultTolerationSeconds admission
plugin gives every pod 300 s. Eviction frees nothing on this node (only the binder can finish a
deletion, and a RunPod pod keeps running while the binder cannot reach it); it only turns a
surviving job into a terminated one the moment the binder is back. So the mutating webhook gives
each new pod on the node its own tolerations for both taints, `tolerationSeconds` from
`--outage-toleration-seconds` (None = no limit).

What a pod already says wins: for each taint, the first toleration that tolerates it decides
(as in the taint manager). If that is exactly what DefaultTolerationSeconds writes (key, `Exists`,
`NoExecute`, and the apiserver's `--default-not-ready-toleration-seconds` /
`--default-unreachable-toleration-seconds`, 300 s unless the operator changed them: the webhook
cannot read apiserver flags, so `OutageTolerations.apiserver_default_seconds` is told; that plugin
runs before the webhooks, so nearly every pod arrives with it), it is replaced in place with ours; any other (another duration, none, a wildcard) is the user's and
is kept; when nothing tolerates the taint, ours is appended. The NoSchedule `not-ready` taint is
never tolerated: new pods wait Pending with the scheduler's reason while the node is NotReady.

Pure: a pod spec's tolerations in, JSONPatch operations out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_OUTAGE_TOLERATIONS",
    "DEFAULT_OUTAGE_TOLERATION_SECONDS",
    "OUTAGE_TAINT_KEYS",
    "PLUGIN_TOLERATION_SECONDS",
    "OutageTolerations",
    "outage_toleration_patch",
]

OUTAGE_TAINT_KEYS: Final = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
NO_EXECUTE: Final = "NoExecute"
# What the DefaultTolerationSeconds admission plugin writes unless its
# --default-*-toleration-seconds flags say otherwise.
PLUGIN_TOLERATION_SECONDS: Final = 300
# One day: past any RunPod incident, key mix-up or binder upgrade seen so far, yet a node gone
# for good still hands its pods back to their controllers (see README, "Outages").
DEFAULT_OUTAGE_TOLERATION_SECONDS: Final = 86400


@dataclass(frozen=True, slots=True)
class OutageTolerations:
    """What the webhook gives new pods (`seconds`, None = no limit), and what it replaces: the
    apiserver's own default tolerations, `apiserver_default_seconds` long."""

    seconds: int | None = DEFAULT_OUTAGE_TOLERATION_SECONDS
    apiserver_default_seconds: int = PLUGIN_TOLERATION_SECONDS


DEFAULT_OUTAGE_TOLERATIONS: Final = OutageTolerations()


def tolerates(toleration: Mapping[str, Any], *, key: str, effect: str) -> bool:
    """Does `toleration` tolerate the taint `key` (empty value) with `effect`? (core/v1 semantics)"""
    if toleration.get("effect") and toleration.get("effect") != effect:
        return False
    if toleration.get("key") and toleration.get("key") != key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and not toleration.get("value")


def is_plugin_default(toleration: Mapping[str, Any], *, key: str, seconds: int) -> bool:
    return dict(toleration) == {
        "key": key,
        "operator": "Exists",
        "effect": NO_EXECUTE,
        "tolerationSeconds": seconds,
    }


def outage_toleration(key: str, seconds: int | None) -> dict[str, Any]:
    toleration: dict[str, Any] = {"key": key, "operator": "Exists", "effect": NO_EXECUTE}
    if seconds is not None:
        toleration["tolerationSeconds"] = seconds
    return toleration


def outage_toleration_patch(tolerations: object, outage: OutageTolerations) -> list[dict[str, Any]]:
    """JSONPatch ops giving the pod (whose `spec.tolerations` is `tolerations`) our outage
    tolerations, keeping the ones it chose itself; [] when nothing changes."""
    current: Sequence[Any] = tolerations if isinstance(tolerations, list) else []
    replaced: list[dict[str, Any]] = []
    appended: list[dict[str, Any]] = []
    for key in OUTAGE_TAINT_KEYS:
        ours = outage_toleration(key, outage.seconds)
        deciding = next(
            (
                (index, t)
                for index, t in enumerate(current)
                if isinstance(t, Mapping) and tolerates(t, key=key, effect=NO_EXECUTE)
            ),
            None,
        )
        if deciding is None:
            appended.append(ours)
        elif (
            is_plugin_default(deciding[1], key=key, seconds=outage.apiserver_default_seconds)
            and deciding[1] != ours
        ):
            replaced.append({"op": "replace", "path": f"/spec/tolerations/{deciding[0]}", "value": ours})
    if not isinstance(tolerations, list):
        return [{"op": "add", "path": "/spec/tolerations", "value": appended}] if appended else []
    return replaced + [{"op": "add", "path": "/spec/tolerations/-", "value": t} for t in appended]
