"""The suite's own safety logic, checked first (no network): if any of this fails, the costly test
refuses to run (see `conftest.py`), because it is what keeps the suite from spending or deleting
what it must not."""

from __future__ import annotations

import httpx
import pytest
from live_support import (
    DEFAULT_MAX_PRICE,
    ContractLog,
    ContractTransport,
    LiveConfigError,
    LiveSettings,
    OpenApiContract,
    choose_gpus,
    gate_refusal,
    run_marker,
)

from binder.pods.naming import owner_markers
from contract.catalog import build_catalog
from runpod_api import Pod
from sandbox.validation import openapi_document

pytestmark = pytest.mark.live


def test_the_gate_opens_only_with_the_flag_and_a_key() -> None:
    assert gate_refusal({"RUNPOD_LIVE": "1", "RUNPOD_API_KEY": "k"}) is None
    assert gate_refusal({"RUNPOD_API_KEY": "k"})
    assert gate_refusal({"RUNPOD_LIVE": "true", "RUNPOD_API_KEY": "k"})
    assert gate_refusal({"RUNPOD_LIVE": "1", "RUNPOD_API_KEY": "  "})
    assert gate_refusal({})


def test_the_price_cap_defaults_to_fifty_cents_and_refuses_typos() -> None:
    assert LiveSettings.from_env({}).max_price == DEFAULT_MAX_PRICE
    assert LiveSettings.from_env({"RUNPOD_LIVE_MAX_PRICE": "0.3"}).max_price == 0.3
    for bad in ("5", "0", "-1", "half"):
        with pytest.raises(LiveConfigError, match="RUNPOD_LIVE_MAX_PRICE"):
            LiveSettings.from_env({"RUNPOD_LIVE_MAX_PRICE": bad})


def test_the_key_never_shows_in_the_settings_repr() -> None:
    assert "secret-key-1" not in repr(LiveSettings.from_env({"RUNPOD_API_KEY": "secret-key-1"}))


def test_a_run_owns_only_pods_with_its_own_marker() -> None:
    mine, other = run_marker("abcd1234"), run_marker("ffff0000")
    assert mine == run_marker("abcd1234") and mine.name(0) == run_marker("abcd1234").name(0)
    assert mine.owns(mine.env(0)) and mine.owns(mine.env(7))
    assert not mine.owns(other.env(0))
    assert not mine.owns({})
    assert not mine.owns(None)
    assert not mine.owns({"RPVK_OWNER": "rpvk-live-abcd1234"})  # no pod UID: not a marker
    real_cluster = owner_markers(cluster_id="prod", namespace="live", name="cycle", uid=mine.uid, attempt=0)
    assert not mine.owns(real_cluster)  # a binder's pod with a coincident UID is still not ours


def test_a_run_deletes_only_pods_with_its_marker_and_one_of_its_names() -> None:
    mine = run_marker("abcd1234")
    assert mine.claims(Pod(id="p1", name=mine.name(0), env=mine.env(0)))
    assert mine.claims(Pod(id="p2", name=mine.name(12), env=mine.env(12)))
    assert not mine.claims(Pod(id="p3", name="my-notebook", env=mine.env(0)))  # marker copied by hand
    assert not mine.claims(Pod(id="p4", name=mine.name(0), env={}))
    assert not mine.claims(Pod(id="p5", name=mine.name(0), env=run_marker("ffff0000").env(0)))


def _gpu(gpu_id: str, price: float, stock: dict[str, str]) -> dict[str, object]:
    return {
        "id": gpu_id,
        "name": gpu_id,
        "memory": 24,
        "secure": True,
        "community": False,
        "price": {"secure": price, "community": None},
        "dataCenters": [{"id": dc, "availability": band} for dc, band in stock.items()],
    }


def test_only_in_stock_gpus_under_the_cap_are_chosen_cheapest_first() -> None:
    answer = {
        "gpus": [
            _gpu("A", 0.44, {"EU-1": "LOW", "US-1": "HIGH"}),
            _gpu("B", 0.20, {"EU-1": "NONE"}),  # cheapest, but out of stock
            _gpu("C", 0.44, {"EU-1": "HIGH"}),
            _gpu("D", 0.51, {"EU-1": "HIGH"}),  # over the cap
            _gpu("E", 0.30, {"EU-1": "LOW"}),
        ]
    }
    choices = choose_gpus(build_catalog(gpus_by_cloud={"SECURE": answer}), cloud="SECURE", max_price=0.5)
    assert [c.gpu_id for c in choices] == ["E", "A", "C"]
    assert choices[1].datacenters == ("US-1", "EU-1")  # best stocked first
    assert not choose_gpus(build_catalog(gpus_by_cloud={"SECURE": answer}), cloud="COMMUNITY", max_price=5)


async def test_the_contract_transport_records_answers_that_depart_from_the_document() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/pods":
            return httpx.Response(200, json={"pods": "not a list"})
        return httpx.Response(204)

    log = ContractLog()
    transport = ContractTransport(
        httpx.MockTransport(answer), contract=OpenApiContract(openapi_document()), log=log
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://runpod.test") as client:
        assert (await client.get("/v2/pods")).json() == {"pods": "not a list"}
        await client.delete("/v2/pods/abc")
    assert log.checked == 2
    assert len(log.violations) == 1 and log.violations[0].startswith("GET /v2/pods -> 200: body")
