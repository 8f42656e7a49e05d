"""In-memory views the admission path reads: the GPU catalog and owning Jobs. No network I/O.

- `ConfigMapCatalog` reads ConfigMap `runpod-catalog` out of a live mapping kept current by a
  watch (kit.kube.Reflector `.items`), parsing it again only when its resourceVersion changes.
  A document that does not parse is logged once and the previous good catalog stays in use.
- `FileCatalog` reads `--catalog-file` (development, tests, the outside checker) and re-reads it
  when the file changes, checked at most every few seconds.
- `JobIndex` answers "annotations of Job ns/name with this uid" from a watched Job mapping.
- `VolumeIndex` answers "claim ns/name" and "PV name" from watched PVC and PV mappings (a
  pod's network volume pins its data center, `volumes`).

Does not own the watches themselves (`cli` starts them) or any decision.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from contract.catalog import Catalog, CatalogError, parse_catalog_document
from contract.policy import CATALOG_CONFIGMAP_KEY

log = logging.getLogger(__name__)

_FILE_RECHECK_SECONDS: Final = 2.0


class CatalogSource(Protocol):
    def current(self) -> Catalog | None:
        """The latest good catalog, or None before one was loaded. Never blocks."""
        ...

    def loaded_at(self) -> float | None:
        """Wall-clock time the current catalog was loaded (for the catalog-age metric)."""
        ...


def catalog_age_seconds(source: CatalogSource, *, now: float) -> float:
    """Seconds since the catalog was fetched from RunPod (or loaded, if it does not say); -1 if none."""
    catalog = source.current()
    if catalog is None:
        return -1.0
    if catalog.fetched_at is not None:
        return max(0.0, now - catalog.fetched_at.timestamp())
    loaded = source.loaded_at()
    return max(0.0, now - loaded) if loaded is not None else -1.0


class ConfigMapCatalog:
    def __init__(
        self, *, items: Mapping[str, dict[str, Any]], key: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._items, self._key, self._clock = items, key, clock
        self._version: str | None = None
        self._catalog: Catalog | None = None
        self._loaded_at: float | None = None

    def current(self) -> Catalog | None:
        configmap = self._items.get(self._key)
        if configmap is None:
            return self._catalog
        version = str((configmap.get("metadata") or {}).get("resourceVersion", ""))
        if version != self._version:
            self._version = version
            text = (configmap.get("data") or {}).get(CATALOG_CONFIGMAP_KEY)
            try:
                if not isinstance(text, str):
                    raise CatalogError(f"ConfigMap {self._key} has no {CATALOG_CONFIGMAP_KEY!r} key")
                self._catalog = parse_catalog_document(text)
                self._loaded_at = self._clock()
                log.info("catalog loaded", extra={"revision": self._catalog.revision, "source": self._key})
            except CatalogError as exc:
                log.error("catalog ConfigMap unreadable; keeping the previous catalog: %s", exc)
        return self._catalog

    def loaded_at(self) -> float | None:
        return self._loaded_at


class FileCatalog:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._path, self._clock = Path(path), clock
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._catalog: Catalog | None = None
        self._loaded_at: float | None = None
        self._reload()
        if self._catalog is None:
            raise CatalogError(f"--catalog-file {self._path}: no catalog could be read")

    def current(self) -> Catalog | None:
        if self._clock() - self._checked >= _FILE_RECHECK_SECONDS:
            self._reload()
        return self._catalog

    def loaded_at(self) -> float | None:
        return self._loaded_at

    def _reload(self) -> None:
        self._checked = self._clock()
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            self._stamp = stamp
            self._catalog = parse_catalog_document(self._path.read_text())
            self._loaded_at = time.time()
            log.info("catalog loaded", extra={"revision": self._catalog.revision, "source": str(self._path)})
        except (OSError, UnicodeDecodeError, CatalogError) as exc:
            if self._catalog is None:
                raise CatalogError(f"--catalog-file {self._path}: {exc}") from None
            log.error("catalog file unreadable; keeping the previous catalog: %s", exc)


class VolumeIndex:
    """Claims and PVs from live "ns/name" -> PVC and "name" -> PV mappings (watch caches)."""

    def __init__(
        self, *, claims: Mapping[str, dict[str, Any]], volumes: Mapping[str, dict[str, Any]]
    ) -> None:
        self._claims, self._volumes = claims, volumes

    def claim(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._claims.get(f"{namespace}/{name}")

    def volume(self, name: str) -> Mapping[str, Any] | None:
        return self._volumes.get(name)


class JobIndex:
    """Job annotations by namespace, name and uid, from a live "ns/name" -> Job mapping."""

    def __init__(self, items: Mapping[str, dict[str, Any]]) -> None:
        self._items = items

    def lookup(self, namespace: str, name: str, uid: str) -> Mapping[str, str] | None:
        job = self._items.get(f"{namespace}/{name}")
        if job is None:
            return None
        metadata = job.get("metadata") or {}
        # A Job deleted and recreated under the same name is another Job: its pods are not ours.
        if uid and metadata.get("uid") != uid:
            return None
        annotations = metadata.get("annotations") or {}
        return {str(k): str(v) for k, v in annotations.items()}
