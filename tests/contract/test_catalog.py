"""RunPod catalog answers become the catalog the webhook resolves against."""

from __future__ import annotations

import json

import pytest

from contract.catalog import CatalogError, build_catalog, parse_catalog_document


def _gpu(
    gpu_id: str, *, memory: int, secure: float, community: float, dcs: dict[str, str]
) -> dict[str, object]:
    return {
        "id": gpu_id,
        "name": gpu_id.split()[-1],
        "pool": None,
        "manufacturer": "NVIDIA",
        "memory": memory,
        "secure": secure > 0,
        "community": community > 0,
        "price": {"secure": secure, "community": community},
        "maxCount": {"secure": 8, "community": 8},
        "availability": "HIGH",
        "dataCenters": [{"id": dc, "name": dc, "availability": band} for dc, band in dcs.items()],
    }


def test_availability_is_kept_per_cloud_and_none_bands_are_dropped() -> None:
    secure = {
        "gpus": [
            _gpu(
                "NVIDIA A40", memory=48, secure=0.44, community=0, dcs={"EU-RO-1": "HIGH", "US-KS-2": "NONE"}
            )
        ]
    }
    community = {"gpus": [_gpu("NVIDIA A40", memory=48, secure=0.44, community=0, dcs={"EU-RO-1": "LOW"})]}
    catalog = build_catalog(gpus_by_cloud={"SECURE": secure, "COMMUNITY": community})
    a40 = catalog.gpu("NVIDIA A40")
    assert a40 is not None
    assert a40.stock_in("SECURE") == {"EU-RO-1": "HIGH"}
    assert a40.price_in("SECURE") == 0.44
    assert a40.price_in("COMMUNITY") is None  # not offered there, whatever the stock says


def test_sentinel_and_priceless_gpu_types_are_dropped() -> None:
    answer = {
        "gpus": [
            _gpu("unknown", memory=0, secure=1, community=1, dcs={}),
            _gpu("NVIDIA Free", memory=8, secure=0, community=0, dcs={"EU-RO-1": "HIGH"}),
            _gpu("NVIDIA L4", memory=24, secure=0.39, community=0, dcs={}),
        ]
    }
    catalog = build_catalog(gpus_by_cloud={"SECURE": answer})
    assert [g.id for g in catalog.gpu_types] == ["NVIDIA L4"]


def test_revision_changes_with_content_and_only_with_content() -> None:
    answer = {"gpus": [_gpu("NVIDIA L4", memory=24, secure=0.39, community=0, dcs={"EU-RO-1": "HIGH"})]}
    first = build_catalog(gpus_by_cloud={"SECURE": answer})
    again = build_catalog(gpus_by_cloud={"SECURE": json.loads(json.dumps(answer))})
    answer["gpus"][0]["dataCenters"][0]["availability"] = "LOW"  # type: ignore[index]
    changed = build_catalog(gpus_by_cloud={"SECURE": answer})
    assert first.revision == again.revision
    assert first.revision != changed.revision


def test_our_document_and_a_raw_runpod_answer_both_parse() -> None:
    answer = {"gpus": [_gpu("NVIDIA L4", memory=24, secure=0.39, community=0.2, dcs={"EU-RO-1": "MEDIUM"})]}
    from_raw = parse_catalog_document(json.dumps(answer))
    assert from_raw.gpu("NVIDIA L4") is not None
    assert parse_catalog_document(from_raw.to_json()) == from_raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"pods": []}', "'gpuTypes'"),
        ('{"version": 2, "gpuTypes": []}', "version"),
    ],
)
def test_an_unreadable_catalog_says_why(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog_document(text)
