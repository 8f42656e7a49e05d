"""The binder's flags and environment: the seed's names keep working, the chart's env names map."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from binder.settings import default_identity, load_binder_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POD_NAME", "POD_IP", "GPU_BUDGET", "NODE_NAME", "NAMESPACE", "KUBECONFIG", "IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_test_key_123456")


def test_seed_flags_keep_their_names_and_meaning() -> None:
    settings = load_binder_settings(
        [
            "--nodename", "gpu-node",
            "--namespace", "runpod",
            "--max-gpu-price", "1.25",
            "--log-level", "debug",
            "--reconcile-interval", "12",
            "--datacenter-ids", "EU-RO-1, US-TX-3",
            "--kubeconfig", "/tmp/kubeconfig",
        ]
    )  # fmt: skip
    assert settings.node_name == "gpu-node"
    assert settings.namespace == "runpod"
    assert settings.max_gpu_price == 1.25
    assert settings.log_level == "debug"
    assert settings.reconcile_interval == 12
    assert settings.node_policy().allowed_datacenter_ids == ("EU-RO-1", "US-TX-3")
    assert settings.kubeconfig == "/tmp/kubeconfig"


def test_defaults_match_the_spec() -> None:
    settings = load_binder_settings([])
    assert settings.node_name == "virtual-runpod"
    assert settings.namespace == "kube-system"
    assert settings.reconcile_interval == 30
    assert settings.gpu_budget == 4
    assert settings.cpu_budget == 64
    assert settings.max_vcpu_price == 0.1
    assert settings.node_policy().max_vcpu_price == 0.1
    assert settings.kubelet_port == 10250
    assert settings.runpod_base_url == "https://api.runpod.io"
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (15, 10, 2)
    assert settings.leader_election is True


def test_the_cpu_budget_and_vcpu_cap_are_a_flag_and_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPU_BUDGET", "128")
    monkeypatch.setenv("MAX_VCPU_PRICE", "0.05")
    from_env = load_binder_settings([])
    assert (from_env.cpu_budget, from_env.node_policy().max_vcpu_price) == (128, 0.05)
    from_flags = load_binder_settings(["--cpu-budget", "8", "--max-vcpu-price", "0.07"])
    assert (from_flags.cpu_budget, from_flags.max_vcpu_price) == (8, 0.07)


def test_downward_api_environment_names_set_identity_and_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "binder-7c9d-x2")
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    monkeypatch.setenv("GPU_BUDGET", "16")
    settings = load_binder_settings([])
    assert settings.identity == "binder-7c9d-x2"
    assert settings.node_address == "10.1.2.3"
    assert settings.gpu_budget == 16


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_BUDGET", "16")
    assert load_binder_settings(["--gpu-budget", "2", "--no-leader-election"]).gpu_budget == 2
    assert load_binder_settings(["--no-leader-election"]).leader_election is False


def test_api_key_is_required_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_binder_settings([])
    assert "rp_test_key_123456" not in repr(settings)
    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(ValidationError):
        load_binder_settings([])


def test_identity_defaults_to_host_and_pid_so_two_local_replicas_differ() -> None:
    identity = load_binder_settings([]).identity
    assert identity == default_identity()
    assert identity.endswith(f"-{os.getpid()}")


@pytest.mark.parametrize(
    "flags",
    [
        ["--lease-duration", "10", "--renew-deadline", "10"],
        ["--renew-deadline", "2", "--retry-period", "2"],
        ["--kubelet-tls-cert-file", "/tls.crt"],
    ],
)
def test_inconsistent_settings_are_refused(flags: list[str]) -> None:
    with pytest.raises(ValidationError):
        load_binder_settings(flags)
