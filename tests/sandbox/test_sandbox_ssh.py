"""The sandbox's emulated sshd, reached as the binder reaches a RunPod pod: through `ssh.direct`
of a pod created over the sandbox's HTTP API, with an asyncssh client and a key in PUBLIC_KEY."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import httpx
import pytest
from sandbox_helpers import API_KEY, FAST, POD_BODY, Contract, contract_client, wait_status

from sandbox.testing import RunningSandbox, running_sandbox

KEY = asyncssh.generate_private_key("ssh-ed25519", comment="test")
OTHER_KEY = asyncssh.generate_private_key("ssh-ed25519", comment="stranger")


def create(api: httpx.Client, **changes: Any) -> dict[str, Any]:
    body = {
        **POD_BODY,
        "ports": ["80/http", "22/tcp", "6006/tcp"],
        "env": {
            **POD_BODY["env"],
            "PUBLIC_KEY": "ssh-rsa AAAA-not-a-key someone\n" + KEY.export_public_key().decode(),
        },
        **changes,
    }
    created = api.post("/v2/pods", json=body)
    assert created.status_code == 201, created.text
    return wait_status(api, created.json()["id"], "RUNNING")


def act(api: httpx.Client, pod_id: str, action: str) -> httpx.Response:
    return api.post(f"/v2/pods/{pod_id}/action", json={"action": action})


async def connect(pod: dict[str, Any], key: asyncssh.SSHKey = KEY) -> asyncssh.SSHClientConnection:
    direct = pod["ssh"]["direct"]
    return await asyncssh.connect(
        direct["host"], direct["port"], username=direct["username"], client_keys=[key],
        known_hosts=None, agent_path=None, config=None,
    )  # fmt: skip


@pytest.fixture
def running(api: httpx.Client) -> dict[str, Any]:
    return create(api)


@pytest.fixture
async def conn(running: dict[str, Any]) -> AsyncIterator[asyncssh.SSHClientConnection]:
    connection = await connect(running)
    try:
        yield connection
    finally:
        connection.close()
        await connection.wait_closed()


def test_a_running_pod_with_22_tcp_reports_its_sshd_in_ssh_direct_and_the_port_mapping(
    running: dict[str, Any], sandbox: RunningSandbox
) -> None:
    direct = running["ssh"]["direct"]
    (mapped,) = [p for p in running["runtime"]["ports"] if p["private"] == 22]

    assert direct["host"] == "127.0.0.1" and direct["username"] == "root"
    assert (mapped["ip"], mapped["public"]) == (direct["host"], direct["port"])
    assert direct["command"] == f"ssh root@127.0.0.1 -p {direct['port']}"
    (state,) = [p for p in sandbox.admin.state()["pods"] if p["id"] == running["id"]]
    assert state["sshd"] == {"serving": True, "port": direct["port"], "connections": 0}


async def test_exec_runs_the_command_with_stdout_stderr_and_the_exit_status_apart(
    conn: asyncssh.SSHClientConnection,
) -> None:
    done = await conn.run("echo hi; nosuch", check=False)
    seven = await conn.run("sh -c 'exit 7'", check=False)

    assert (done.stdout, done.stderr, done.exit_status) == ("hi\n", "sh: nosuch: not found\n", 127)
    assert seven.exit_status == 7
    assert (await conn.run("exit 3", check=False)).exit_status == 3


async def test_exec_reads_stdin_to_its_end(conn: asyncssh.SSHClientConnection) -> None:
    piped = await conn.run("cat", input="abc\ndef", check=False)
    shell = await conn.run(
        "sh", input="echo one\nread X\nfrom-stdin\necho got $X\nexit 4\necho never\n", check=False
    )

    binary = await conn.run("cat", input=b"\x00\xff\xfe\r\n", encoding=None, check=False)

    assert (piped.stdout, piped.exit_status) == ("abc\ndef", 0)
    assert binary.stdout == b"\x00\xff\xfe\r\n"  # any bytes, unchanged
    assert (shell.stdout, shell.exit_status) == ("one\ngot from-stdin\n", 4)


async def test_the_env_is_the_containers_env(
    conn: asyncssh.SSHClientConnection, running: dict[str, Any]
) -> None:
    done = await conn.run("echo $RUNPOD_POD_ID $RPVK_OWNER; hostname", check=False)

    assert done.stdout.splitlines()[0] == f"{running['id']} c1a2/ns1/web-7f3a"


async def read_until(process: asyncssh.SSHClientProcess[str], text: str) -> str:
    seen = ""
    async with asyncio.timeout(5):
        while text not in seen:
            chunk = await process.stdout.read(1024)
            assert chunk, f"EOF before {text!r}; saw {seen!r}"
            seen += chunk
    return seen


async def test_a_terminal_session_is_a_shell_with_a_prompt_echo_and_the_window_size_as_it_changes(
    conn: asyncssh.SSHClientConnection,
) -> None:
    process = await conn.create_process(term_type="xterm", term_size=(100, 30))
    await read_until(process, "# ")
    process.stdin.write("stty size; tput cols\n")
    first = await read_until(process, "30 100\r\n100\r\n")
    process.change_terminal_size(120, 40)
    process.stdin.write("stty size; nosuch\n")
    second = await read_until(process, "sh: nosuch: not found\r\n")
    process.stdin.write("exit 5\n")
    done = await process.wait(check=False)

    assert "stty size; tput cols\r\n" in first  # echoed by the terminal
    assert "40 120\r\n" in second  # stderr on the terminal, CRLF line ends
    assert done.exit_status == 5


async def test_ctrl_c_on_a_terminal_kills_the_command_with_status_130(
    conn: asyncssh.SSHClientConnection,
) -> None:
    process = await conn.create_process("sleep 600", term_type="xterm")
    await asyncio.sleep(0.2)
    process.stdin.write("\x03")
    done = await asyncio.wait_for(process.wait(check=False), timeout=5)

    assert done.exit_status == 130


async def test_direct_tcpip_to_a_declared_port_carries_bytes_both_ways(
    conn: asyncssh.SSHClientConnection,
) -> None:
    reader, writer = await conn.open_connection("localhost", 6006, encoding=None)
    writer.write(b"\x00binary\xffbytes\n")
    echoed = await asyncio.wait_for(reader.readexactly(14), timeout=5)
    writer.write_eof()
    rest = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()

    assert (echoed, rest) == (b"\x00binary\xffbytes\n", b"")


async def test_an_http_port_answers_a_request(
    conn: asyncssh.SSHClientConnection, running: dict[str, Any]
) -> None:
    reader, writer = await conn.open_connection("127.0.0.1", 80, encoding=None)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == f"sandbox pod {running['id']} port 80/http: GET /metrics HTTP/1.1\n".encode()


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("localhost", 9999, "Connection refused: nothing listens on port 9999"),
        ("10.0.0.1", 6006, "10.0.0.1: the emulated pod reaches only its own ports (localhost)"),
    ],
)
async def test_direct_tcpip_elsewhere_is_refused_with_the_reason(
    conn: asyncssh.SSHClientConnection, host: str, port: int, reason: str
) -> None:
    with pytest.raises(asyncssh.ChannelOpenError) as refused:
        await conn.open_connection(host, port)

    assert refused.value.code == asyncssh.OPEN_CONNECT_FAILED
    assert refused.value.reason == reason


async def test_only_keys_in_public_key_and_only_root_get_in(running: dict[str, Any]) -> None:
    direct = running["ssh"]["direct"]
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(running, OTHER_KEY)
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            direct["host"], direct["port"], username="ubuntu", client_keys=[KEY],
            known_hosts=None, agent_path=None, config=None,
        )  # fmt: skip


async def test_an_sshd_less_image_reports_no_ssh_direct_and_its_port_refuses(
    api: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.admin.sshdless_images(["busybox:*"])
    pod = create(api, image="busybox:1.36")
    (mapped,) = [p for p in pod["runtime"]["ports"] if p["private"] == 22]

    assert pod["ssh"]["direct"] is None
    assert mapped["public"] and mapped["ip"] == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError):
        await asyncssh.connect(mapped["ip"], mapped["public"], known_hosts=None, agent_path=None, config=None)
    (state,) = [p for p in sandbox.admin.state()["pods"] if p["id"] == pod["id"]]
    assert state["sshd"]["serving"] is False


async def test_terminating_the_pod_ends_its_sessions_and_its_sshd(
    api: httpx.Client, running: dict[str, Any], sandbox: RunningSandbox
) -> None:
    connection = await connect(running)
    process = await connection.create_process("sleep infinity")

    assert (await asyncio.to_thread(api.delete, f"/v2/pods/{running['id']}")).status_code == 204
    await asyncio.wait_for(connection.wait_closed(), timeout=5)
    with pytest.raises((ConnectionRefusedError, OSError)):
        await connect(running)
    assert process.exit_status is None  # killed with its container, no status


async def test_a_stopped_pod_refuses_and_a_restarted_one_serves_again_with_the_same_host_key(
    api: httpx.Client, running: dict[str, Any]
) -> None:
    first = await connect(running)
    host_key = first.get_server_host_key()
    first.close()
    assert (await asyncio.to_thread(act, api, running["id"], "stop")).status_code == 200
    with pytest.raises(OSError):
        await connect(running)
    assert (await asyncio.to_thread(act, api, running["id"], "start")).status_code == 200
    again = wait_status(api, running["id"], "RUNNING")
    second = await connect(again)

    assert second.get_server_host_key() == host_key
    second.close()
    await second.wait_closed()


async def test_leaving_the_sandbox_closes_open_sessions_and_leaves_no_task(contract: Contract) -> None:
    block = running_sandbox(api_key=API_KEY, seed=2, timings=FAST)
    sandbox = block.__enter__()
    try:
        with contract_client(sandbox, contract) as api:
            pod = create(api)
        connection = await connect(pod)
        await connection.create_process("sleep infinity")
    finally:
        await asyncio.to_thread(block.__exit__, None, None, None)

    await asyncio.wait_for(connection.wait_closed(), timeout=5)
    assert sandbox.account.sshd is not None and sandbox.account.sshd.idle
