"""Every manifest in examples/ is admitted by the webhook's own functions against the catalog the
binder publishes from the sandbox RunPod, at the default node cap. No cluster needed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from binder.catalog_publisher import fetch_catalog
from contract.catalog import Catalog
from contract.plan import plan_from_annotations
from contract.policy import DEFAULT_MAX_GPU_PRICE, NodePolicy
from runpod_api.client import RunPodClient
from runpod_kubelet.demo_admission import Refused, admit_manifest
from sandbox.testing import running_sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def sandbox_catalog() -> Iterator[Catalog]:
    import asyncio

    with running_sandbox(api_key="examples-key", seed=1) as sandbox:

        async def fetch() -> Catalog:
            async with RunPodClient(api_key="examples-key", base_url=sandbox.base_url) as client:
                return await fetch_catalog(client, now=datetime.now(UTC))

        yield asyncio.run(fetch())


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_examples_cover_a_gpu_pod_with_an_http_port_a_gpu_job_a_cpu_job_and_job_level_annotations() -> (
    None
):
    kinds = {p.name: [d["kind"] for d in _documents(p)] for p in EXAMPLE_FILES}
    assert kinds == {
        "cpu-job.yaml": ["Job"],
        "gpu-job.yaml": ["Job"],
        "gpu-pod.yaml": ["Pod"],
        "job-level-annotations.yaml": ["Job"],
    }
    for path in EXAMPLE_FILES:
        assert path.read_text().startswith("#"), f"{path.name} opens with comments explaining it"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_each_example_is_admitted_at_the_default_node_cap(path: Path, sandbox_catalog: Catalog) -> None:
    policy = NodePolicy()
    assert policy.max_gpu_price == DEFAULT_MAX_GPU_PRICE == 0.5
    for document in _documents(path):
        admitted = admit_manifest(document, namespace="default", catalog=sandbox_catalog, policy=policy)
        plan = plan_from_annotations(admitted.pod["metadata"]["annotations"])
        assert plan.catalog_revision == sandbox_catalog.revision
        cap = policy.max_unit_price(plan.compute_type)
        assert all(plan.unit_price(c) <= cap for c in plan.candidates)
        for candidate in plan.candidates:
            if plan.compute_type == "CPU":
                assert (
                    candidate.cpu_type_id is not None
                    and sandbox_catalog.cpu(candidate.cpu_type_id) is not None
                )
                continue
            gpu = sandbox_catalog.gpu(candidate.gpu_type_id or "")
            assert gpu is not None and gpu.memory_gb >= 16


def test_the_cpu_job_runs_on_the_cheapest_cpu_flavour_that_holds_it_and_buys_no_gpu(
    sandbox_catalog: Catalog,
) -> None:
    (job,) = _documents(EXAMPLES / "cpu-job.yaml")
    admitted = admit_manifest(job, namespace="default", catalog=sandbox_catalog, policy=NodePolicy())
    template = admitted.manifest["spec"]["template"]
    plan = plan_from_annotations(template["metadata"]["annotations"])
    assert plan.compute_type == "CPU" and plan.gpu_count == 0 and plan.max_vcpu_price == 0.05
    # cpu 2 and 4 GB: 2 vCPUs of the cheapest flavour (2 GB each), in each data center with stock.
    assert [(c.cpu_type_id, c.vcpu_count) for c in plan.candidates] == [("cpu3c", 2)] * len(plan.candidates)
    assert plan.candidates[0].usd_per_hour == 0.06
    assert "nvidia.com/gpu" not in str(template["spec"]["containers"][0]["resources"])


def test_the_pod_example_exposes_8888_as_http(sandbox_catalog: Catalog) -> None:
    (pod,) = _documents(EXAMPLES / "gpu-pod.yaml")
    admitted = admit_manifest(pod, namespace="default", catalog=sandbox_catalog, policy=NodePolicy())
    plan = plan_from_annotations(admitted.manifest["metadata"]["annotations"])
    assert [str(p) for p in plan.ports] == ["8888/http"]
    assert plan.max_gpu_price == 0.4


def test_the_job_level_annotations_reach_the_plan_of_the_jobs_pods(sandbox_catalog: Catalog) -> None:
    (job,) = _documents(EXAMPLES / "job-level-annotations.yaml")
    admitted = admit_manifest(job, namespace="default", catalog=sandbox_catalog, policy=NodePolicy())
    template = admitted.manifest["spec"]["template"]
    plan = plan_from_annotations(template["metadata"]["annotations"])
    assert plan.cloud == "COMMUNITY"
    assert [str(p) for p in plan.ports] == ["6006/tcp"]
    assert plan.container_disk_gb == 20
    assert {sandbox_catalog.gpu(c.gpu_type_id).memory_gb >= 24 for c in plan.candidates} == {True}  # type: ignore[union-attr]


def test_a_typo_in_an_example_is_refused_with_a_did_you_mean(sandbox_catalog: Catalog) -> None:
    (pod,) = _documents(EXAMPLES / "gpu-pod.yaml")
    annotations = pod["metadata"]["annotations"]
    annotations["runpod.io/gpu-memory"] = annotations.pop("runpod.io/required-gpu-memory")
    with pytest.raises(Refused) as refused:
        admit_manifest(pod, namespace="default", catalog=sandbox_catalog, policy=NodePolicy())
    assert "did you mean runpod.io/required-gpu-memory?" in refused.value.message
