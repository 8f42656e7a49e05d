"""The pure rules of exec, attach and port-forward: options, negotiation, statuses, quoting,
resize parsing, routes and targets, WebSocket framing, and the SPDY session's bookkeeping."""

from __future__ import annotations

import asyncio
import json
import shlex
import struct
from typing import Any

import pytest

from binder.kubelet_api import remotecommand
from binder.kubelet_api.portforward import pair_key, stream_problem
from binder.kubelet_api.remotecommand import (
    ExecOptions,
    ResizeDecoder,
    exit_code,
    negotiate,
    parse_exec_options,
    ssh_command,
    status_message,
)
from binder.kubelet_api.spdy import (
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStream,
    SynReply,
    SynStream,
)
from binder.kubelet_api.spdy_session import HIGH_WATER, SpdySession
from binder.kubelet_api.stream_targets import (
    StreamPath,
    StreamPod,
    StreamRefusal,
    check_pod,
    parse_stream_path,
    stream_target,
)
from binder.kubelet_api.websocket import (
    CloseCode,
    MessageDecoder,
    Opcode,
    WebSocketError,
    accept_key,
    choose_protocol,
    encode,
    requested_protocols,
)
from binder.pods.naming import owner_markers
from contract.annotations import POD_ID
from runpod_api.models import Pod

# --- options and negotiation -------------------------------------------------------------------


def test_exec_options_are_the_kubelets() -> None:
    assert parse_exec_options({"input": "1", "output": "1", "error": "1"}) == ExecOptions(
        True, True, True, False
    )
    # A terminal has one output: tty drops stderr.
    assert parse_exec_options({"output": "1", "error": "1", "tty": "1"}) == ExecOptions(
        False, True, False, True
    )
    # Only "1" counts, as in the kubelet (`req.FormValue(...) == "1"`).
    with pytest.raises(StreamRefusal, match="at least 1 of stdin, stdout, stderr"):
        parse_exec_options({"input": "true", "tty": "1"})


def test_negotiation_takes_the_clients_first_protocol_we_speak() -> None:
    offered = ["v5.channel.k8s.io, v4.channel.k8s.io", "v3.channel.k8s.io"]
    assert negotiate(offered, remotecommand.SPDY_PROTOCOLS) == "v4.channel.k8s.io"
    assert (
        negotiate(["v2.channel.k8s.io", "v4.channel.k8s.io"], remotecommand.SPDY_PROTOCOLS)
        == "v2.channel.k8s.io"
    )
    with pytest.raises(StreamRefusal) as none:
        negotiate(["channel.k8s.io"], remotecommand.SPDY_PROTOCOLS)
    assert none.value.status == 403
    assert ("X-Accepted-Stream-Protocol-Versions", "v4.channel.k8s.io") in none.value.headers
    with pytest.raises(StreamRefusal) as missing:
        negotiate([], remotecommand.SPDY_PROTOCOLS)
    assert missing.value.status == 400


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "hi"],
        ["sh", "-c", "exit 7"],
        ["printf", "%s\n", "it's", "$HOME", "a b", "*", ""],
        ["python3", "-c", 'print("x; rm -rf /")'],
        ["echo", "ünïcødé", "tab\there", "new\nline"],
    ],
)
def test_argv_is_quoted_so_the_remote_shell_runs_exactly_it(argv: list[str]) -> None:
    command = ssh_command(argv)
    assert shlex.split(command) == argv


def test_no_command_is_refused() -> None:
    with pytest.raises(StreamRefusal, match="at least one command"):
        ssh_command([])


def test_attach_without_stdin_says_what_to_do() -> None:
    assert remotecommand.attach_refusal(ExecOptions(True, True, False, True), pod="p") is None
    refusal = remotecommand.attach_refusal(ExecOptions(False, True, True, False), pod="train")
    assert refusal is not None and "kubectl attach -it train" in refusal.message


# --- statuses ----------------------------------------------------------------------------------


def test_exit_statuses_are_what_client_go_decodes() -> None:
    failure = json.loads(status_message("v4.channel.k8s.io", remotecommand.status_for(7)) or b"")
    # client-go's errorDecoderV4 needs reason NonZeroExitCode and a cause ExitCode "7".
    assert failure["status"] == "Failure" and failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert json.loads(status_message("v5.channel.k8s.io", remotecommand.status_for(0)) or b"") == {
        "status": "Success"
    }
    internal = remotecommand.status_for(None)
    assert internal["reason"] == "InternalError" and internal["code"] == 500
    # v2/v3: only a failure's message, nothing on success.
    assert status_message("v3.channel.k8s.io", remotecommand.status_for(0)) is None
    assert status_message("v2.channel.k8s.io", remotecommand.status_for(3)) == (
        b"command terminated with non-zero exit code: exit status 3"
    )


@pytest.mark.parametrize(
    ("status", "signal", "code"),
    [
        (0, None, 0),
        (7, None, 7),
        (300, None, 255),
        (None, None, None),
        (-1, None, None),
        (-1, ("KILL", False, "", ""), 137),
        (None, ("TERM", False, "", ""), 143),
        (None, ("SIGINT", False, "", ""), 130),
        (None, ("WEIRD", False, "", ""), 255),
    ],
)
def test_exit_codes_from_ssh(status: int | None, signal: Any, code: int | None) -> None:
    assert exit_code(status, signal) == code


def test_resize_messages_parse_however_the_bytes_are_cut() -> None:
    wire = b'{"Width":80,"Height":24}\n{"Width":132,"Height":43}\n{"Width":1,"Height":2}'
    for size in (1, 5, len(wire)):
        decoder = ResizeDecoder()
        sizes = []
        for at in range(0, len(wire), size):
            sizes += decoder.feed(wire[at : at + size])
        assert sizes == [(80, 24), (132, 43), (1, 2)]


def test_a_malformed_resize_stops_resizing_as_in_the_kubelet() -> None:
    decoder = ResizeDecoder()
    assert decoder.feed(b'{"Width":10,"Height":5} nonsense {"Width":1,"Height":1}') == [(10, 5)]
    assert decoder.broken and decoder.feed(b'{"Width":3,"Height":3}') == []


# --- routes and targets ------------------------------------------------------------------------


def test_streaming_routes_parse_with_and_without_a_uid() -> None:
    assert parse_stream_path("/exec/ml/train/main") == StreamPath("exec", "ml", "train", None, "main")
    assert parse_stream_path("/attach/ml/train/u-1/main") == StreamPath(
        "attach", "ml", "train", "u-1", "main"
    )
    assert parse_stream_path("/portForward/ml/train") == StreamPath("portForward", "ml", "train", None, None)
    assert parse_stream_path("/portForward/ml/train/u-1") == StreamPath(
        "portForward", "ml", "train", "u-1", None
    )
    for bad in ("/exec/ml/train", "/exec/ml//main", "/portForward/ml", "/run/ml/train/main"):
        assert parse_stream_path(bad) is None


def _pod(**changes: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": "train", "namespace": "ml", "uid": "u-1", "annotations": {POD_ID: "rp1"}},
        "spec": {
            "nodeName": "node",
            "containers": [{"name": "main"}, {"name": "side"}],
            "initContainers": [{"name": "setup"}],
        },
        "status": {"phase": "Running"},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            pod[section][field] = value
        else:
            pod[section] = value
    return pod


EXEC = StreamPath("exec", "ml", "train", None, "main")


def test_a_running_pod_on_this_node_is_a_target() -> None:
    assert check_pod(_pod(), EXEC, node_name="node") == StreamPod(runpod_pod_id="rp1", pod_uid="u-1")
    forward = StreamPath("portForward", "ml", "train", "u-1", None)
    assert check_pod(_pod(), forward, node_name="node").runpod_pod_id == "rp1"


@pytest.mark.parametrize(
    ("pod", "route", "status", "words"),
    [
        (None, EXEC, 404, 'pods "train" not found'),
        (_pod(spec__nodeName="elsewhere"), EXEC, 404, "not on node node"),
        (_pod(), StreamPath("exec", "ml", "train", "u-2", "main"), 404, "UID u-2 not found"),
        (
            _pod(),
            StreamPath("exec", "ml", "train", None, "side"),
            400,
            'a RunPod pod runs one container, "main"',
        ),
        (_pod(), StreamPath("exec", "ml", "train", None, "setup"), 400, "init and ephemeral containers"),
        (_pod(), StreamPath("exec", "ml", "train", None, "nope"), 400, 'container "nope" is not valid'),
        (_pod(status={"phase": "Failed"}), EXEC, 400, "completed (phase Failed)"),
        (_pod(metadata__annotations={POD_ID: "rp1", "runpod.io/ssh": "disabled"}), EXEC, 400, "opted out"),
        (_pod(metadata__annotations={}), EXEC, 400, "not running yet"),
    ],
)
def test_pods_that_cannot_be_reached(pod: Any, route: StreamPath, status: int, words: str) -> None:
    with pytest.raises(StreamRefusal) as refusal:
        check_pod(pod, route, node_name="node")
    assert refusal.value.status == status and words in refusal.value.message


def _runpod(
    status: str = "RUNNING",
    ssh: Any = "direct",
    uid: str = "u-1",
    ports: tuple[str, ...] = ("22/tcp",),
    mapped: bool = False,
) -> Pod:
    direct = {"host": "1.2.3.4", "port": 40022, "username": "root"}
    runtime = {"uptime": 5, "ports": [{"private": 22, "public": 40022, "ip": "1.2.3.4", "type": "tcp"}]}
    return Pod.model_validate(
        {
            "id": "rp1",
            "status": status,
            "image": "nginx:1.27",
            "ports": list(ports),
            "env": owner_markers(cluster_id="c", namespace="ml", name="train", uid=uid, attempt=1),
            "ssh": {"direct": direct} if ssh == "direct" else ssh,
            "runtime": runtime if mapped else None,
        }
    )


def test_the_endpoint_is_the_runpod_pods_ssh_direct() -> None:
    endpoint = stream_target(_runpod(), StreamPod("rp1", "u-1"), EXEC)
    assert (endpoint.runpod_pod_id, endpoint.host, endpoint.port, endpoint.username) == (
        "rp1",
        "1.2.3.4",
        40022,
        "root",
    )


@pytest.mark.parametrize(
    ("runpod", "words"),
    [
        (_runpod(uid="u-9"), "does not belong to pod ml/train"),
        (_runpod(status="STARTING"), "still starting"),
        (_runpod(status="EXITED"), "has exited"),
        (_runpod(status="MIGRATING"), "is MIGRATING, not RUNNING"),
        (_runpod(ports=(), ssh=None), "created without 22/tcp in its ports"),
        (_runpod(ssh=None), "no public address for 22/tcp"),
        (_runpod(ssh={"proxy": {"host": "ssh.runpod.io", "port": 22}}), "no public address for 22/tcp"),
        (_runpod(ssh=None, mapped=True), "the image nginx:1.27 of .* runs no sshd"),
    ],
)
def test_runpod_pods_that_cannot_be_reached(runpod: Pod, words: str) -> None:
    with pytest.raises(StreamRefusal, match=words):
        stream_target(runpod, StreamPod("rp1", "u-1"), EXEC)


# --- port-forward stream rules -----------------------------------------------------------------


class _Stream:
    def __init__(self, stream_id: int, **headers: str) -> None:
        self.id = stream_id
        self._headers = {k.lower(): v for k, v in headers.items()}

    def header(self, name: str) -> str:
        return self._headers.get(name.lower(), "")


def test_port_forward_streams_are_checked_and_paired_as_the_kubelet_does() -> None:
    assert stream_problem(_Stream(1, streamType="data", port="8080")) is None  # type: ignore[arg-type]
    assert stream_problem(_Stream(1, streamType="data")) == '"port" header is required'  # type: ignore[arg-type]
    assert "as a port" in (stream_problem(_Stream(1, streamType="data", port="0")) or "")  # type: ignore[arg-type]
    assert "as a port" in (stream_problem(_Stream(1, streamType="data", port="70000")) or "")  # type: ignore[arg-type]
    assert "invalid stream type" in (stream_problem(_Stream(1, streamType="x", port="1")) or "")  # type: ignore[arg-type]
    assert pair_key(_Stream(5, streamType="data", requestID="7")) == "7"  # type: ignore[arg-type]
    # Without requestID: the error stream's id names the pair, the data stream comes next.
    assert pair_key(_Stream(5, streamType="error")) == "5"  # type: ignore[arg-type]
    assert pair_key(_Stream(7, streamType="data")) == "5"  # type: ignore[arg-type]


# --- WebSocket framing -------------------------------------------------------------------------


def _client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04"
) -> bytes:
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        head = struct.pack(">BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack(">BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack(">BBQ", first, 0x80 | 127, length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_handshake_key_is_rfc_6455s_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_first_protocol_the_client_asks_for_that_we_speak_wins() -> None:
    asked = requested_protocols(["v5.channel.k8s.io, v4.channel.k8s.io", "base64.channel.k8s.io"])
    assert asked == ["v5.channel.k8s.io", "v4.channel.k8s.io", "base64.channel.k8s.io"]
    assert choose_protocol(asked, remotecommand.WEBSOCKET_PROTOCOLS) == "v5.channel.k8s.io"
    assert choose_protocol(["channel.k8s.io"], remotecommand.WEBSOCKET_PROTOCOLS) is None


def test_masked_fragmented_and_control_frames_decode() -> None:
    decoder = MessageDecoder()
    wire = (
        _client_frame(Opcode.BINARY, b"\x00abc", fin=False)
        + _client_frame(Opcode.PING, b"hb")
        + _client_frame(Opcode.CONTINUATION, b"def")
        + _client_frame(Opcode.BINARY, bytes(70_000))
        + _client_frame(Opcode.CLOSE, struct.pack(">H", 1000))
    )
    messages = []
    for at in range(0, len(wire), 999):
        messages += decoder.feed(wire[at : at + 999])
    assert [(m.opcode, len(m.payload)) for m in messages] == [
        (Opcode.PING, 2), (Opcode.BINARY, 7), (Opcode.BINARY, 70_000), (Opcode.CLOSE, 2),
    ]  # fmt: skip
    assert messages[1].payload == b"\x00abcdef"


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (struct.pack(">BB", 0x82, 3) + b"abc", CloseCode.PROTOCOL_ERROR),  # not masked
        (_client_frame(0x3, b"x"), CloseCode.PROTOCOL_ERROR),  # reserved opcode
        (_client_frame(Opcode.CONTINUATION, b"x"), CloseCode.PROTOCOL_ERROR),
        (_client_frame(Opcode.PING, b"x", fin=False), CloseCode.PROTOCOL_ERROR),
        (_client_frame(Opcode.TEXT, b"\xff"), CloseCode.INVALID_DATA),
        (bytes([0xC2, 0x80]) + b"\0\0\0\0", CloseCode.PROTOCOL_ERROR),  # RSV1 without an extension
    ],
)
def test_frames_breaking_the_rules_are_refused(wire: bytes, code: CloseCode) -> None:
    with pytest.raises(WebSocketError) as error:
        MessageDecoder().feed(wire)
    assert error.value.code == code


def test_oversized_messages_are_refused_before_they_are_buffered() -> None:
    with pytest.raises(WebSocketError) as error:
        MessageDecoder(max_message=1024).feed(struct.pack(">BBQ", 0x82, 0xFF, 1 << 30))
    assert error.value.code == CloseCode.TOO_BIG


def test_server_frames_are_unmasked_with_the_right_length_form() -> None:
    assert encode(Opcode.BINARY, b"ab") == b"\x82\x02ab"
    assert encode(Opcode.BINARY, bytes(300))[:4] == b"\x82\x7e\x01\x2c"
    assert encode(Opcode.BINARY, bytes(70_000))[:10] == b"\x82\x7f" + struct.pack(">Q", 70_000)


# --- the SPDY session --------------------------------------------------------------------------


class _Wire:
    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.frames: list[Any] = []
        self.closed = False
        self.paused = 0

    def write(self, data: bytes) -> None:
        self.frames += self.decoder.feed(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.paused -= 1


async def test_the_session_hands_out_streams_echoes_pings_and_refuses_bad_ids() -> None:
    wire, client = _Wire(), FrameEncoder()
    session = SpdySession(wire)
    session.data_received(client.encode(SynStream(stream_id=1, headers={"streamtype": ("stdin",)})))
    stream = await session.accept(within=1)
    assert stream is not None and stream.header("streamType") == "stdin"
    stream.reply()
    session.data_received(
        client.encode(Data(stream_id=1, data=b"abc"))
        + client.encode(Data(stream_id=1, fin=True))
        + client.encode(Ping(id=3))
        + client.encode(Ping(id=4))  # an answer to a ping of ours (even): not echoed
        + client.encode(SynStream(stream_id=1))  # an id already used
    )
    assert await stream.read() == b"abc" and await stream.read() == b""
    await stream.write(b"x" * 100_000)
    await stream.close()
    data = [f for f in wire.frames if isinstance(f, Data)]
    assert [len(f.data) for f in data] == [32768, 32768, 32768, 1696, 0] and data[-1].fin
    assert isinstance(wire.frames[0], SynReply)
    assert Ping(id=3) in wire.frames and Ping(id=4) not in wire.frames
    assert RstStream(stream_id=1, status=1) in wire.frames
    assert session.open_streams == 0  # both sides closed: forgotten
    session.data_received(client.encode(GoAway(last_good_stream_id=0)))
    assert await session.accept(within=1) is None
    await session.aclose()
    assert wire.closed and isinstance(wire.frames[-1], GoAway)


async def test_a_reader_that_falls_behind_pauses_the_connection() -> None:
    wire, client = _Wire(), FrameEncoder()
    session = SpdySession(wire)
    session.data_received(client.encode(SynStream(stream_id=1)))
    stream = await session.accept(within=1)
    assert stream is not None
    chunk = client.encode(Data(stream_id=1, data=bytes(65536)))
    for _ in range(HIGH_WATER // 65536 + 1):
        session.data_received(chunk)
    assert wire.paused == 1
    while session._buffered:
        await stream.read()
    assert wire.paused == 0
    await session.aclose()


async def test_a_protocol_error_ends_the_session_with_goaway() -> None:
    wire = _Wire()
    session = SpdySession(wire)
    session.data_received(struct.pack(">II", 0, 0))  # DATA on stream 0
    assert session.closed and wire.closed
    assert wire.frames[-1] == GoAway(last_good_stream_id=0, status=1)
    assert await session.accept(within=1) is None


async def test_the_idle_watchdog_ignores_pings() -> None:
    wire, client = _Wire(), FrameEncoder()
    now = [0.0]
    session = SpdySession(wire, idle_timeout=0.05, clock=lambda: now[0])
    session.data_received(client.encode(SynStream(stream_id=1)))
    for _ in range(3):
        session.data_received(client.encode(Ping(id=1)))
        now[0] += 0.02
        await asyncio.sleep(0.06)
    assert session.closed and wire.closed
    assert any(isinstance(f, RstStream) for f in wire.frames)
