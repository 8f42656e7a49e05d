"""Raw-JSON access to the Kubernetes API and a list-then-watch cache, on kubernetes_asyncio.

Owns: building an `ApiClient` (kubeconfig file, else in-cluster), plain-dict REST calls
(`get_json`, `post_json`, `put_json`, `patch_json`, `delete_json`) and `Reflector`. Objects stay
the apiserver's JSON dicts: no generated models, so nothing is dropped or renamed. Does not own
what callers do with objects, retries of writes (callers decide; the error type says how), or
leader election.

Errors (every foreign exception is translated here, once, chained with `from`):

    KubeError(status, reason, message)       any failed call; `status` 0 = no HTTP answer
    ├── NotFound            404
    ├── Conflict            409: stale resourceVersion on update; re-read and retry
    │   └── AlreadyExists   409 with reason AlreadyExists, on create
    ├── Gone                410: resourceVersion too old (expired watch, continue token); re-list
    ├── Invalid             422: the object failed validation or admission said so
    ├── Forbidden           401, 403
    ├── TransientKubeError  429, 5xx, timeouts and connection errors; retry after `retry_after`
    └── KubeConfigError     neither a kubeconfig nor an in-cluster service account is usable

`message` is the apiserver's `Status.message` (what it shows users); it never contains our
credentials, which travel in TLS client certificates or headers only.

Reflector contract: `run()` lists (paginated), publishes the result as `items`, sets `synced`,
then watches from the list's resourceVersion with bookmarks. A watch that ends (server timeout)
resumes from the last seen resourceVersion; a 410 Gone, as the HTTP status or as an ERROR event,
triggers a re-list whose differences are emitted as events, including synthetic DELETED events
for objects that vanished meanwhile. Other failures are retried with exponential backoff while
`items` keeps its last known state. `on_event(type, obj)` is called synchronously on the loop for
ADDED, MODIFIED and DELETED after `items` reflects the change; it must not block (enqueue a key)
and must not mutate `obj`; an exception it raises is logged and ignored. Cancel the task
running `run()` to stop it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "AlreadyExists",
    "Backoff",
    "Conflict",
    "EventHandler",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeConfigError",
    "KubeError",
    "NotFound",
    "Reflector",
    "TransientKubeError",
    "delete_json",
    "get_json",
    "load_api_client",
    "object_key",
    "patch_json",
    "post_json",
    "put_json",
]

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

_REQUEST_TIMEOUT: Final = 30.0
_CONNECT_TIMEOUT: Final = 10.0
# Beyond the server's own watch timeout: bookmarks arrive about once a minute, so a silent
# connection this much longer than the watch itself is dead.
_WATCH_READ_SLACK: Final = 90.0
_MESSAGE_LIMIT: Final = 500

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
EventHandler = Callable[[str, JsonObject], None]


class KubeError(Exception):
    """A Kubernetes API call failed. `status` is the HTTP status (0 = no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class AlreadyExists(Conflict):
    pass


class Gone(KubeError):
    pass


class Invalid(KubeError):
    pass


class Forbidden(KubeError):
    pass


class TransientKubeError(KubeError):
    """Worth retrying as is; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, reason, message)
        self.retry_after = retry_after


class KubeConfigError(KubeError):
    pass


def error_from_status(status: int, body: Mapping[str, Any], retry_after: float | None = None) -> KubeError:
    """Maps an HTTP status and a `metav1.Status` body to the most specific error (pure)."""
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")[:_MESSAGE_LIMIT]
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(status, reason or "Conflict", message)
    if status == 410:
        return Gone(status, reason or "Expired", message)
    if status == 422:
        return Invalid(status, reason or "Invalid", message)
    if status in (401, 403):
        return Forbidden(status, reason or "Forbidden", message)
    if status == 429 or status >= 500:
        return TransientKubeError(status, reason or "ServerError", message, retry_after)
    return KubeError(status, reason or "BadRequest", message)


async def load_api_client(kubeconfig: str | None) -> k8s_client.ApiClient:
    """An ApiClient from the kubeconfig file, or from the pod's service account when None.

    The caller owns it: `await api.close()` (or `async with`) when done.
    """
    try:
        if kubeconfig:
            return await k8s_config.new_client_from_config(config_file=kubeconfig)
        configuration = k8s_client.Configuration()
        load_incluster = cast(Callable[..., None], k8s_config.load_incluster_config)
        load_incluster(client_configuration=configuration)
        return k8s_client.ApiClient(configuration=configuration)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "in-cluster service account"
        raise KubeConfigError(0, "ConfigError", f"cannot load Kubernetes config ({where}): {exc}") from exc


async def _send(
    api: k8s_client.ApiClient,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    client_timeout: aiohttp.ClientTimeout | float = _REQUEST_TIMEOUT,
) -> aiohttp.ClientResponse:
    # call_api with _preload_content=False hands back the raw aiohttp response: no model
    # deserialisation and no exception for non-2xx, so status handling stays here.
    call_api = cast(Callable[..., Awaitable[aiohttp.ClientResponse]], api.call_api)
    try:
        return await call_api(
            path,
            method,
            query_params=list((params or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=client_timeout,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientKubeError(0, type(exc).__name__, f"{method} {path}: {exc}") from exc


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


async def _error_from_response(response: aiohttp.ClientResponse) -> KubeError:
    raw = await response.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"message": raw.decode(errors="replace")}
    return error_from_status(response.status, body if isinstance(body, dict) else {}, _retry_after(response))


async def request_json(
    api: k8s_client.ApiClient,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> JsonObject:
    """One API call; the decoded JSON answer, or the matching `KubeError`."""
    response = await _send(api, method, path, params=params, body=body, content_type=content_type)
    try:
        if response.status >= 300:
            raise await _error_from_response(response)
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientKubeError(0, type(exc).__name__, f"{method} {path}: {exc}") from exc
    finally:
        response.release()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise KubeError(response.status, "BadResponse", f"{method} {path}: answer is not JSON") from exc
    return cast(JsonObject, decoded) if isinstance(decoded, dict) else {"items": decoded}


async def get_json(
    api: k8s_client.ApiClient, path: str, *, params: Mapping[str, str] | None = None
) -> JsonObject:
    return await request_json(api, "GET", path, params=params)


async def post_json(
    api: k8s_client.ApiClient, path: str, body: Any, *, params: Mapping[str, str] | None = None
) -> JsonObject:
    """Creates (or POSTs a subresource such as `pods/binding`)."""
    return await request_json(api, "POST", path, params=params, body=body)


async def put_json(
    api: k8s_client.ApiClient, path: str, body: Any, *, params: Mapping[str, str] | None = None
) -> JsonObject:
    """Replaces; with `metadata.resourceVersion` set, a stale version raises `Conflict`."""
    return await request_json(api, "PUT", path, params=params, body=body)


async def patch_json(
    api: k8s_client.ApiClient,
    path: str,
    body: Any,
    content_type: str,
    *,
    params: Mapping[str, str] | None = None,
) -> JsonObject:
    """Patches with an explicit patch type: `JSON_PATCH` (a list of RFC 6902 operations),
    `MERGE_PATCH` (lists replaced whole), `STRATEGIC_MERGE_PATCH` (lists merged by key, e.g.
    `status.conditions` by `type`, `containers` by `name`; built-in kinds only) or `APPLY_PATCH`
    (server-side apply; pass `params={"fieldManager": ...}`)."""
    return await request_json(api, "PATCH", path, params=params, body=body, content_type=content_type)


async def delete_json(
    api: k8s_client.ApiClient,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> JsonObject:
    """Deletes; `body` is DeleteOptions (e.g. `gracePeriodSeconds`, `preconditions.uid`)."""
    return await request_json(api, "DELETE", path, params=params, body=body)


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones (client-go's rule)."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), str(metadata.get("name", ""))
    return f"{namespace}/{name}" if namespace else name


@dataclass(frozen=True)
class Backoff:
    """Exponential delays between failed attempts: initial * factor**(failures-1), capped."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        computed = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return max(computed, min(retry_after or 0.0, self.maximum))


def diff_listing(
    old: Mapping[str, JsonObject], new: Mapping[str, JsonObject]
) -> list[tuple[str, JsonObject]]:
    """Events that turn `old` into `new` after a re-list (pure): ADDED for new keys, MODIFIED
    where the resourceVersion changed, DELETED (with the last known object) for vanished keys."""
    events: list[tuple[str, JsonObject]] = []
    for key, obj in new.items():
        before = old.get(key)
        if before is None:
            events.append(("ADDED", obj))
        elif _resource_version(before) != _resource_version(obj):
            events.append(("MODIFIED", obj))
    events.extend(("DELETED", obj) for key, obj in old.items() if key not in new)
    return events


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Reflector:
    """A list-then-watch cache of one collection (see the module docstring for the contract).

    `path` is a collection URL: "/api/v1/pods", "/api/v1/namespaces/x/configmaps",
    "/apis/batch/v1/jobs". `items` is a read-only live view keyed by `object_key`.
    """

    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        path: str,
        field_selector: str | None = None,
        label_selector: str | None = None,
        on_event: EventHandler | None = None,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        backoff: Backoff = Backoff(),  # frozen: one shared default is safe
    ) -> None:
        self._api, self._path = api, path
        self._selectors = {
            key: value
            for key, value in (("fieldSelector", field_selector), ("labelSelector", label_selector))
            if value
        }
        self._on_event = on_event
        self._page_size, self._watch_timeout, self._backoff = page_size, watch_timeout, backoff
        self._items: dict[str, JsonObject] = {}
        self.items: Mapping[str, JsonObject] = MappingProxyType(self._items)
        self.synced = asyncio.Event()
        self._resource_version = ""
        self.relists = 0  # completed lists, for metrics and tests

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (from a list, an event or a bookmark)."""
        return self._resource_version

    async def run(self) -> None:
        failures, must_list = 0, True
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list, failures = False, 0
                if await self._watch():
                    failures = 0
                else:
                    # An empty watch normally ends with a bookmark; one that ends silently
                    # must not turn into a tight reconnect loop.
                    failures += 1
                    await asyncio.sleep(self._backoff.delay(failures))
            except Gone as exc:
                log.info("watch of %s expired (%s); re-listing", self._path, exc.message)
                must_list = True
            except KubeError as exc:
                failures += 1
                delay = self._backoff.delay(failures, getattr(exc, "retry_after", None))
                log.warning("watching %s failed (%s); retrying in %.1fs", self._path, exc, delay)
                await asyncio.sleep(delay)
            except (ValueError, KeyError, TypeError) as exc:
                # A malformed answer: start over from a fresh list rather than trust the cache.
                failures += 1
                must_list = True
                delay = self._backoff.delay(failures)
                log.warning("bad answer while watching %s (%r); re-listing in %.1fs", self._path, exc, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        listed: dict[str, JsonObject] = {}
        token = ""
        while True:
            params = {**self._selectors, "limit": str(self._page_size)}
            if token:
                params["continue"] = token
            page = await get_json(self._api, self._path, params=params)
            kind = str(page.get("kind", "")).removesuffix("List")
            api_version = str(page.get("apiVersion", ""))
            for obj in page.get("items") or []:
                # List items carry no kind/apiVersion; watch events do. Make both look alike.
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api_version)
                listed[object_key(obj)] = obj
            metadata = page.get("metadata") or {}
            token = str(metadata.get("continue") or "")
            if not token:
                break
        events = diff_listing(self._items, listed)
        self._items.clear()
        self._items.update(listed)
        self._resource_version = str(metadata["resourceVersion"])
        self.relists += 1
        self.synced.set()
        for event_type, obj in events:
            self._emit(event_type, obj)

    async def _watch(self) -> bool:
        """One watch request until the server ends it; True if it delivered anything."""
        params = {
            **self._selectors,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._resource_version,
            "timeoutSeconds": str(int(self._watch_timeout)),
        }
        timeout = aiohttp.ClientTimeout(
            sock_connect=_CONNECT_TIMEOUT, sock_read=self._watch_timeout + _WATCH_READ_SLACK
        )
        response = await _send(self._api, "GET", self._path, params=params, client_timeout=timeout)
        delivered = False
        try:
            if response.status != 200:
                raise await _error_from_response(response)
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._apply(json.loads(line))
                        delivered = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientKubeError(0, type(exc).__name__, f"watch {self._path}: {exc}") from exc
        finally:
            response.release()
        return delivered

    def _apply(self, event: Mapping[str, Any]) -> None:
        event_type = str(event.get("type"))
        obj = cast(JsonObject, event.get("object") or {})
        if event_type == "ERROR":
            raise error_from_status(int(obj.get("code") or 500), obj)
        self._resource_version = _resource_version(obj) or self._resource_version
        if event_type == "BOOKMARK":
            return
        key = object_key(obj)
        if event_type == "DELETED":
            self._items.pop(key, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._items[key] = obj
        else:
            log.warning("ignoring unknown watch event type %r on %s", event_type, self._path)
            return
        self._emit(event_type, obj)

    def _emit(self, event_type: str, obj: JsonObject) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event_type, obj)
        except Exception:
            log.exception("on_event handler failed for %s %s", event_type, object_key(obj))
