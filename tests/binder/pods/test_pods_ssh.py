"""SSH access of the pods the controller creates: real control plane, sandbox RunPod (with its
emulated sshd), in-process controller holding the binder's key pair."""

from __future__ import annotations

import logging
from typing import Any

import asyncssh
import pytest
from pods_support import Harness, make_plan, running_and_ready, wait_for

from binder.pods.kubeapi import KubePods
from binder.ssh.dialing import SshEndpoint, SshUnavailable, Unavailability
from binder.ssh.endpoints import ssh_endpoint
from binder.ssh.keys import generate_key_pair
from binder.ssh.pinning import format_pin, pinned_key
from binder.ssh.setup import build_dialer
from contract.annotations import SSH_HOST_KEY
from runpod_api.models import Pod

USERS_KEY = (
    asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop").export_public_key().decode().strip()
)


async def test_the_runpod_pod_carries_the_binders_key_and_22_tcp_unless_the_pod_opts_out(
    pods_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = pods_harness
    pair = generate_key_pair()
    h.ssh_public_key = pair.public_key
    await h.start()
    plan = make_plan(ports=("8888/http",))
    with_ssh = await h.create_pod("with-ssh", plan=plan, env=[{"name": "PUBLIC_KEY", "value": USERS_KEY}])
    own_22 = await h.create_pod("own-22", plan=make_plan(ports=("22/tcp", "8888/http")))
    opted_out = await h.create_pod("no-ssh", plan=plan, extra_annotations={"runpod.io/ssh": "disabled"})

    async def created(pod: dict[str, Any]) -> list[dict[str, Any]]:
        return h.runpod_pods(pod["metadata"]["uid"])

    (ssh,) = await wait_for(lambda: created(with_ssh), what="the RunPod pod of with-ssh")
    (own,) = await wait_for(lambda: created(own_22), what="the RunPod pod of own-22")
    (plain,) = await wait_for(lambda: created(opted_out), what="the RunPod pod of no-ssh")

    assert ssh["env"]["PUBLIC_KEY"] == f"{USERS_KEY}\n{pair.public_key}"
    assert ssh["ports"] == ["8888/http", "22/tcp"]
    assert own["ports"] == ["22/tcp", "8888/http"] and own["env"]["PUBLIC_KEY"] == pair.public_key
    assert "PUBLIC_KEY" not in plain["env"] and plain["ports"] == ["8888/http"]
    private = [
        line for line in pair.private_key.export_private_key().decode().splitlines() if "-----" not in line
    ]
    events = [str(e) for name in ("with-ssh", "own-22", "no-ssh") for e in await h.events(name)]
    logged = "\n".join(str(record.__dict__) for record in caplog.records)
    assert not any(line in text for line in private for text in [*events, logged])


async def test_the_dialer_reaches_a_created_pod_and_pins_its_host_key_on_the_pod(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    pair = generate_key_pair()
    h.ssh_public_key = pair.public_key
    controller = await h.start()
    created = await h.create_pod("shell", plan=make_plan())
    await wait_for(lambda: running_and_ready(h, "shell"), what="pod Running and Ready")
    (listed,) = h.runpod_pods(created["metadata"]["uid"])
    pod = await h.pod("shell")
    assert pod is not None
    endpoint = ssh_endpoint(pod=pod, runpod=Pod.model_validate(listed), public_key=pair.public_key)
    assert isinstance(endpoint, SshEndpoint), endpoint
    dialer = build_dialer(key_pair=pair, api=h.api, pods=lambda: controller.reflector.items.values())

    async with await dialer.connect(endpoint) as conn:
        done = await conn.run("echo hi", check=False)
        offered = conn.get_server_host_key()

    assert (done.stdout, done.exit_status) == ("hi\n", 0)

    async def pinned() -> asyncssh.SSHKey | None:
        current = await h.pod("shell")
        return pinned_key((current or {})["metadata"]["annotations"], listed["id"])

    assert offered is not None
    assert await wait_for(pinned, what="the host key annotation") == offered
    # A binder that starts afresh (no memory of the pin) reads it back from the pod.
    again = build_dialer(key_pair=pair, api=h.api, pods=lambda: controller.reflector.items.values())
    await wait_for(
        lambda: _annotated(controller.reflector.items.values(), listed["id"]), what="the pin in the cache"
    )
    async with await again.connect(endpoint) as conn:
        assert (await conn.run("sh -c 'exit 7'", check=False)).exit_status == 7

    # A pin of another key (as if sshd's key changed under us) makes the next binder refuse.
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    await KubePods(h.api).patch_annotations(
        h.namespace,
        "shell",
        {SSH_HOST_KEY: format_pin(listed["id"], impostor)},
        uid=created["metadata"]["uid"],
    )
    await wait_for(
        lambda: _pinned_in_cache(controller.reflector.items.values(), listed["id"], impostor),
        what="the new pin",
    )
    with pytest.raises(SshUnavailable) as refused:
        await build_dialer(
            key_pair=pair, api=h.api, pods=lambda: controller.reflector.items.values()
        ).connect(endpoint)
    assert refused.value.reason is Unavailability.HOST_KEY_CHANGED


async def _annotated(pods: Any, runpod_pod_id: str) -> bool:
    return any(
        pinned_key(p["metadata"].get("annotations") or {}, runpod_pod_id) is not None for p in list(pods)
    )


async def _pinned_in_cache(pods: Any, runpod_pod_id: str, key: asyncssh.SSHKey) -> bool:
    pins = [pinned_key(p["metadata"].get("annotations") or {}, runpod_pod_id) for p in list(pods)]
    return any(pin is not None and pin.public_data == key.public_data for pin in pins)
