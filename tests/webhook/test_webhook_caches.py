"""The in-memory views the admission path reads: catalog (ConfigMap or file), Jobs, plan memo."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from webhook_samples import runpod_gpu_answer, sample_catalog

from contract.catalog import CatalogError
from webhook.admission import PlanRequest, write_plan
from webhook.app import CachedPlanner
from webhook.caches import ConfigMapCatalog, FileCatalog, JobIndex, catalog_age_seconds
from webhook.problems import Denial
from webhook.resolving import Demand

KEY = "kube-system/runpod-catalog"


def _configmap(version: str, text: str | None) -> dict[str, Any]:
    data = {"catalog.json": text} if text is not None else {}
    return {"metadata": {"name": "runpod-catalog", "resourceVersion": version}, "data": data}


def test_the_configmap_catalog_follows_the_watch_and_keeps_the_last_good_one() -> None:
    items: dict[str, dict[str, Any]] = {}
    source = ConfigMapCatalog(items=items, key=KEY, clock=lambda: 1000.0)
    assert source.current() is None
    first = sample_catalog()
    items[KEY] = _configmap("1", first.to_json())
    assert source.current() == first
    assert source.loaded_at() == 1000.0
    items[KEY] = _configmap("2", "{not json")
    assert source.current() == first  # a broken publish does not take the catalog away
    items[KEY] = _configmap("3", json.dumps(runpod_gpu_answer()))
    current = source.current()
    assert current is not None and current.revision != first.revision


def test_catalog_age_prefers_the_fetch_time_the_binder_recorded() -> None:
    fetched = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    items = {KEY: _configmap("1", sample_catalog().model_copy(update={"fetched_at": fetched}).to_json())}
    source = ConfigMapCatalog(items=items, key=KEY, clock=lambda: 0.0)
    assert catalog_age_seconds(source, now=fetched.timestamp() + 90) == 90
    assert catalog_age_seconds(ConfigMapCatalog(items={}, key=KEY), now=0) == -1


def test_the_catalog_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(runpod_gpu_answer()))
    now = [0.0]
    source = FileCatalog(path, clock=lambda: now[0])
    first = source.current()
    assert first is not None
    path.write_text(sample_catalog().to_json() + "\n")
    assert source.current() is first  # not re-checked yet
    now[0] = 5.0
    second = source.current()
    assert second is not None and second.revision == sample_catalog().revision
    path.write_text("garbage")
    now[0] = 10.0
    assert source.current() is second


def test_an_unreadable_catalog_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="--catalog-file"):
        FileCatalog(tmp_path / "missing.json")


def test_jobs_are_found_by_namespace_name_and_uid() -> None:
    job = {
        "metadata": {
            "name": "train",
            "namespace": "ml",
            "uid": "u1",
            "annotations": {"runpod.io/cloud-type": "X"},
        }
    }
    index = JobIndex({"ml/train": job})
    assert index.lookup("ml", "train", "u1") == {"runpod.io/cloud-type": "X"}
    assert index.lookup("ml", "train", "u2") is None  # same name, another Job
    assert index.lookup("other", "train", "u1") is None


DEMAND = Demand(
    memory_gb=16,
    gpu_count=1,
    cloud="SECURE",
    max_gpu_price=1.0,
    cap_is_users=False,
    datacenter_ids=None,
    gpu_types=None,
    max_candidates=3,
)
REQUEST = PlanRequest(
    demand=DEMAND, ports=("8888/http",), container_disk_gb=50, registry_auth_id=None, template_id=None
)


def test_the_plan_memo_answers_like_the_planner_and_per_catalog_revision() -> None:
    planner = CachedPlanner(size=2)
    catalog = sample_catalog()
    assert dict(planner(REQUEST, catalog)) == write_plan(REQUEST, catalog)
    assert planner(REQUEST, catalog) is planner(REQUEST, catalog)
    cheaper = catalog.model_copy(
        update={"revision": "other", "gpu_types": tuple(g for g in catalog.gpu_types if g.id != "NVIDIA L4")}
    )
    assert dict(planner(REQUEST, cheaper)) == write_plan(REQUEST, cheaper)
    assert planner(REQUEST, cheaper) != planner(REQUEST, catalog)


def test_the_plan_memo_repeats_denials() -> None:
    planner = CachedPlanner()
    impossible = dataclasses.replace(REQUEST, demand=dataclasses.replace(DEMAND, memory_gb=1000))
    for _ in range(2):
        with pytest.raises(Denial, match="no GPU type has >= 1000 GB"):
            planner(impossible, sample_catalog())
