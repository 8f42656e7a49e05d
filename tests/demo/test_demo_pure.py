"""The demo's decisions and wording, without a cluster: RunPod target, prompts, narration lines,
and the client-side JSONPatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.plan import Candidate, Plan, Port
from runpod_kubelet.demo import parse_options
from runpod_kubelet.demo_admission import apply_json_patch
from runpod_kubelet.demo_render import (
    DemoError,
    choose_runpod,
    exit_code_of,
    job_finished,
    needs_confirmation,
    progress_line,
    render_catalog,
    render_plan,
)


def test_without_live_the_demo_uses_the_sandbox_even_when_a_runpod_key_is_set() -> None:
    target = choose_runpod(live=False, environ={"RUNPOD_API_KEY": "real-key"}, sandbox_key="sandbox-k")
    assert not target.live
    assert target.api_key == "sandbox-k"
    assert target.base_url is None
    assert target.notice is not None and "not used" in target.notice
    assert "real-key" not in repr(target) and "real-key" not in target.notice


def test_without_live_and_without_a_key_nothing_is_said_about_keys() -> None:
    target = choose_runpod(live=False, environ={}, sandbox_key="sandbox-k")
    assert target.notice is None and target.api_key == "sandbox-k"


def test_live_needs_a_runpod_key() -> None:
    with pytest.raises(DemoError, match="RUNPOD_API_KEY"):
        choose_runpod(live=True, environ={}, sandbox_key="s")
    target = choose_runpod(live=True, environ={"RUNPOD_API_KEY": "real-key"}, sandbox_key="s")
    assert target.live and target.api_key == "real-key"
    assert "real-key" not in repr(target)


@pytest.mark.parametrize(
    ("yes", "environ", "expected"),
    [
        (False, {}, True),
        (True, {}, False),
        (False, {"CI": "true"}, False),
        (False, {"CI": "false"}, True),
    ],
)
def test_prompts_are_skipped_with_yes_or_in_ci(yes: bool, environ: dict[str, str], expected: bool) -> None:
    assert needs_confirmation(yes=yes, environ=environ) is expected


def test_kubeconfig_from_the_environment_selects_the_existing_cluster_unless_local(tmp_path: Path) -> None:
    env = {"KUBECONFIG": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"}
    assert parse_options([], env).kubeconfig == tmp_path / "a"
    assert parse_options(["--local"], env).kubeconfig is None
    assert parse_options([], {}).kubeconfig is None
    flag = parse_options(["--kubeconfig", str(tmp_path / "c")], env)
    assert flag.kubeconfig == tmp_path / "c"


def test_live_without_confirmation_starts_nothing_and_shows_the_price_cap(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KUBECONFIG")}
    env["RUNPOD_API_KEY"] = "not-a-real-key"
    result = subprocess.run(
        [sys.executable, "-m", "runpod_kubelet.cli", "demo", "--live", "--data-dir", str(tmp_path / "d")],
        input="n\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "price cap: $0.5 per GPU-hour" in result.stdout
    assert "at most $1.00/hour" in result.stdout
    assert "not confirmed; nothing was started" in result.stdout
    assert "not-a-real-key" not in result.stdout + result.stderr
    assert not (tmp_path / "d").exists()


def test_the_plan_is_narrated_with_gpu_price_data_centers_and_ports() -> None:
    plan = Plan(
        candidates=(
            Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.88, stock="HIGH"),
            Candidate(gpu="NVIDIA L4", usdPerHour=0.86),
        ),
        gpu_count=2,
        cloud="SECURE",
        datacenter_ids=("EU-RO-1", "US-KS-2"),
        ports=(Port(number=8888, protocol="http"), Port(number=22, protocol="tcp")),
        container_disk_gb=50,
        max_gpu_price=0.5,
        catalog_revision="abc",
    )
    assert render_plan(plan) == [
        "GPU candidates, tried in this order (2 GPU, SECURE cloud):",
        "  1. NVIDIA A40 in EU-RO-1 at $0.88/hour, stock HIGH",
        "  2. NVIDIA L4 in any data center at $0.86/hour",
        "price cap: $0.5 per GPU-hour",
        "data centers: EU-RO-1,US-KS-2",
        "ports: 8888/http,22/tcp",
        "container disk: 50 GB",
        "catalog revision: abc",
    ]


def test_a_cpu_plan_is_narrated_with_flavours_vcpus_and_the_vcpu_cap() -> None:
    plan = Plan(
        compute_type="CPU",
        candidates=(
            Candidate(cpu_type_id="cpu3c", vcpu_count=4, datacenter_id="EU-RO-1", usd_per_hour=0.12),
        ),
        gpu_count=0,
        cloud="SECURE",
        container_disk_gb=20,
        max_vcpu_price=0.05,
        catalog_revision="abc",
    )
    assert render_plan(plan)[:3] == [
        "CPU candidates (a RunPod CPU pod, no GPU), tried in this order (SECURE cloud):",
        "  1. cpu3c x4 vCPU in EU-RO-1 at $0.12/hour",
        "price cap: $0.05 per vCPU-hour",
    ]
    cuda = Plan(
        candidates=(Candidate(gpu_type_id="NVIDIA A40", usd_per_hour=0.44),),
        cloud="SECURE",
        container_disk_gb=20,
        max_gpu_price=0.5,
        min_cuda_version="12.8",
        catalog_revision="abc",
    )
    assert "host CUDA: CUDA >= 12.8" in render_plan(cuda)
    running = {
        "metadata": {
            "annotations": {
                "runpod.io/pod-id": "p2",
                "runpod.io/cpu-type": "cpu3c",
                "runpod.io/vcpu-count": "4",
                "runpod.io/datacenter-id": "EU-RO-1",
            }
        },
        "spec": {"nodeName": "virtual-runpod"},
        "status": {"phase": "Running"},
    }
    assert progress_line(running) == "Running; RunPod pod p2 (cpu3c x4 vCPU in EU-RO-1)"


def test_progress_lines_show_phase_container_state_and_the_runpod_pod() -> None:
    pending = {"spec": {}, "status": {"phase": "Pending"}}
    assert progress_line(pending) == "Pending; not scheduled yet"
    done = {
        "metadata": {
            "annotations": {
                "runpod.io/pod-id": "p1",
                "runpod.io/gpu-type": "NVIDIA L4",
                "runpod.io/datacenter-id": "EU-RO-1",
                "runpod.io/cost-per-hour": "0.43",
                "runpod.io/terminated": "2026-01-01T00:00:00Z",
            }
        },
        "spec": {"nodeName": "virtual-runpod"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"reason": "Error", "exitCode": 3}}}],
        },
    }
    assert progress_line(done) == (
        "Failed; terminated: Error, exit code 3; RunPod pod p1 (NVIDIA L4 in EU-RO-1, $0.43/hour); "
        "RunPod pod terminated"
    )
    assert exit_code_of(done) == 3
    assert exit_code_of(pending) is None


def test_a_job_is_finished_only_by_a_true_complete_or_failed_condition() -> None:
    assert job_finished({"status": {}}) is None
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) is None
    assert job_finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert job_finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"


def test_the_client_side_patch_applies_what_the_webhook_emits_without_touching_the_input() -> None:
    pod = {"metadata": {"annotations": {"a/b": "1", "plan.runpod.io/x": "old"}}, "spec": {"containers": [{}]}}
    patched = apply_json_patch(
        pod,
        (
            {"op": "remove", "path": "/metadata/annotations/plan.runpod.io~1x"},
            {"op": "add", "path": "/metadata/annotations/plan.runpod.io~1version", "value": "1"},
            {
                "op": "add",
                "path": "/spec/containers/0/resources",
                "value": {"limits": {"nvidia.com/gpu": "1"}},
            },
        ),
    )
    assert patched == {
        "metadata": {"annotations": {"a/b": "1", "plan.runpod.io/version": "1"}},
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    assert pod["metadata"]["annotations"]["plan.runpod.io/x"] == "old"


def test_the_catalog_lists_the_cheapest_first_and_marks_what_fits_under_the_node_cap() -> None:
    from contract.catalog import build_catalog

    def gpu(gpu_id: str, memory: int, secure: float, community: float, dcs: list[str]) -> dict[str, object]:
        return {
            "id": gpu_id,
            "name": gpu_id,
            "memory": memory,
            "price": {"secure": secure, "community": community},
            "dataCenters": [{"id": dc, "availability": "HIGH"} for dc in dcs],
        }

    answer = {
        "gpus": [
            gpu("NVIDIA H100", 80, 2.69, 0, ["US-KS-2"]),
            gpu("NVIDIA L4", 24, 0.43, 0, ["EU-RO-1", "US-KS-2"]),
            gpu("NVIDIA A4000", 16, 0.35, 0.17, []),
        ]
    }
    lines = render_catalog(build_catalog(gpus_by_cloud={"SECURE": answer}), cap=0.5, limit=2)
    assert lines[0].endswith("* = at or under the node cap $0.5/GPU-hour (2 types)")
    assert lines[2].split() == ["*", "NVIDIA", "A4000", "16", "GB", "$0.35", "$0.17", "no", "stock"]
    assert lines[3].split() == ["*", "NVIDIA", "L4", "24", "GB", "$0.43", "-", "EU-RO-1,US-KS-2"]
    assert lines[4] == "   ... and 1 more"
