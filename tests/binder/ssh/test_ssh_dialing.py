"""The binder's SSH dialer against the sandbox's emulated sshd: the pod is created with the
binder's create body (key and 22/tcp added by `with_ssh_access`), its endpoint comes from
`ssh_endpoint`, and every failure is one `SshUnavailable` with its reason."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import asyncssh
import pytest

from binder.ssh.access import with_ssh_access
from binder.ssh.dialing import AsyncsshDialer, SshEndpoint, SshUnavailable, Unavailability
from binder.ssh.endpoints import ssh_endpoint
from binder.ssh.keys import generate_key_pair
from runpod_api.client import RunPodClient
from runpod_api.models import CreateGpuConfig, CreatePodRequest, Pod
from sandbox.testing import RunningSandbox, running_sandbox

API_KEY = "test-key"
PAIR = generate_key_pair()
K8S_POD = {
    "metadata": {"namespace": "ml", "name": "train", "annotations": {}},
    "status": {"phase": "Running"},
}


@dataclass
class MemoryPins:
    keys: dict[str, asyncssh.SSHKey] = field(default_factory=dict)
    pinned_calls: int = 0

    async def pinned(self, endpoint: SshEndpoint) -> asyncssh.SSHKey | None:
        self.pinned_calls += 1
        return self.keys.get(endpoint.runpod_pod_id)

    async def pin(self, endpoint: SshEndpoint, key: asyncssh.SSHKey) -> None:
        self.keys[endpoint.runpod_pod_id] = key


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    timings = {"provisioningS": 0.05, "startingS": 0.05}
    with running_sandbox(
        api_key=API_KEY, seed=3, timings=timings, scenario={"sshdlessImages": ["nginx:*"]}
    ) as sb:
        yield sb


@pytest.fixture
async def runpod(sandbox: RunningSandbox) -> AsyncIterator[RunPodClient]:
    client = RunPodClient(api_key=API_KEY, base_url=sandbox.base_url)
    try:
        yield client
    finally:
        await client.aclose()


async def running_pod(runpod: RunPodClient, *, image: str = "runpod/pytorch:2.4") -> Pod:
    body = CreatePodRequest(
        name="rpvk-t-0",
        image=image,
        gpu=CreateGpuConfig(id="NVIDIA A40", count=1),
        ports=["6006/tcp"],
        env={"RPVK_OWNER": "t/ml/train"},
    )
    created = await runpod.create_pod(with_ssh_access(body, public_key=PAIR.public_key, annotations={}))
    for _ in range(200):
        pod = await runpod.get_pod(created.id)
        if pod.status == "RUNNING":
            return pod
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {created.id} never ran")


def endpoint_of(pod: Pod) -> SshEndpoint:
    endpoint = ssh_endpoint(pod=K8S_POD, runpod=pod, public_key=PAIR.public_key)
    assert isinstance(endpoint, SshEndpoint), endpoint
    return endpoint


async def test_the_dialer_runs_a_command_and_pins_the_host_key_on_first_use(runpod: RunPodClient) -> None:
    endpoint = endpoint_of(await running_pod(runpod))
    pins = MemoryPins()
    dialer = AsyncsshDialer(client_key=PAIR.private_key, pins=pins)

    async with await dialer.connect(endpoint) as conn:
        first = await conn.run("echo hi", check=False)
        offered = conn.get_server_host_key()
    async with await dialer.connect(endpoint) as conn:
        again = await conn.run("sh -c 'exit 7'", check=False)

    assert (first.stdout, first.exit_status, again.exit_status) == ("hi\n", 0, 7)
    assert offered is not None and pins.keys == {endpoint.runpod_pod_id: offered}


async def test_a_host_key_other_than_the_pinned_one_is_refused_before_authenticating(
    runpod: RunPodClient, sandbox: RunningSandbox
) -> None:
    endpoint = endpoint_of(await running_pod(runpod))
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    dialer = AsyncsshDialer(client_key=PAIR.private_key, pins=MemoryPins({endpoint.runpod_pod_id: impostor}))

    with pytest.raises(SshUnavailable) as refused:
        await dialer.connect(endpoint)

    assert refused.value.reason is Unavailability.HOST_KEY_CHANGED
    assert f"pinned {impostor.get_fingerprint()}, offered SHA256:" in str(refused.value)
    assert str(refused.value).startswith("the SSH host key of pod ml/train (RunPod pod ")
    assert type(refused.value.__cause__) is asyncssh.HostKeyNotVerifiable
    (state,) = [p for p in sandbox.admin.state()["pods"] if p["id"] == endpoint.runpod_pod_id]
    assert state["sshd"]["connections"] == 0


async def test_a_key_the_pod_does_not_list_is_refused_with_what_the_image_must_do(
    runpod: RunPodClient,
) -> None:
    endpoint = endpoint_of(await running_pod(runpod))
    stranger = asyncssh.generate_private_key("ssh-ed25519")

    with pytest.raises(SshUnavailable) as refused:
        await AsyncsshDialer(client_key=stranger, pins=MemoryPins()).connect(endpoint)

    assert refused.value.reason is Unavailability.KEY_REFUSED
    assert "must add every line of PUBLIC_KEY to root's authorized_keys" in str(refused.value)


async def test_an_image_without_sshd_is_refused_before_and_at_connecting(runpod: RunPodClient) -> None:
    pod = await running_pod(runpod, image="nginx:1.27")
    before = ssh_endpoint(pod=K8S_POD, runpod=pod, public_key=PAIR.public_key)
    (mapped,) = [p for p in pod.runtime.ports if p.private == 22]  # type: ignore[union-attr]
    # As a real RunPod pod would: ssh.direct reported, nothing listening behind it.
    direct = SshEndpoint(
        runpod_pod_id=pod.id, host=mapped.ip or "", port=mapped.public or 0, image=pod.image, pod="ml/train"
    )

    with pytest.raises(SshUnavailable) as refused:
        await AsyncsshDialer(client_key=PAIR.private_key, pins=MemoryPins()).connect(direct)

    assert not isinstance(before, SshEndpoint) and before.reason is Unavailability.NO_SSHD
    assert refused.value.reason is Unavailability.NO_SSHD
    assert str(refused.value) == (
        f"the image nginx:1.27 of pod ml/train runs no sshd (connection to {direct.host}:{direct.port} refused); "
        "use an image that starts sshd with PUBLIC_KEY, such as RunPod's official images"
    )


async def test_a_server_that_never_answers_times_out_within_the_connect_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the handshake completes in the kernel; nobody ever speaks SSH
        endpoint = SshEndpoint(
            runpod_pod_id="rp1", host="127.0.0.1", port=silent.getsockname()[1], pod="ml/train"
        )
        dialer = AsyncsshDialer(client_key=PAIR.private_key, pins=MemoryPins(), connect_timeout=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(SshUnavailable) as refused:
            await dialer.connect(endpoint)
        took = asyncio.get_running_loop().time() - started

    assert refused.value.reason is Unavailability.TIMEOUT and took < 3
    assert str(refused.value) == (
        f"the sshd of pod ml/train at 127.0.0.1:{endpoint.port} did not answer within 0.3 s; "
        "retry, or check that the pod is reachable"
    )


async def test_a_server_that_is_not_sshd_is_unreachable_not_a_foreign_error() -> None:
    async def not_ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_ssh, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SshUnavailable) as refused:
            await AsyncsshDialer(client_key=PAIR.private_key, pins=MemoryPins()).connect(
                SshEndpoint(runpod_pod_id="rp1", host="127.0.0.1", port=port, pod="ml/train")
            )
    finally:
        server.close()
        await server.wait_closed()

    assert refused.value.reason is Unavailability.UNREACHABLE
    # An SSH protocol error or the peer's reset, whichever the timing gives: never a foreign type.
    assert f"pod ml/train at 127.0.0.1:{port}" in str(refused.value)


async def test_no_key_material_reaches_the_logs(
    runpod: RunPodClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = endpoint_of(await running_pod(runpod))
    dialer = AsyncsshDialer(client_key=PAIR.private_key, pins=MemoryPins())

    async with await dialer.connect(endpoint) as conn:
        await conn.run("echo hi", check=False)
    with pytest.raises(SshUnavailable):
        await AsyncsshDialer(
            client_key=asyncssh.generate_private_key("ssh-ed25519"), pins=MemoryPins()
        ).connect(endpoint)

    private = PAIR.private_key.export_private_key().decode()
    secret_lines = [line for line in private.splitlines() if not line.startswith("-----")]
    logged = "\n".join(str(record.__dict__) for record in caplog.records)  # messages and extras
    assert "pinned the SSH host key" in logged
    assert not any(line in logged for line in secret_lines)
    assert repr(PAIR).count(PAIR.fingerprint) == 1 and "PRIVATE" not in repr(PAIR)
