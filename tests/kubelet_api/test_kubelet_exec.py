"""exec, attach and port-forward against the kubelet API server itself, over real TLS.

The server is the real `KubeletApiServer` (uvicorn, the upgrade takeover, SPDY and WebSocket)
with stand-ins for what lies behind it: an authoriser that knows two users, a pod reader and a
RunPod answering from dicts, and `ssh_pods.LocalDialer` reaching an asyncssh server that runs
commands in a real `sh` here. The client side is `stream_clients` (SPDY as client-go speaks it,
WebSocket as kubectl's v5 and tunnelling clients do). The same through the real kube-apiserver
and kubectl: test_kubelet_exec_cluster.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ssh_pods import EchoServer, LocalDialer, SshPod, free_port, running_ssh_pod
from stream_clients import HttpAnswer, SpdyClient, WsClient, WsTunnel, spdy_exec, spdy_upgrade, ws_upgrade

from binder.kubelet_api.auth import AccessCheck, Identity
from binder.kubelet_api.server import KubeletApiServer
from binder.kubelet_api.streams import StreamTimings
from binder.pods.naming import owner_markers
from binder.settings import BinderSettings
from contract.annotations import POD_ID, TERMINATED
from kit.x509 import build_ca_certificate, build_leaf_certificate, new_ec_key, private_key_pem
from runpod_api.errors import RunPodNotFound
from runpod_api.models import Pod

NODE = "virtual-runpod"
NS = "ml"
UID = "1d2c3b4a-0000-1111-2222-333344445555"
ALLOWED = "alice"
DENIED = "mallory"
TOKEN = "token-of-alice"


# --- certificates ------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    clients: dict[str, tuple[Path, Path]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key = new_ec_key()
    ca = build_ca_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-kubelet-client-ca")]),
        key=ca_key,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    clients = {}
    for user in (ALLOWED, DENIED):
        key = new_ec_key()
        cert = build_leaf_certificate(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]),
            public_key=key.public_key(),
            ca_cert=ca,
            ca_key=ca_key,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=1),
            extended_usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        (directory / f"{user}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{user}.key").write_bytes(private_key_pem(key))
        clients[user] = (directory / f"{user}.crt", directory / f"{user}.key")
    return Pki(ca_file=ca_file, clients=clients)


def client_context(pki: Pki, user: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the serving certificate is self-signed
    if user is not None:
        cert, key = pki.clients[user]
        context.load_cert_chain(cert, key)
    return context


# --- what lies behind the server ---------------------------------------------------------------


class FakeAuth:
    def __init__(self) -> None:
        self.checks: list[tuple[str, AccessCheck]] = []

    async def authenticate_token(self, token: str) -> Identity | None:
        return Identity(user=ALLOWED) if token == TOKEN else None

    async def authorize_any(self, identity: Identity, checks: list[AccessCheck]) -> bool:
        self.checks += [(identity.user, check) for check in checks]
        return identity.user == ALLOWED


@dataclass
class World:
    ssh: SshPod
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    runpod_pods: dict[str, Pod] = field(default_factory=dict)

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get(f"{namespace}/{name}")

    async def get_pod(self, pod_id: str) -> Pod:
        if pod_id not in self.runpod_pods:
            raise RunPodNotFound(f"pod {pod_id} not found", status=404)
        return self.runpod_pods[pod_id]

    def add(
        self,
        name: str,
        *,
        annotations: dict[str, str] | None = None,
        phase: str = "Running",
        status: str = "RUNNING",
        ssh: bool = True,
        node: str = NODE,
    ) -> str:
        pod_id = f"rp-{name}"
        self.pods[f"{NS}/{name}"] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": UID,
                "annotations": {POD_ID: pod_id, **(annotations or {})},
            },
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": phase},
        }
        self.runpod_pods[pod_id] = Pod.model_validate(
            {
                "id": pod_id,
                "status": status,
                "env": owner_markers(cluster_id="c", namespace=NS, name=name, uid=UID, attempt=1),
                "ssh": {"direct": {"host": "203.0.113.7", "port": 41022, "username": "root"}}
                if ssh
                else None,
            }
        )
        return pod_id


@dataclass
class Served:
    server: KubeletApiServer
    world: World
    dialer: LocalDialer
    auth: FakeAuth
    pki: Pki
    port: int

    def context(self, user: str | None = ALLOWED) -> ssl.SSLContext:
        return client_context(self.pki, user)

    async def spdy(
        self, target: str, *, user: str | None = ALLOWED, **kwargs: Any
    ) -> SpdyClient | HttpAnswer:
        return await spdy_upgrade("127.0.0.1", self.port, self.context(user), target, **kwargs)

    async def exec_client(self, command: list[str], pod: str = "train", **flags: str) -> SpdyClient:
        query = [("command", c) for c in command] + list(flags.items())
        client = await self.spdy(f"/exec/{NS}/{pod}/main?{urlencode(query)}")
        assert isinstance(client, SpdyClient), client
        return client

    async def ws(
        self, target: str, protocols: list[str], user: str | None = ALLOWED
    ) -> WsClient | HttpAnswer:
        return await ws_upgrade("127.0.0.1", self.port, self.context(user), target, protocols=protocols)


FAST = StreamTimings(connect_timeout=1.0, idle_timeout=None, creation_timeout=1.0, first_resize_wait=1.0)


async def serve(
    pki: Pki, world: World, *, dialer: LocalDialer | None, timings: StreamTimings = FAST
) -> Served:
    auth = FakeAuth()
    settings = BinderSettings(
        runpod_api_key="unused",
        node_name=NODE,
        node_address="127.0.0.1",
        kubelet_client_ca_file=str(pki.ca_file),
    )
    server = KubeletApiServer(
        api=None,  # type: ignore[arg-type]  # every apiserver call has a stand-in here
        runpod=world,  # type: ignore[arg-type]
        settings=settings,
        port=0,
        ssh_dialer=dialer,
        auth=auth,  # type: ignore[arg-type]
        read_pod=world.read_pod,
        timings=timings,
    )
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.ready.wait(), 10)
    assert server.bound_port is not None
    served = Served(
        server=server,
        world=world,
        dialer=dialer or LocalDialer(world.ssh),
        auth=auth,
        pki=pki,
        port=server.bound_port,
    )
    served._task = task  # type: ignore[attr-defined]
    return served


async def stop(served: Served) -> None:
    task: asyncio.Task[None] = served._task  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def ssh_pod() -> AsyncIterator[SshPod]:
    async with running_ssh_pod() as pod:
        yield pod


@pytest.fixture
async def served(pki: Pki, ssh_pod: SshPod) -> AsyncIterator[Served]:
    world = World(ssh=ssh_pod)
    world.add("train")
    result = await serve(pki, world, dialer=LocalDialer(ssh_pod))
    try:
        yield result
    finally:
        await stop(result)


async def until(condition: Any, limit: float = 5.0) -> None:
    """Polls `condition` (state of other tasks, no event to wait on) for up to `limit` s."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# --- exec over SPDY ----------------------------------------------------------------------------


async def test_exec_runs_argv_over_ssh_and_reports_success(served: Served) -> None:
    client = await served.exec_client(["echo", "hi there", "$HOME"], output="1", error="1")
    assert client.protocol == "v4.channel.k8s.io"
    result = await spdy_exec(client)
    assert result.stdout == b"hi there $HOME\n"  # quoted: no shell expansion of argv
    assert result.stderr == b""
    assert result.status == {"status": "Success"}
    assert served.world.ssh.sessions[-1]["command"] == "echo 'hi there' '$HOME'"
    assert served.dialer.endpoints[-1].host == "203.0.113.7" and served.dialer.endpoints[-1].port == 41022
    await until(lambda: client.closed.is_set())
    assert client.goaway.is_set()


async def test_a_non_zero_exit_is_the_kubelets_status_with_the_exit_code(served: Served) -> None:
    client = await served.exec_client(["sh", "-c", "echo out; echo err >&2; exit 7"], output="1", error="1")
    result = await spdy_exec(client)
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert result.status == {
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 7",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }


async def test_a_signalled_command_exits_128_plus_the_signal(served: Served) -> None:
    client = await served.exec_client(["sh", "-c", "kill -9 $$"], output="1", error="1")
    result = await spdy_exec(client)
    assert result.status is not None and result.status["details"]["causes"][0]["message"] == "137"


async def test_stdin_reaches_the_command_and_its_eof_ends_it(served: Served) -> None:
    client = await served.exec_client(["cat"], input="1", output="1", error="1")
    payload = b"abc\n" + bytes(range(256)) * 1000  # binary, bigger than a frame and a channel window
    result = await spdy_exec(client, stdin=payload)
    assert result.stdout == payload and result.status == {"status": "Success"}


async def test_without_stdin_the_command_reads_eof(served: Served) -> None:
    client = await served.exec_client(["cat"], output="1", error="1")
    result = await asyncio.wait_for(spdy_exec(client), 10)
    assert result.stdout == b"" and result.status == {"status": "Success"}


async def test_a_tty_has_the_clients_size_and_follows_resizes(served: Served) -> None:
    client = await served.exec_client(
        ["sh", "-c", "stty size; read line; stty size; exit 3"], input="1", output="1", tty="1"
    )
    result = await spdy_exec(client, tty=True, resize=[(100, 30), (120, 40)], stdin_chunks=[b""])
    assert served.world.ssh.sessions[-1]["term"] == "xterm"
    assert b"30 100\r\n" in result.stdout and result.stdout.endswith(b"40 120\r\n")
    assert result.status is not None and result.status["details"]["causes"][0]["message"] == "3"


async def test_older_protocols_report_only_failures_as_text(served: Served) -> None:
    query = urlencode([("command", "sh"), ("command", "-c"), ("command", "exit 4"), ("output", "1")])
    for protocol in ("v3.channel.k8s.io", "v2.channel.k8s.io"):
        client = await served.spdy(f"/exec/{NS}/train/main?{query}", protocols=[protocol, "channel.k8s.io"])
        assert isinstance(client, SpdyClient) and client.protocol == protocol
        result = await spdy_exec(client, stderr=False)
        assert result.raw_status == b"command terminated with non-zero exit code: exit status 4"


async def test_protocol_negotiation_answers_as_the_kubelet(served: Served) -> None:
    answer = await served.spdy(
        f"/exec/{NS}/train/main?command=true&output=1", protocols=["v9.channel.k8s.io"]
    )
    assert isinstance(answer, HttpAnswer) and answer.status == 403
    assert answer.headers["x-accepted-stream-protocol-versions"] == "v4.channel.k8s.io"
    assert "unable to negotiate protocol" in answer.body
    answer = await served.spdy(f"/exec/{NS}/train/main?command=true&output=1", protocols=[])
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    answer = await served.spdy(f"/exec/{NS}/train/main?command=true")
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    assert answer.body == "you must specify at least 1 of stdin, stdout, stderr\n"


async def test_exec_with_no_command_is_refused(served: Served) -> None:
    answer = await served.spdy(f"/exec/{NS}/train/main?output=1")
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    assert "at least one command" in answer.body


async def test_streams_that_never_come_end_the_connection(served: Served) -> None:
    client = await served.exec_client(["true"], input="1", output="1")
    await client.open(streamType="error")  # stdin and stdout never opened
    await asyncio.wait_for(client.closed.wait(), 5)
    assert served.world.ssh.open_sessions() == 0


async def test_pings_are_answered(served: Served) -> None:
    client = await served.exec_client(["sleep", "1"], output="1")
    client.ping(5)
    await until(lambda: client.pongs == [5])
    await spdy_exec(client, stderr=False)


async def test_a_client_that_goes_away_ends_the_ssh_session(served: Served) -> None:
    client = await served.exec_client(["sleep", "60"], output="1")
    await client.open(streamType="error")
    await client.open(streamType="stdout")
    await until(lambda: served.world.ssh.open_sessions() == 1)
    await client.aclose()
    await until(lambda: served.world.ssh.open_sessions() == 0)
    await until(lambda: all(c.is_closed() for c in served.dialer.connections))  # type: ignore[attr-defined]


async def test_an_idle_session_is_closed(pki: Pki, ssh_pod: SshPod) -> None:
    world = World(ssh=ssh_pod)
    world.add("train")
    timings = StreamTimings(connect_timeout=1, idle_timeout=1.0, creation_timeout=1, first_resize_wait=0.1)
    served = await serve(pki, world, dialer=LocalDialer(ssh_pod), timings=timings)
    try:
        client = await served.exec_client(["sleep", "60"], output="1")
        await client.open(streamType="error")
        await client.open(streamType="stdout")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(10):  # pings do not count as activity
            client.ping(7)
            await asyncio.sleep(0.1)
        await asyncio.wait_for(client.closed.wait(), 5)
        assert 1.0 <= loop.time() - started < 4
        await until(lambda: ssh_pod.open_sessions() == 0)
    finally:
        await stop(served)


async def test_stopping_the_server_cuts_open_sessions(pki: Pki, ssh_pod: SshPod) -> None:
    world = World(ssh=ssh_pod)
    world.add("train")
    served = await serve(pki, world, dialer=LocalDialer(ssh_pod))
    client = await served.exec_client(["sleep", "60"], output="1")
    await client.open(streamType="error")
    await client.open(streamType="stdout")
    await until(lambda: ssh_pod.open_sessions() == 1)
    await asyncio.wait_for(stop(served), 10)
    await asyncio.wait_for(client.closed.wait(), 5)
    await until(lambda: ssh_pod.open_sessions() == 0)


# --- attach ------------------------------------------------------------------------------------


async def test_attach_opens_the_login_shell_with_stdin(served: Served) -> None:
    client = await served.spdy(f"/attach/{NS}/train/main?input=1&output=1&error=1")
    assert isinstance(client, SpdyClient)
    result = await spdy_exec(client, stdin=b"echo from-attach\nexit 3\n")
    assert served.world.ssh.sessions[-1]["command"] is None  # an SSH shell request
    assert result.stdout == b"from-attach\n"
    assert result.status is not None and result.status["reason"] == "NonZeroExitCode"


async def test_attach_without_stdin_says_what_to_do(served: Served) -> None:
    answer = await served.spdy(f"/attach/{NS}/train/main?output=1&error=1")
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    assert "needs -i" in answer.body and "kubectl logs -f train" in answer.body


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "status", "words"),
    [
        pytest.param({}, 404, ['pods "ghost" not found'], id="no such pod"),
        pytest.param({"node": "other-node"}, 404, ["not on node virtual-runpod"], id="other node"),
        pytest.param(
            {"phase": "Succeeded"}, 400, ["has completed (phase Succeeded)", "kubectl logs"], id="finished"
        ),
        pytest.param({"annotations": {TERMINATED: "true"}}, 400, ["has completed"], id="terminated"),
        pytest.param(
            {"annotations": {"runpod.io/ssh": "disabled"}},
            400,
            ["opted out of SSH", "recreate"],
            id="opted out",
        ),
        pytest.param({"status": "STARTING"}, 400, ["still starting", "Running"], id="not running yet"),
        pytest.param({"status": "EXITED"}, 400, ["has exited"], id="exited"),
        pytest.param({"ssh": False}, 400, ["no SSH endpoint", "22/tcp", "recreate"], id="no ssh.direct"),
    ],
)
async def test_pods_that_cannot_be_reached_are_refused_before_the_upgrade(
    served: Served, setup: dict[str, Any], status: int, words: list[str]
) -> None:
    name = "ghost" if not setup else "target"
    if setup:
        served.world.add("target", **setup)
    answer = await served.spdy(f"/exec/{NS}/{name}/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer), answer
    assert answer.status == status
    for word in words:
        assert word in answer.body
    assert not served.dialer.endpoints  # no SSH attempt


async def test_a_pod_not_created_yet_and_a_wrong_container_are_refused(served: Served) -> None:
    served.world.add("fresh")
    del served.world.pods[f"{NS}/fresh"]["metadata"]["annotations"][POD_ID]
    answer = await served.spdy(f"/exec/{NS}/fresh/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer) and "not running yet" in answer.body
    answer = await served.spdy(f"/exec/{NS}/train/sidecar?command=true&output=1")
    assert isinstance(answer, HttpAnswer) and 'container "sidecar" is not valid' in answer.body
    served.world.runpod_pods.clear()
    answer = await served.spdy(f"/exec/{NS}/train/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer) and "no longer exists" in answer.body


async def test_a_pod_without_sshd_is_refused_with_the_dialers_reason(served: Served) -> None:
    served.dialer.unavailable = (
        "RunPod pod rp-train runs no sshd (connection refused on port 22): use an image with sshd"
    )
    answer = await served.spdy(f"/exec/{NS}/train/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    assert answer.body == served.dialer.unavailable + "\n"


async def test_an_sshd_that_never_answers_is_refused_within_the_connect_timeout(served: Served) -> None:
    served.dialer.hang = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await served.spdy(f"/exec/{NS}/train/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer) and "no answer within 1 s" in answer.body
    assert loop.time() - started < 3


# --- authentication and authorisation ----------------------------------------------------------


async def test_callers_without_credentials_get_401_and_others_403_before_any_upgrade(served: Served) -> None:
    target = f"/exec/{NS}/train/main?command=true&output=1"
    anonymous = await served.spdy(target, user=None)
    assert isinstance(anonymous, HttpAnswer) and anonymous.status == 401
    denied = await served.spdy(target, user=DENIED)
    assert isinstance(denied, HttpAnswer) and denied.status == 403
    assert denied.body == "Forbidden (user=mallory, verb=create, resource=nodes, subresource(s)=[proxy])\n"
    assert not served.dialer.endpoints  # refused before anything reached for the pod
    token = await served.spdy(target, user=None, extra=[("Authorization", f"Bearer {TOKEN}")])
    assert isinstance(token, SpdyClient)
    await spdy_exec(token, stderr=False)
    ws = await served.ws(f"/exec/{NS}/train/main?command=true&output=1", ["v5.channel.k8s.io"], user=DENIED)
    assert isinstance(ws, HttpAnswer) and ws.status == 403
    assert [c.verb for u, c in served.auth.checks if u == DENIED] == ["create", "get"]
    assert {c.subresource for _, c in served.auth.checks} == {"proxy"}
    assert served.world.ssh.sessions and all(s["command"] == "true" for s in served.world.ssh.sessions)


async def test_a_plain_request_to_a_streaming_route_must_upgrade(served: Served) -> None:
    import httpx

    async with httpx.AsyncClient(verify=served.context()) as http:
        answer = await http.post(
            f"https://127.0.0.1:{served.port}/exec/{NS}/train/main?command=true&output=1"
        )
    assert (answer.status_code, answer.text) == (400, "Upgrade request required\n")


async def test_without_a_dialer_the_streaming_routes_answer_501(pki: Pki, ssh_pod: SshPod) -> None:
    world = World(ssh=ssh_pod)
    world.add("train")
    served = await serve(pki, world, dialer=None)
    try:
        answer = await served.spdy(f"/exec/{NS}/train/main?command=true&output=1")
        assert isinstance(answer, HttpAnswer) and answer.status == 501
        assert "not supported on a RunPod node" in answer.body
    finally:
        await stop(served)


# --- WebSocket ---------------------------------------------------------------------------------


async def test_exec_over_websocket_v5_with_stdin_half_close(served: Served) -> None:
    query = urlencode([("command", "sh"), ("command", "-c"), ("command", "cat; echo bye >&2; exit 5")])
    ws = await served.ws(
        f"/exec/{NS}/train/main?{query}&input=1&output=1&error=1", ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    )
    assert isinstance(ws, WsClient) and ws.protocol == "v5.channel.k8s.io"
    first = await ws.messages.get()
    assert first == (2, b"\x01")  # the empty "connected" message on stdout
    ws.send_channel(0, b"over ")
    ws.send_channel(0, b"websocket\n")
    ws.send(2, bytes([255, 0]))  # v5: close stdin
    channels = await asyncio.wait_for(ws.channels_until_close(), 10)
    assert channels[1] == b"over websocket\n" and channels[2] == b"bye\n"
    assert json.loads(channels[3])["details"]["causes"][0]["message"] == "5"
    assert ws.close_code == 1000


async def test_exec_over_websocket_v4_base64_with_a_tty(served: Served) -> None:
    query = urlencode([("command", "sh"), ("command", "-c"), ("command", "stty size")])
    ws = await served.ws(
        f"/exec/{NS}/train/main?{query}&output=1&tty=1&input=1", ["v4.base64.channel.k8s.io"]
    )
    assert isinstance(ws, WsClient) and ws.protocol == "v4.base64.channel.k8s.io"
    ws.send_channel(4, json.dumps({"Width": 132, "Height": 43}).encode())
    channels = await asyncio.wait_for(ws.channels_until_close(), 10)
    assert channels[1] == b"43 132\r\n" and json.loads(channels[3]) == {"status": "Success"}


async def test_a_websocket_asking_for_no_protocol_we_speak_is_refused(served: Served) -> None:
    answer = await served.ws(f"/exec/{NS}/train/main?command=true&output=1", ["channel.k8s.io"])
    assert isinstance(answer, HttpAnswer) and answer.status == 400
    assert "not supported" in answer.body


# --- port-forward ------------------------------------------------------------------------------


async def forward(client: SpdyClient, port: int, request_id: str, payload: bytes) -> tuple[bytes, bytes]:
    """kubectl's handleConnection: error stream (closed at once), data stream, bytes, FIN."""
    error = await client.open(streamType="error", port=str(port), requestID=request_id)
    await error.close()
    data = await client.open(streamType="data", port=str(port), requestID=request_id)
    await data.write(payload)
    await data.close()
    answer = await data.read_all()
    message = await error.read_all()
    return answer, message


async def test_port_forward_carries_bytes_both_ways_per_connection(served: Served) -> None:
    async with EchoServer() as echo:
        client = await served.spdy(f"/portForward/{NS}/train", protocols=["portforward.k8s.io"])
        assert isinstance(client, SpdyClient) and client.protocol == "portforward.k8s.io"
        results = await asyncio.gather(
            forward(client, echo.port, "0", b"hello tensorboard"),
            forward(client, echo.port, "1", b"x" * 200_000),
        )
        assert results[0] == (b"HELLO TENSORBOARD", b"")
        assert results[1] == (b"X" * 200_000, b"")
        assert echo.connections == 2
        assert served.world.ssh.forwards == [("127.0.0.1", echo.port)] * 2
        assert len(served.dialer.endpoints) == 1  # one SSH connection for the session
        await client.aclose()


async def test_port_forward_to_a_closed_port_says_so_on_the_error_stream(served: Served) -> None:
    port = free_port()
    client = await served.spdy(f"/portForward/{NS}/train", protocols=["portforward.k8s.io"])
    assert isinstance(client, SpdyClient)
    error = await client.open(streamType="error", port=str(port), requestID="0")
    await error.close()
    data = await client.open(streamType="data", port=str(port), requestID="0")
    message = await asyncio.wait_for(error.read_all(), 5)
    assert message.decode().startswith(f"error forwarding port {port} to pod {NS}/train: ")
    assert f"nothing accepts connections on 127.0.0.1:{port}" in message.decode()
    await until(lambda: data.reset_by_server is not None)
    await client.aclose()


async def test_port_forward_streams_without_a_valid_port_are_reset(served: Served) -> None:
    client = await served.spdy(f"/portForward/{NS}/train", protocols=["portforward.k8s.io"])
    assert isinstance(client, SpdyClient)
    stream = await client.open(streamType="data", port="http", requestID="0")
    assert stream.reset_by_server == 1  # PROTOCOL_ERROR
    await client.aclose()


async def test_a_lone_stream_of_a_pair_times_out_with_a_message(served: Served) -> None:
    client = await served.spdy(f"/portForward/{NS}/train", protocols=["portforward.k8s.io"])
    assert isinstance(client, SpdyClient)
    error = await client.open(streamType="error", port="8080", requestID="9")
    message = await asyncio.wait_for(error.read_all(), 5)
    assert message == b"timed out waiting for streams of request 9"
    await client.aclose()


async def test_port_forward_through_a_websocket_tunnel(served: Served) -> None:
    async with EchoServer() as echo:
        ws = await served.ws(f"/portForward/{NS}/train", ["SPDY/3.1+portforward.k8s.io"])
        assert isinstance(ws, WsClient) and ws.protocol == "SPDY/3.1+portforward.k8s.io"
        client = WsTunnel(ws).spdy()
        assert await forward(client, echo.port, "0", b"through the tunnel") == (b"THROUGH THE TUNNEL", b"")
        await ws.aclose()


# --- hygiene -----------------------------------------------------------------------------------


async def test_no_key_material_and_no_command_in_the_logs(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await served.exec_client(["sh", "-c", "echo SECRET-ARG=hunter2"], output="1")
    await spdy_exec(client, stderr=False)
    answer = await served.spdy(f"/exec/{NS}/ghost/main?command=true&output=1")
    assert isinstance(answer, HttpAnswer)
    text = caplog.text
    key = served.world.ssh.client_key
    for secret in (
        key.export_private_key().decode(),
        key.export_public_key().decode().split()[1],
        served.world.ssh.host_key.export_public_key().decode().split()[1],
        "hunter2",
    ):
        assert secret not in text
    assert "PRIVATE KEY" not in text
    assert "exec ml/train" in text  # what is logged: the route, never argv
