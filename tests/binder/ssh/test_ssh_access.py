"""The binder's SSH access in the create body: its key in PUBLIC_KEY, 22/tcp in the ports."""

from __future__ import annotations

import pytest

from binder.ssh.access import has_key, merge_public_keys, ssh_opted_out, with_ssh_access
from runpod_api.models import CreateGpuConfig, CreatePodRequest

OURS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurs runpod-kubelet"
USERS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser alice@laptop"


def request(*, ports: list[str] | None = None, env: dict[str, str] | None = None) -> CreatePodRequest:
    return CreatePodRequest(
        name="rpvk-x-0",
        image="runpod/pytorch:2.4",
        gpu=CreateGpuConfig(id="NVIDIA A40", count=1),
        ports=ports,
        env={"RPVK_OWNER": "c/ns/p", **(env or {})},
    )


def test_the_create_body_carries_the_binders_key_and_22_tcp() -> None:
    body = with_ssh_access(request(ports=["8888/http"]), public_key=OURS, annotations={}).body()

    assert body["env"]["PUBLIC_KEY"] == OURS
    assert body["ports"] == ["8888/http", "22/tcp"]
    assert body["env"]["RPVK_OWNER"] == "c/ns/p"
    assert "startSsh" not in body


def test_a_users_public_key_stays_and_ours_goes_on_a_line_of_its_own_after_it() -> None:
    body = with_ssh_access(request(env={"PUBLIC_KEY": USERS + "\n"}), public_key=OURS, annotations={}).body()

    assert body["env"]["PUBLIC_KEY"] == f"{USERS}\n{OURS}"


@pytest.mark.parametrize("ports", [["22/tcp"], ["8888/http", "22/tcp"], ["22/http"]])
def test_port_22_the_plan_already_exposes_is_not_added_again(ports: list[str]) -> None:
    assert with_ssh_access(request(ports=ports), public_key=OURS, annotations={}).ports == ports


@pytest.mark.parametrize("value", ["disabled", " disabled "])
def test_a_pod_that_opted_out_gets_neither_key_nor_port(value: str) -> None:
    original = request(ports=["8888/http"], env={"PUBLIC_KEY": USERS})

    assert with_ssh_access(original, public_key=OURS, annotations={"runpod.io/ssh": value}) == original
    assert ssh_opted_out({"runpod.io/ssh": value})


def test_without_a_key_nothing_changes_and_enabled_is_the_default() -> None:
    original = request()

    assert with_ssh_access(original, public_key=None, annotations={}) == original
    assert not ssh_opted_out({"runpod.io/ssh": "enabled"}) and not ssh_opted_out({})


def test_keys_compare_by_type_and_key_whatever_the_comment() -> None:
    renamed = OURS.replace("runpod-kubelet", "someone-else")

    assert has_key(f"{USERS}\n{renamed}", OURS)
    assert not has_key(USERS, OURS)
    assert merge_public_keys(f"{USERS}\n{renamed}", OURS) == f"{USERS}\n{renamed}"
    assert merge_public_keys("  \n", OURS) == OURS
    assert merge_public_keys(None, OURS) == OURS
