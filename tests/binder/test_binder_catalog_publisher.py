"""When the catalog ConfigMap is rewritten: on new content, or when its fetchedAt grows old."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from binder.catalog_publisher import catalog_needs_write, fetch_catalog
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


class _RecordingSource:
    """A RunPod catalog source that records each call it answers (the binder's cost per refresh)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def gpu_catalog(
        self, *, cloud: str, count: int = 1, cuda_versions: Sequence[str] = ()
    ) -> dict[str, Any]:
        self.calls.append(f"gpus {cloud}" + (f" cuda={','.join(cuda_versions)}" if cuda_versions else ""))
        versions = {"SECURE": ["12.4", "12.8"], "COMMUNITY": ["12.8"]}[cloud]
        where = {"12.4": {"EU-RO-1": "LOW"}, "12.8": {"US-KS-2": "HIGH"}}
        stock = where[cuda_versions[0]] if cuda_versions else {"EU-RO-1": "LOW", "US-KS-2": "HIGH"}
        return {
            "gpus": [
                {"id": "NVIDIA A40", "name": "A40", "memory": 48, "manufacturer": "NVIDIA",
                 "secure": True, "community": True, "price": {"secure": 0.44, "community": 0.35},
                 "dataCenters": [{"id": dc, "availability": band} for dc, band in stock.items()],
                 "cudaVersions": [{"version": v, "available": True} for v in versions]
                 + [{"version": "11.8", "available": False}]},
            ]
        }  # fmt: skip

    async def cpu_catalog(self) -> dict[str, Any]:
        self.calls.append("cpus")
        return {
            "cpus": [
                {"id": "cpu3c", "name": "Compute-Optimized", "group": "Gen 3", "vcpu": {"min": 2, "max": 32},
                 "ramGbPerVcpu": 2, "price": {"securePerVcpu": 0.03, "serverlessPerVcpu": 0.02},
                 "dataCenters": [{"id": "EU-RO-1", "availability": "HIGH"}]}
            ]
        }  # fmt: skip

    async def datacenters(self) -> dict[str, Any]:
        self.calls.append("datacenters")
        return {"dataCenters": [{"id": "EU-RO-1"}, {"id": "US-KS-2"}]}


async def test_a_refresh_fetches_both_clouds_each_cuda_version_with_capacity_the_cpus_and_the_data_centers() -> (
    None
):
    source = _RecordingSource()
    catalog = await fetch_catalog(source, now=T0)
    # 2 + V_SECURE + V_COMMUNITY + 2 calls; versions without capacity anywhere (11.8) are not asked.
    assert source.calls == [
        "gpus SECURE",
        "gpus SECURE cuda=12.4",
        "gpus SECURE cuda=12.8",
        "gpus COMMUNITY",
        "gpus COMMUNITY cuda=12.8",
        "cpus",
        "datacenters",
    ]
    a40 = catalog.gpu("NVIDIA A40")
    assert a40 is not None
    assert a40.cuda["SECURE"] == {"11.8": {}, "12.4": {"EU-RO-1": "LOW"}, "12.8": {"US-KS-2": "HIGH"}}
    assert a40.cuda["COMMUNITY"] == {"11.8": {}, "12.8": {"US-KS-2": "HIGH"}}
    assert [c.id for c in catalog.cpu_types] == ["cpu3c"]


async def test_the_published_catalog_carries_the_sandboxs_cpu_flavours_and_cuda_per_data_center() -> None:
    from runpod_api.client import RunPodClient
    from sandbox.testing import running_sandbox

    with running_sandbox(api_key="k", seed=1) as sandbox:
        async with RunPodClient(api_key="k", base_url=sandbox.base_url) as client:
            catalog = await fetch_catalog(client, now=T0)
        requests = sandbox.admin.state()["requests"]
    assert {c.id for c in catalog.cpu_types} == {"cpu3c", "cpu3g", "cpu3m", "cpu5c", "cpu5g", "cpu5m"}
    a40 = catalog.gpu("NVIDIA A40")
    assert a40 is not None
    assert set(a40.cuda["SECURE"]["13.0"]) == {"EU-RO-1", "US-TX-3", "EUR-IS-1", "OC-AU-1"}
    assert set(a40.cuda["SECURE"]["12.8"]) == {"US-CA-2", "US-GA-1"}
    assert catalog.cuda_versions() == ("12.4", "12.8", "13.0")
    # CUDA versions with capacity: 3 in SECURE, 2 in COMMUNITY (no 12.4 machine there), so
    # 2 + 3 + 2 + 2 calls for the whole catalog, none of them per pod.
    assert requests == {
        "GET /v2/catalog/gpus": 7,
        "GET /v2/catalog/cpus": 1,
        "GET /v2/catalog/datacenters": 1,
    }
