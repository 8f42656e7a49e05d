"""The binder's SSH key pair: one per cluster, in a Secret, created once however many binders race."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from binder.settings import BinderSettings
from binder.ssh.keys import (
    SshKeyError,
    SshKeyPair,
    ensure_key_pair,
    generate_key_pair,
    key_pair_from_secret,
    secret_manifest,
)
from binder.ssh.setup import load_key_pair
from kit.kube import get_json


def private_lines(pair: SshKeyPair) -> list[str]:
    text = pair.private_key.export_private_key().decode()
    return [line for line in text.splitlines() if not line.startswith("-----")]


def test_the_secret_holds_the_pair_as_kubernetes_ssh_auth_and_reads_back_the_same() -> None:
    pair = generate_key_pair()
    secret = secret_manifest(name="runpod-kubelet-ssh", namespace="rk", pair=pair)

    assert secret["type"] == "kubernetes.io/ssh-auth"
    assert base64.b64decode(secret["data"]["ssh-publickey"]).decode() == pair.public_key + "\n"
    assert pair.public_key.startswith("ssh-ed25519 ") and pair.public_key.endswith(" runpod-kubelet")
    assert key_pair_from_secret(secret).public_key == pair.public_key


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({}, "Secret rk/runpod-kubelet-ssh has no ssh-privatekey; "),
        (
            {"ssh-privatekey": "bm90IGEga2V5"},
            "Secret rk/runpod-kubelet-ssh: ssh-privatekey is not an unencrypted",
        ),
        ({"ssh-privatekey": "%%%"}, "Secret rk/runpod-kubelet-ssh: ssh-privatekey is not an unencrypted"),
    ],
)
def test_a_secret_without_a_usable_key_is_an_error_naming_it_and_what_to_do(
    data: dict[str, str], detail: str
) -> None:
    secret = {"metadata": {"namespace": "rk", "name": "runpod-kubelet-ssh"}, "data": data}

    with pytest.raises(SshKeyError) as bad:
        key_pair_from_secret(secret)

    assert str(bad.value).startswith(detail)
    assert str(bad.value).endswith("delete it to have a new pair generated (pods created before then accept "
                                   "only the old key: recreate them for exec)")  # fmt: skip
    assert bad.value.__cause__ is None and "bm90" not in str(bad.value)


@pytest.mark.cluster
async def test_binders_racing_and_restarting_create_one_secret_and_share_its_pair(
    control_plane: Any, kube_api: ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = BinderSettings(runpod_api_key="k", namespace=namespace, ssh_key_secret="rk-ssh")
    generated: list[SshKeyPair] = []

    def counting() -> SshKeyPair:
        generated.append(generate_key_pair())
        return generated[-1]

    # Two replicas starting at once: both may find no Secret and generate; one create wins.
    racing = await asyncio.gather(
        ensure_key_pair(kube_api, namespace=namespace, name="rk-ssh", generate=counting),
        ensure_key_pair(kube_api, namespace=namespace, name="rk-ssh", generate=counting),
    )
    restarted = await load_key_pair(kube_api, settings)

    assert racing[0].public_key == racing[1].public_key == restarted.public_key
    assert racing[0].public_key in {pair.public_key for pair in generated}
    listed = await get_json(kube_api, f"/api/v1/namespaces/{namespace}/secrets")
    assert [s["metadata"]["name"] for s in listed["items"] if s["type"] == "kubernetes.io/ssh-auth"] == [
        "rk-ssh"
    ]
    logged = "\n".join(str(record.__dict__) for record in caplog.records)  # messages and extras
    for pair in {*generated, restarted}:
        assert not any(line in logged for line in private_lines(pair))
    assert restarted.fingerprint in logged
