"""The virtual node: its object, its conditions, and the one loop that writes its status.

Owns: the Node object this binder presents (labels, taint, providerID, capacity, addresses,
daemon endpoint, nodeInfo), the condition set and its transitions, the RunPod health probe that
decides `Ready`, and `NodeStatusLoop`, the only writer of `nodes/status`. Does not own: the
heartbeat Lease (`leasing`, which renews only after this loop's clean push), pods, the catalog.

`Ready` is honest: True only while RunPod answers a cheap authenticated call
(`GET /v2/catalog/datacenters`) with valid credentials; otherwise False with a reason a person can
act on (`RunPodUnauthorized`, `RunPodForbidden`, `RunPodUnreachable`, ...) so the scheduler stops
sending pods. The probe runs once per status tick, never on a pod's hot path.

Decisions are pure (`build_node`, `build_node_status`, `classify_probe`, `next_conditions`);
`NodeStatusLoop` gathers inputs, calls them and writes once per tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from prometheus_client import Gauge

from binder.settings import BinderSettings
from contract.policy import (
    GPU_RESOURCE,
    NODE_TYPE_LABEL,
    NODE_TYPE_VALUE,
    TAINT_EFFECT,
    TAINT_KEY,
    TAINT_VALUE,
)
from kit.kube import MERGE_PATCH, KubeError, get_json, patch_json, post_json
from runpod_api.errors import (
    RunPodAuthError,
    RunPodError,
    RunPodForbidden,
    RunPodRateLimited,
    RunPodServerError,
    RunPodTimeout,
)
from runpod_kubelet import __version__

__all__ = [
    "NODE_STATUS_INTERVAL",
    "NodeStatusLoop",
    "RunPodHealth",
    "build_node",
    "build_node_status",
    "classify_probe",
    "next_conditions",
    "provider_id",
]

log = logging.getLogger(__name__)

# Virtual Kubelet pings every 10 s; the real kubelet reports status every 10 s.
NODE_STATUS_INTERVAL: Final = 10.0
# A probe that takes longer than this counts as RunPod being unreachable for this tick.
PROBE_TIMEOUT: Final = 20.0
_DETAIL_MAX: Final = 200

NODE_READY = Gauge("runpod_kubelet_node_ready", "1 while the virtual node reports Ready=True")

CONDITION_TYPES: Final = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")

# The pressure conditions describe a machine this node does not have; they are constant, so the
# scheduler's node-pressure filters never keep pods off it.
_STATIC_CONDITIONS: Final[Mapping[str, tuple[str, str, str]]] = {
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "virtual node: memory is provided by RunPod"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "virtual node: disk is provided by RunPod"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "virtual node: processes run on RunPod"),
    "NetworkUnavailable": ("False", "RouteCreated", "virtual node: networking is provided by RunPod"),
}


@dataclass(frozen=True)
class RunPodHealth:
    """What the last probe said about RunPod: healthy, or why not (reason is CamelCase)."""

    ok: bool
    reason: str
    message: str


HEALTHY: Final = RunPodHealth(ok=True, reason="KubeletReady", message="RunPod answers with valid credentials")


def provider_id(*, cluster_id: str, node_name: str) -> str:
    return f"runpod://{cluster_id}/{node_name}"


def node_labels(node_name: str) -> dict[str, str]:
    return {
        NODE_TYPE_LABEL: NODE_TYPE_VALUE,
        "kubernetes.io/role": "agent",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node_name,
        "node.kubernetes.io/exclude-from-external-load-balancers": "true",
    }


def node_taint() -> dict[str, str]:
    return {"key": TAINT_KEY, "value": TAINT_VALUE, "effect": TAINT_EFFECT}


def build_node(*, settings: BinderSettings, cluster_id: str) -> dict[str, Any]:
    """The Node as the binder registers it (metadata + spec; status comes from the loop)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": settings.node_name, "labels": node_labels(settings.node_name)},
        "spec": {
            "taints": [node_taint()],
            "providerID": provider_id(cluster_id=cluster_id, node_name=settings.node_name),
        },
    }


def adoption_patch(*, existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """Merge patch that makes an existing Node carry our labels, taint and providerID.

    Foreign labels and taints stay (an operator may cordon or label the node). providerID is
    immutable once set, so a different one is left alone (`register_node` logs it). None = nothing
    to change.
    """
    patch: dict[str, Any] = {}
    labels = existing.get("metadata", {}).get("labels") or {}
    missing = {k: v for k, v in desired["metadata"]["labels"].items() if labels.get(k) != v}
    if missing:
        patch["metadata"] = {"labels": missing}
    spec = existing.get("spec") or {}
    taints: list[dict[str, Any]] = list(spec.get("taints") or [])
    ours = desired["spec"]["taints"][0]
    spec_patch: dict[str, Any] = {}
    if not any(t.get("key") == ours["key"] and t.get("effect") == ours["effect"] for t in taints):
        # A merge patch replaces the list, so send the whole list with ours added.
        spec_patch["taints"] = [*taints, ours]
    if not spec.get("providerID"):
        spec_patch["providerID"] = desired["spec"]["providerID"]
    if spec_patch:
        patch["spec"] = spec_patch
    return patch or None


def build_node_status(*, settings: BinderSettings, conditions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The full `status` the loop writes each tick (a merge patch: lists are replaced whole)."""
    resources = {
        GPU_RESOURCE: str(settings.gpu_budget),
        # The CPU budget: what the scheduler admits, pod by pod, from their cpu requests.
        "cpu": str(settings.cpu_budget),
        "memory": settings.memory_capacity,
        "pods": str(settings.pods_capacity),
    }
    return {
        "capacity": resources,
        "allocatable": dict(resources),
        "conditions": [dict(c) for c in conditions],
        "addresses": [
            {"type": "InternalIP", "address": settings.node_address},
            {"type": "Hostname", "address": settings.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.kubelet_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "RunPod GPU cloud",
            "containerRuntimeVersion": "runpod://v2",
            # Shown by `kubectl get nodes`; kept semver-shaped for tools that parse it.
            "kubeletVersion": f"v{__version__}-runpod-kubelet",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def classify_probe(error: BaseException | None) -> RunPodHealth:
    """Map the probe's outcome to node health. Messages carry no secrets: RunPodError.detail
    is already free of them, and it is truncated."""
    if error is None:
        return HEALTHY
    if isinstance(error, RunPodRateLimited):
        # RunPod answered and did not reject the key: being paced is no reason to stop scheduling.
        return HEALTHY
    if isinstance(error, RunPodAuthError):
        return RunPodHealth(False, "RunPodUnauthorized", "RunPod rejected the API key (401)")
    if isinstance(error, RunPodForbidden):
        return RunPodHealth(False, "RunPodForbidden", f"RunPod refused access (403): {_short(error.detail)}")
    if isinstance(error, RunPodTimeout | TimeoutError):
        return RunPodHealth(False, "RunPodUnreachable", "RunPod did not answer in time")
    if isinstance(error, RunPodServerError):
        return RunPodHealth(
            False, "RunPodUnreachable", f"RunPod answered {error.status}: {_short(error.detail)}"
        )
    if isinstance(error, RunPodError):
        status = f" ({error.status})" if error.status else ""
        return RunPodHealth(False, "RunPodError", f"RunPod call failed{status}: {_short(error.detail)}")
    return RunPodHealth(False, "RunPodUnreachable", f"RunPod probe failed: {type(error).__name__}")


def next_conditions(
    *, previous: Sequence[Mapping[str, Any]], health: RunPodHealth, now: datetime
) -> list[dict[str, Any]]:
    """The node's conditions after this tick: heartbeat always `now`, lastTransitionTime kept
    unless the status really changed."""
    stamp = format_time(now)
    before = {c.get("type"): c for c in previous}
    desired: dict[str, tuple[str, str, str]] = {
        "Ready": ("True" if health.ok else "False", health.reason, health.message),
        **_STATIC_CONDITIONS,
    }
    conditions = []
    for ctype in CONDITION_TYPES:
        status, reason, message = desired[ctype]
        old = before.get(ctype)
        transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
        conditions.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": transition or stamp,
            }
        )
    return conditions


def format_time(moment: datetime) -> str:
    """Kubernetes `Time`: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


class RunPodProbe(Protocol):
    async def datacenters(self) -> dict[str, Any]: ...


async def probe_runpod(runpod: RunPodProbe, *, within: float = PROBE_TIMEOUT) -> RunPodHealth:
    """One cheap authenticated call; its outcome as node health. Never raises (but cancels)."""
    try:
        async with asyncio.timeout(within):
            await runpod.datacenters()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        health = classify_probe(exc)
    else:
        health = HEALTHY
    return health


async def register_node(api: Any, *, settings: BinderSettings, cluster_id: str) -> dict[str, Any]:
    """Create the Node, or adopt an existing one (add our labels, taint, providerID)."""
    desired = build_node(settings=settings, cluster_id=cluster_id)
    path = f"/api/v1/nodes/{settings.node_name}"
    try:
        existing = await get_json(api, path)
    except KubeError as exc:
        if exc.status != 404:
            raise
    else:
        wanted_id = desired["spec"]["providerID"]
        current_id = (existing.get("spec") or {}).get("providerID")
        if current_id and current_id != wanted_id:
            log.warning(
                "node already has another providerID; it is immutable, keeping it",
                extra={"node": settings.node_name, "provider_id": current_id},
            )
        patch = adoption_patch(existing=existing, desired=desired)
        if patch is None:
            return existing
        log.info("adopting existing node", extra={"node": settings.node_name})
        return await patch_json(api, path, patch, MERGE_PATCH)
    try:
        node = await post_json(api, "/api/v1/nodes", desired)
    except KubeError as exc:
        if exc.status != 409:
            raise
        # Created by someone else between our GET and POST: adopt on the next call.
        return await register_node(api, settings=settings, cluster_id=cluster_id)
    log.info("registered node", extra={"node": settings.node_name})
    return node


class NodeStatusLoop:
    """Registers the node, then probes RunPod and pushes `nodes/status` every `interval` seconds.

    The only writer of the node's status. `last_clean_push` (monotonic seconds) and `node_uid`
    are latest-value cells the lease loop reads; `pushed` is set after the first clean push.
    """

    def __init__(
        self,
        *,
        api: Any,
        runpod: RunPodProbe,
        settings: BinderSettings,
        cluster_id: str,
        interval: float = NODE_STATUS_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._runpod = runpod
        self._settings = settings
        self._cluster_id = cluster_id
        self._interval = interval
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._conditions: list[dict[str, Any]] = []
        self._health: RunPodHealth | None = None
        self.node_uid: str | None = None
        self.last_clean_push: float | None = None
        self.pushed = asyncio.Event()

    @property
    def health(self) -> RunPodHealth | None:
        return self._health

    async def run(self) -> None:
        await self._register()
        while True:
            await self.tick()
            await asyncio.sleep(self._interval)

    async def _register(self) -> None:
        """Register, retrying apiserver failures: only a node we know lets status be pushed."""
        failures = 0
        while True:
            try:
                node = await register_node(self._api, settings=self._settings, cluster_id=self._cluster_id)
                break
            except KubeError as exc:
                failures += 1
                log.warning(
                    "node registration failed; retrying",
                    extra={"status": exc.status, "reason": exc.reason, "error": exc.message},
                )
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
        self.node_uid = node["metadata"]["uid"]
        # Keep the transition times the node already carries (a restart is no transition).
        self._conditions = list((node.get("status") or {}).get("conditions") or [])

    async def tick(self) -> None:
        """Probe, compute, write once. A failed write is logged and retried next tick; a node
        deleted under us is registered again."""
        health = await probe_runpod(self._runpod, within=min(PROBE_TIMEOUT, max(self._interval * 2, 5.0)))
        if health != self._health:
            level = logging.INFO if health.ok else logging.WARNING
            log.log(level, "node readiness: %s", health.reason, extra={"message_detail": health.message})
        self._health = health
        conditions = next_conditions(previous=self._conditions, health=health, now=self._wall_clock())
        body = {"status": build_node_status(settings=self._settings, conditions=conditions)}
        path = f"/api/v1/nodes/{self._settings.node_name}/status"
        try:
            await patch_json(self._api, path, body, MERGE_PATCH)
        except KubeError as exc:
            if exc.status == 404:
                log.warning(
                    "node disappeared; registering it again", extra={"node": self._settings.node_name}
                )
                await self._register()
                return
            log.warning("node status push failed", extra={"status": exc.status, "reason": exc.reason})
            return
        self._conditions = conditions
        NODE_READY.set(1 if health.ok else 0)
        self.last_clean_push = self._monotonic()
        self.pushed.set()
