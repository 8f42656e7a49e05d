"""Pure parts of the sandbox: quotas, catalogue rules, placement, log cursors, validation."""

from __future__ import annotations

import pytest

from sandbox.catalog import load_inventory, parse_catalog_query
from sandbox.logbook import LogCursor, LogLine, parse_log_query, select_backfill
from sandbox.problems import ApiError
from sandbox.ratelimit import RateLimiter
from sandbox.scenario import RateWindow, load_scenario
from sandbox.validation import check_create_rules, validate_body


def test_rate_limiter_counts_every_request_and_resets_per_window() -> None:
    limiter = RateLimiter(
        [
            RateWindow(window="minute", quota=2, window_s=60),
            RateWindow(window="hour", quota=3, window_s=3600),
        ],
        now=1000.0,
    )
    assert limiter.hit(1000.0).headers["RateLimit"] == '"minute";r=1;t=60, "hour";r=2;t=3600'
    assert limiter.hit(1010.0).allowed
    refused = limiter.hit(1030.0)
    assert (refused.allowed, refused.window, refused.retry_after) == (False, "minute", 30)
    assert limiter.hit(1061.0).allowed  # the minute rolled over
    refused = limiter.hit(1062.0)
    assert (refused.window, refused.retry_after) == ("hour", 3538)


def test_catalog_rules_400_for_combinations_422_for_malformed_values() -> None:
    with pytest.raises(ApiError) as without_product:
        parse_catalog_query({"include": "AVAILABILITY"})
    assert without_product.value.status == 400
    with pytest.raises(ApiError) as cloud_alone:
        parse_catalog_query({"cloud": "SECURE"})
    assert cloud_alone.value.status == 400
    with pytest.raises(ApiError) as bad_country:
        parse_catalog_query({"include": "AVAILABILITY", "product": "POD", "countryCodes": "fr"})
    assert bad_country.value.status == 422
    query = parse_catalog_query(
        {"include": "AVAILABILITY", "product": "POD", "count": "2", "cloud": "COMMUNITY"}
    )
    assert (query.availability, query.count, query.cloud) == (True, 2, "COMMUNITY")


def test_placement_takes_one_type_in_one_allowed_dc_and_never_substitutes() -> None:
    inventory = load_inventory()
    inventory.stock = {k: v for k, v in inventory.stock.items() if k[0] == "NVIDIA A40"}
    for entry in inventory.stock.values():
        entry.free = 0
    inventory.stock[("NVIDIA A40", "EU-RO-1", "SECURE")].free = 3
    assert inventory.place(gpu_id="NVIDIA A40", cloud="SECURE", count=4, dc_ids=[]) is None
    assert inventory.place(gpu_id="NVIDIA A40", cloud="SECURE", count=2, dc_ids=["US-TX-3"]) is None
    placed = inventory.place(gpu_id="NVIDIA A40", cloud="SECURE", count=2, dc_ids=["US-TX-3", "EU-RO-1"])
    assert placed is not None and placed.dc_id == "EU-RO-1"
    assert inventory.stock[("NVIDIA A40", "EU-RO-1", "SECURE")].free == 1
    assert inventory.place(gpu_id="NVIDIA A40", cloud="COMMUNITY", count=1, dc_ids=[]) is None  # not offered


def test_every_gpu_type_in_the_seed_data_is_valid_and_priced() -> None:
    inventory = load_inventory()
    assert "NVIDIA RTX 4090" not in inventory.gpus  # invalid id from old docs
    for gpu in inventory.gpus.values():
        assert gpu.price["SECURE"] > 0 and gpu.max_count["SECURE"] >= 1
    total_a4000 = sum(
        e.free for (g, _, c), e in inventory.stock.items() if g == "NVIDIA RTX A4000" and c == "SECURE"
    )
    assert total_a4000 >= 1000  # room for the binder's 1000-pod benchmark


def _lines() -> list[LogLine]:
    return [LogLine(i, 100.0 + i, "container" if i % 2 else "system", f"l{i}") for i in range(1, 11)]


def test_log_backfill_tail_since_and_last_event_id() -> None:
    lines = _lines()
    assert [x.seq for x in select_backfill(lines, LogCursor(tail=3))] == [8, 9, 10]
    assert select_backfill(lines, LogCursor(tail=0)) == []
    assert [x.seq for x in select_backfill(lines, LogCursor(source="container", tail=2))] == [7, 9]
    assert [x.seq for x in select_backfill(lines, LogCursor(since_ts=108.0))] == [8, 9, 10]
    resumed = parse_log_query(source=None, tail="1", since=None, last_event_id=lines[6].event_id)
    assert [x.seq for x in select_backfill(lines, resumed)] == [8, 9, 10]  # exclusive, wins over tail
    with pytest.raises(ApiError) as too_many:
        parse_log_query(source=None, tail="5001", since=None, last_event_id=None)
    assert too_many.value.status == 422


def test_cross_field_rules_are_400() -> None:
    body = {
        "name": "x",
        "image": "i",
        "gpu": {"id": "a", "allowedCudaVersions": ["12.8"], "minCudaVersion": "12.4"},
    }
    validate_body("CreatePodRequest", body)
    with pytest.raises(ApiError) as both:
        check_create_rules(body)
    assert both.value.status == 400
    with pytest.raises(ApiError) as neither:
        check_create_rules({"name": "x", "image": "i"})
    assert neither.value.status == 400


def test_scenario_typos_fail_loudly() -> None:
    with pytest.raises(ValueError, match="rateLimit"):
        load_scenario({"rateLimit": []})
    assert load_scenario({"timings": {"provisioningS": 1}}).timings.provisioning_s == 1
