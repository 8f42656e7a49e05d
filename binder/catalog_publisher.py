"""Publishes RunPod's GPU and CPU catalog into ConfigMap `runpod-catalog` (key `catalog.json`).

Owns that ConfigMap (the webhook only reads it) and the catalog-age metric. Every
`catalog_refresh_interval` seconds, or at once when someone sets `refresh_requested` (e.g. a create
met no capacity), it fetches both clouds' GPU availability, per cloud the availability of each
CUDA version some machine has free (`cudaVersions=<v>`: where that version is in stock, so a CUDA
floor is planned only where it holds), the CPU flavours and the data centers: 2 + V_SECURE +
V_COMMUNITY + 2 RunPod calls per refresh (V = CUDA versions with capacity in that cloud), on this
cadence only, never per pod. It normalises them with `contract.catalog.build_catalog` and writes
the ConfigMap only when the content revision changed,
or when the published `fetchedAt` is older than `max_fetched_age` (so readers can tell a stale
catalog from a quiet one without the binder rewriting an unchanged one every few minutes).
A failed fetch leaves the last published catalog in place and retries sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from prometheus_client import Gauge

from contract.catalog import (
    Catalog,
    CatalogError,
    build_catalog,
    offered_cuda_versions,
    parse_catalog_document,
)
from contract.policy import CATALOG_CONFIGMAP, CATALOG_CONFIGMAP_KEY, CLOUDS, Cloud
from kit.kube import MERGE_PATCH, KubeError, get_json, patch_json, post_json
from runpod_api.errors import RunPodError

__all__ = ["CatalogPublisher", "catalog_needs_write", "fetch_catalog"]

log = logging.getLogger(__name__)

DEFAULT_MAX_FETCHED_AGE: Final = timedelta(minutes=30)
RETRY_AFTER_FAILURE: Final = 30.0

CATALOG_AGE = Gauge(
    "runpod_kubelet_catalog_age_seconds", "seconds since the published GPU catalog was fetched from RunPod"
)
CATALOG_GPU_TYPES = Gauge("runpod_kubelet_catalog_gpu_types", "GPU types in the published catalog")
CATALOG_CPU_TYPES = Gauge("runpod_kubelet_catalog_cpu_types", "CPU flavours in the published catalog")


class CatalogSource(Protocol):
    async def gpu_catalog(
        self, *, cloud: str, count: int = 1, cuda_versions: Sequence[str] = ()
    ) -> dict[str, Any]: ...
    async def cpu_catalog(self) -> dict[str, Any]: ...
    async def datacenters(self) -> dict[str, Any]: ...


def catalog_needs_write(*, published: Catalog | None, fresh: Catalog, max_fetched_age: timedelta) -> bool:
    """Write when nothing is published, the content changed, or the published fetchedAt is old."""
    if published is None or published.revision != fresh.revision:
        return True
    if published.fetched_at is None or fresh.fetched_at is None:
        return True
    return fresh.fetched_at - published.fetched_at >= max_fetched_age


async def fetch_catalog(runpod: CatalogSource, *, now: datetime) -> Catalog:
    """Both clouds' GPU availability, per cloud each CUDA version's, the CPU flavours and the
    data centers, normalised. Raises RunPodError."""
    gpus_by_cloud: dict[Cloud, Mapping[str, Any]] = {}
    cuda_by_cloud: dict[Cloud, Mapping[str, Mapping[str, Any]]] = {}
    for cloud in CLOUDS:
        answer = await runpod.gpu_catalog(cloud=cloud)
        gpus_by_cloud[cloud] = answer
        cuda_by_cloud[cloud] = {
            version: await runpod.gpu_catalog(cloud=cloud, cuda_versions=[version])
            for version in offered_cuda_versions(answer)
        }
    return build_catalog(
        gpus_by_cloud=gpus_by_cloud,
        cuda_by_cloud=cuda_by_cloud,
        cpus=await runpod.cpu_catalog(),
        datacenters=await runpod.datacenters(),
        fetched_at=now,
    )


class CatalogPublisher:
    """The only writer of ConfigMap `runpod-catalog` in `namespace`."""

    def __init__(
        self,
        *,
        api: Any,
        runpod: CatalogSource,
        namespace: str,
        interval: float,
        max_fetched_age: timedelta = DEFAULT_MAX_FETCHED_AGE,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._runpod = runpod
        self._namespace = namespace
        self._interval = interval
        self._max_fetched_age = max_fetched_age
        self._wall_clock = wall_clock
        self.refresh_requested = asyncio.Event()
        self.published: Catalog | None = None
        self.published_event = asyncio.Event()  # set after the first successful publish

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self._namespace}/configmaps/{CATALOG_CONFIGMAP}"

    async def run(self) -> None:
        CATALOG_AGE.set_function(self._age)
        await self._load_published()
        while True:
            self.refresh_requested.clear()
            delay = self._interval
            try:
                await self.refresh()
            except (RunPodError, CatalogError) as exc:
                log.warning("catalog refresh failed; keeping the published one", extra={"error": str(exc)})
                delay = min(self._interval, RETRY_AFTER_FAILURE)
            except KubeError as exc:
                log.warning("catalog publish failed", extra={"status": exc.status, "reason": exc.reason})
                delay = min(self._interval, RETRY_AFTER_FAILURE)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.refresh_requested.wait()

    async def refresh(self) -> bool:
        """Fetch and publish if needed. True if the ConfigMap was written."""
        fresh = await fetch_catalog(self._runpod, now=self._wall_clock())
        if not catalog_needs_write(
            published=self.published, fresh=fresh, max_fetched_age=self._max_fetched_age
        ):
            return False
        await self._write(fresh)
        if self.published is None or self.published.revision != fresh.revision:
            log.info(
                "published catalog",
                extra={
                    "revision": fresh.revision,
                    "gpu_types": len(fresh.gpu_types),
                    "cpu_types": len(fresh.cpu_types),
                },
            )
        self.published = fresh
        CATALOG_GPU_TYPES.set(len(fresh.gpu_types))
        CATALOG_CPU_TYPES.set(len(fresh.cpu_types))
        self.published_event.set()
        return True

    async def _load_published(self) -> None:
        """Start from what is already published, so a restart rewrites nothing unchanged."""
        try:
            configmap = await get_json(self._api, self._path)
        except KubeError as exc:
            if exc.status != 404:
                log.warning("cannot read the published catalog", extra={"status": exc.status})
            return
        text = (configmap.get("data") or {}).get(CATALOG_CONFIGMAP_KEY)
        if not text:
            return
        try:
            self.published = parse_catalog_document(text)
        except CatalogError:
            log.warning("published catalog is unreadable; it will be replaced")

    async def _write(self, catalog: Catalog) -> None:
        data = {CATALOG_CONFIGMAP_KEY: catalog.to_json()}
        try:
            await patch_json(self._api, self._path, {"data": data}, MERGE_PATCH)
        except KubeError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CATALOG_CONFIGMAP,
                    "namespace": self._namespace,
                    "labels": {"app.kubernetes.io/managed-by": "runpod-kubelet"},
                },
                "data": data,
            }
            await post_json(self._api, f"/api/v1/namespaces/{self._namespace}/configmaps", body)

    def _age(self) -> float:
        if self.published is None or self.published.fetched_at is None:
            return float("nan")
        return max(0.0, (self._wall_clock() - self.published.fetched_at).total_seconds())
