"""When the catalog ConfigMap is rewritten: on new content, or when its fetchedAt grows old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from binder.catalog_publisher import catalog_needs_write
from contract.catalog import Catalog, build_catalog

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
AGE = timedelta(minutes=30)


def _catalog(price: float, at: datetime) -> Catalog:
    answer = {
        "gpus": [
            {"id": "NVIDIA A40", "name": "A40", "memory": 48, "manufacturer": "NVIDIA",
             "secure": True, "community": True, "price": {"secure": price, "community": 0.35},
             "dataCenters": [{"id": "EU-RO-1", "availability": "HIGH"}]}
        ]
    }  # fmt: skip
    return build_catalog(gpus_by_cloud={"SECURE": answer, "COMMUNITY": answer}, fetched_at=at)


def test_first_catalog_is_always_published() -> None:
    assert catalog_needs_write(published=None, fresh=_catalog(0.44, T0), max_fetched_age=AGE)


def test_unchanged_content_is_not_rewritten_every_refresh() -> None:
    published = _catalog(0.44, T0)
    fresh = _catalog(0.44, T0 + timedelta(minutes=5))
    assert not catalog_needs_write(published=published, fresh=fresh, max_fetched_age=AGE)


def test_unchanged_content_is_rewritten_once_its_fetched_at_is_old() -> None:
    published = _catalog(0.44, T0)
    fresh = _catalog(0.44, T0 + AGE)
    assert catalog_needs_write(published=published, fresh=fresh, max_fetched_age=AGE)


def test_a_price_or_stock_change_is_published_at_once() -> None:
    published = _catalog(0.44, T0)
    fresh = _catalog(0.49, T0 + timedelta(seconds=1))
    assert fresh.revision != published.revision
    assert catalog_needs_write(published=published, fresh=fresh, max_fetched_age=AGE)
