"""A stand-in for a RunPod pod's sshd, and a dialer that reaches it, for the streaming tests.

`SshPod` is an asyncssh server on 127.0.0.1 that runs each session's command in a real `sh`
on this machine (an exec request runs `sh -c <command>`, a shell request `sh`), over pipes or,
when the client asked for a pty, over a real pseudo-terminal sized and resized as the client
says (so `stty size` reports it); exit codes and signals go back as SSH exit-status /
exit-signal. It accepts `direct-tcpip` channels to anything on 127.0.0.1 (nothing else), so a
port-forward reaches an `EchoServer` here. It only lets the test's client key in.

`LocalDialer` is the `binder.ssh.dialing.SshDialer` of the tests: whatever endpoint the RunPod
pod reports, it connects to the `SshPod` with the client key and pins the pod's host key; it can
be told to fail as a pod without sshd does (`unavailable`), or to never answer (`hang`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from binder.ssh.dialing import SshEndpoint, SshUnavailable

CHUNK = 65536


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _copy_out(reader: asyncio.StreamReader, writer: Any) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()


def _exit(process: asyncssh.SSHServerProcess[bytes], returncode: int) -> None:
    if returncode < 0:
        process.exit_with_signal(signal.Signals(-returncode).name.removeprefix("SIG"))
    else:
        process.exit(returncode)


def _hang_up(proc: asyncio.subprocess.Process) -> None:
    """Kills the session's whole process group (sh may have forked), as sshd's hang-up does."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _or_channel_closed(process: asyncssh.SSHServerProcess[bytes], work: asyncio.Future[Any]) -> bool:
    """Waits for `work`; False (and `work` cancelled) if the client closed the channel first,
    as sshd hangs up on a session whose channel is gone."""
    closed = asyncio.ensure_future(process.channel.wait_closed())
    done, _ = await asyncio.wait([work, closed], return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    if work in done:
        work.result()
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    return False


async def _run_pipes(process: asyncssh.SSHServerProcess[bytes], command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    async def feed() -> None:
        try:
            while True:
                try:
                    data = await process.stdin.read(CHUNK)
                except asyncssh.TerminalSizeChanged:
                    continue
                if not data:
                    break
                stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with contextlib.suppress(Exception):
                stdin.close()

    feeding = asyncio.create_task(feed())
    try:
        outputs = asyncio.gather(
            _copy_out(proc.stdout, process.stdout), _copy_out(proc.stderr, process.stderr)
        )
        if await _or_channel_closed(process, outputs):
            returncode = await proc.wait()
            _exit(process, returncode)
    finally:
        feeding.cancel()
        _hang_up(proc)
        # Read the pipes to their end so their transports close.
        await asyncio.gather(proc.stdout.read(), proc.stderr.read(), proc.wait(), return_exceptions=True)
        with contextlib.suppress(Exception):
            stdin.close()


async def _run_pty(process: asyncssh.SSHServerProcess[bytes], command: str | None) -> None:
    width, height, _, _ = process.get_terminal_size()
    master, slave = pty.openpty()
    _set_size(master, width or 80, height or 24)
    argv = ["sh", "-c", command] if command is not None else ["sh", "-i"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    drained = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(master, CHUNK)
        except OSError:
            data = b""
        if data:
            process.stdout.write(data)
        else:
            loop.remove_reader(master)
            drained.set()

    loop.add_reader(master, readable)

    async def feed() -> None:
        while True:
            try:
                data = await process.stdin.read(CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                _set_size(master, change.width, change.height)
                continue
            if not data:
                return
            os.write(master, data)

    feeding = asyncio.create_task(feed())
    try:
        if not await _or_channel_closed(process, asyncio.ensure_future(proc.wait())):
            return
        returncode = await proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await drained.wait()
        _exit(process, returncode)
    finally:
        feeding.cancel()
        loop.remove_reader(master)
        os.close(master)
        _hang_up(proc)
        await proc.wait()


@dataclass
class SshPod:
    port: int = 0
    host_key: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    client_key: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    sessions: list[dict[str, Any]] = field(default_factory=list)
    forwards: list[tuple[str, int]] = field(default_factory=list)
    server: asyncssh.SSHAcceptor | None = None

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        record = {"command": process.command, "term": process.get_terminal_type(), "ended": False}
        self.sessions.append(record)
        try:
            if process.get_terminal_type():
                await _run_pty(process, process.command)
            else:
                await _run_pipes(process, process.command if process.command is not None else "exec sh")
        except Exception as exc:  # a test double: say what broke on the session
            process.stderr.write(f"ssh test server: {exc!r}\n".encode())
            process.exit(254)
        finally:
            record["ended"] = True

    async def start(self) -> None:
        pod = self

        class Server(asyncssh.SSHServer):
            def connection_requested(
                self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
            ) -> bool:
                pod.forwards.append((dest_host, dest_port))
                return dest_host in ("127.0.0.1", "localhost")

        self.server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            process_factory=self._handle,
            encoding=None,
            line_editor=False,
            allow_pty=True,
            agent_forwarding=False,
            x11_forwarding=False,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def open_sessions(self) -> int:
        return sum(1 for s in self.sessions if not s["ended"])


@contextlib.asynccontextmanager
async def running_ssh_pod() -> AsyncIterator[SshPod]:
    pod = SshPod()
    await pod.start()
    try:
        yield pod
    finally:
        await pod.stop()


@dataclass
class LocalDialer:
    """An `SshDialer` that reaches `pod` whatever the endpoint says."""

    pod: SshPod
    unavailable: str | None = None
    hang: bool = False
    # RunPod pod id -> the refusal a pod without sshd gets.
    no_sshd: dict[str, str] = field(default_factory=dict)
    endpoints: list[SshEndpoint] = field(default_factory=list)
    connections: list[asyncssh.SSHClientConnection] = field(default_factory=list)

    async def connect(self, endpoint: SshEndpoint) -> asyncssh.SSHClientConnection:
        self.endpoints.append(endpoint)
        if self.unavailable is not None:
            raise SshUnavailable(self.unavailable)
        if endpoint.runpod_pod_id in self.no_sshd:
            raise SshUnavailable(self.no_sshd[endpoint.runpod_pod_id])
        if self.hang:
            await asyncio.Event().wait()
        conn = await asyncssh.connect(
            "127.0.0.1",
            self.pod.port,
            username=endpoint.username,
            client_keys=[self.pod.client_key],
            known_hosts=([self.pod.host_key.convert_to_public()], [], []),
            connect_timeout=10,
        )
        self.connections.append(conn)
        return conn


class EchoServer:
    """A TCP listener on 127.0.0.1 that sends back what it gets in upper case (so an answer is
    told from an echo of the request); counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(CHUNK):
                writer.write(data.upper())
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> EchoServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


def free_port() -> int:
    """A port nothing listens on (for the refused port-forward)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
