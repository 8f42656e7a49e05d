"""Kubernetes Events for what a person wants to see in `kubectl describe pod`.

`EventRecorder.record(obj, type=..., reason=..., message=...)` writes a core/v1 Event with
`involvedObject` pointing at the object (kind, namespace, name, uid, apiVersion,
resourceVersion), `source.component`/`host`, and aggregates repeats the way the kubelet's
recorder does: the same (object, type, reason, message) within the aggregation window bumps
`count` and `lastTimestamp` of the existing Event instead of creating another one.

Events are best effort: a failed write is logged (without the message, which may name user
objects) and never raised, so a flaky Events API cannot stall the pod lifecycle. Messages must
never carry secret or env values; callers pass names and reasons only. Messages are truncated to
the API's 1 KiB limit.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kubernetes_asyncio.client import ApiClient

from kit.kube import MERGE_PATCH, KubeError, NotFound, patch_json, post_json

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
MAX_MESSAGE: Final = 1024
# Repeats of one event within this many seconds are folded into one Event (client-go: 10 min).
AGGREGATION_WINDOW: Final = 600.0
_CACHE_SIZE: Final = 4096


class EventRecorder:
    """Writes and aggregates core/v1 Events. Safe to share between workers (asyncio)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        component: str,
        host: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._component = component
        self._host = host
        self._clock = clock
        # (namespace, uid, type, reason, message) -> (event name, count, first seen monotonic)
        self._seen: OrderedDict[tuple[str, str, str, str, str], tuple[str, int, float]] = OrderedDict()

    async def record(
        self,
        obj: Mapping[str, Any],
        *,
        type: EventType,
        reason: str,
        message: str,
    ) -> None:
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace") or "default"
        uid = metadata.get("uid") or ""
        message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
        key = (namespace, uid, type, reason, message)
        now = self._clock()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        seen = self._seen.get(key)
        try:
            if seen is not None and time.monotonic() - seen[2] < AGGREGATION_WINDOW:
                name, count, first = seen
                try:
                    await patch_json(
                        self._api,
                        f"/api/v1/namespaces/{namespace}/events/{name}",
                        {"count": count + 1, "lastTimestamp": stamp},
                        MERGE_PATCH,
                    )
                    self._remember(key, (name, count + 1, first))
                    return
                except NotFound:
                    pass  # expired (events live one hour): write a new one
            name = f"{metadata.get('name', 'unknown')}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", "v1"),
                    "kind": obj.get("kind", "Pod"),
                    "namespace": namespace,
                    "name": metadata.get("name"),
                    "uid": uid,
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": type,
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": self._component, **({"host": self._host} if self._host else {})},
                "reportingComponent": self._component,
                "reportingInstance": self._host or self._component,
            }
            await post_json(self._api, f"/api/v1/namespaces/{namespace}/events", body)
            self._remember(key, (name, 1, time.monotonic()))
        except KubeError as exc:
            log.warning(
                "could not record event %s on %s/%s: HTTP %s",
                reason,
                namespace,
                metadata.get("name"),
                exc.status,
            )
        except Exception as exc:  # best effort by contract; a broken connection must not stop the caller
            log.warning("could not record event %s: %s", reason, type_name(exc))

    def _remember(self, key: tuple[str, str, str, str, str], value: tuple[str, int, float]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)


def type_name(exc: BaseException) -> str:
    return type(exc).__name__
