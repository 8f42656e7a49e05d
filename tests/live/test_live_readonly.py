"""Read-only contract checks against live RunPod: they cost nothing and run before anything that does.

Every answer is also checked against RunPod's OpenAPI document by the `runpod`/`raw_api`
transport (a departure fails the test at teardown). Here the project's own readers are run on
the live answers: `build_catalog` (what the binder publishes), `Pod` (what the binder lists),
`error_from_response` (how a refusal is classified).
"""

from __future__ import annotations

import httpx
import pytest
from live_support import DISK_GB, IMAGE, LiveSettings, RunMarker

from contract.catalog import build_catalog
from contract.policy import CLOUDS
from runpod_api import Pod, RunPodAuthError, RunPodClient, RunPodUnprocessable
from runpod_api.errors import error_from_response

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


async def test_the_gpu_catalog_with_availability_reads_into_the_project_catalog(
    runpod: RunPodClient,
) -> None:
    answers = {cloud: await runpod.gpu_catalog(cloud=cloud) for cloud in CLOUDS}
    centers = await runpod.datacenters()
    for cloud, answer in answers.items():
        ids = [gpu["id"] for gpu in answer["gpus"]]
        assert ids, f"no GPU types in the {cloud} catalog"
        assert len(ids) == len(set(ids)), f"duplicate GPU ids in the {cloud} catalog"
    catalog = build_catalog(gpus_by_cloud=answers, datacenters=centers)
    assert any(gpu.price_in("SECURE") for gpu in catalog.gpu_types), "no GPU type priced in SECURE"
    assert any(gpu.stock_in(cloud) for gpu in catalog.gpu_types for cloud in CLOUDS), "nothing in stock"
    # The webhook checks data-center ids from the catalog's stock against the published list.
    known = {dc.id for dc in catalog.data_centers}
    stocked = {dc for gpu in catalog.gpu_types for cloud in CLOUDS for dc in gpu.stock_in(cloud)}
    assert stocked <= known, f"stock in data centers missing from the list: {sorted(stocked - known)}"


async def test_the_datacenter_list_names_each_center_once(runpod: RunPodClient) -> None:
    centers = (await runpod.datacenters())["dataCenters"]
    ids = [dc["id"] for dc in centers]
    assert ids and len(ids) == len(set(ids))


async def test_every_listed_pod_is_readable_by_the_client(
    runpod: RunPodClient, raw_api: httpx.AsyncClient
) -> None:
    raw = (await raw_api.get("/v2/pods")).json()["pods"]
    for entry in raw:
        Pod.model_validate(entry)  # the binder's one list call per tick must read every pod
    assert isinstance(await runpod.list_pods(), list)


async def test_a_wrong_key_is_an_auth_error_that_does_not_echo_the_key(live: LiveSettings) -> None:
    wrong = "rpvk-live-not-a-key-" + live.run_id
    async with RunPodClient(api_key=wrong, base_url=live.base_url) as client:
        with pytest.raises(RunPodAuthError) as caught:
            await client.list_pods()
    assert wrong not in str(caught.value)


async def test_an_unknown_field_is_refused_with_422_and_nothing_is_created(
    raw_api: httpx.AsyncClient, marker: RunMarker, runpod: RunPodClient
) -> None:
    # An unknown GPU id as well: were RunPod ever lenient about unknown keys, the create still
    # could not place a pod (400), so this check can never cost money. The marker lets the
    # sweeps find a pod anyway.
    body = {
        "name": marker.name(99),
        "image": IMAGE,
        "gpu": {"id": "rpvk-live-no-such-gpu", "count": 1, "bogus": True},
        "cloud": "SECURE",
        "disk": DISK_GB,
        "env": marker.env(99),
        "gpuCount": 1,
    }
    answer = await raw_api.post("/v2/pods", json=body)
    assert answer.status_code == 422, (
        f"unknown fields were not refused: {answer.status_code} {answer.text[:300]}"
    )
    error = error_from_response(status=answer.status_code, headers=answer.headers, body=answer.text)
    assert isinstance(error, RunPodUnprocessable)
    assert any("gpuCount" in e for e in error.errors), error.errors
    assert any("bogus" in e for e in error.errors), error.errors
    # The sandbox promises RunPod's exact wording; this is where that promise is checked.
    assert "$: additional properties 'gpuCount' not allowed" in error.errors, error.errors
    assert not [p for p in await runpod.list_pods() if marker.owns(p.env)]
