"""The emulated pods' sshd: one asyncssh server per running pod that exposes `22/tcp`.

What a RunPod official image does, as far as the binder can tell: while the pod is RUNNING its
sshd listens on the public port RunPod maps to 22 (reported as the `22/tcp` runtime port and
in `ssh.direct`), lets in `root` with any key listed in the pod's `PUBLIC_KEY` env (one per
line; nothing else: no password, no other user), and runs what it is asked through the
sandbox's `sh` (`interpreter`):

- an exec request runs its command as `sh -c` does: stdout and stderr apart, the exit status
  returned (`sh -c 'exit 7'` exits 7), stdin readable by `cat`/`read`/`sh`;
- a session without a command is an interactive shell (`run_shell`) reading lines from stdin;
  the kubelet API's `attach` opens this kind of session too (a RunPod container has no attach
  of its own: the shell is what there is to attach to);
- a PTY request gives a terminal: asyncssh's line editor echoes and edits input, ends output
  lines with CRLF, turns Ctrl-D into end of input and Ctrl-C into a break (the command is
  killed, exit status 130); stderr goes to the terminal too; window changes are honoured
  (`stty size`, `tput cols` print the size now);
- `direct-tcpip` to `localhost:<port>` of one of the pod's declared ports (`ports`) is answered
  by a small listener in place of the pod's server: bytes are echoed back, and on an `http`
  port a request line gets a one-line HTTP answer. Other ports and hosts are refused with the
  SSH open-failure reason, as an sshd with nothing listening there refuses them.

An image the scenario marks as sshd-less (`Scenario.sshdless_images`) gets `refuse`: its 22
port is bound but never listens, so connecting to it is refused, as on a real pod whose image
runs no sshd. Leaving RUNNING (stop, restart, crash, terminate) closes the pod's server and
every session on it; a pod keeps its host key (made at its first start) until it is
terminated, as a container's files survive a restart. `close` ends everything and waits for it:
no task or socket outlives the sandbox.

Owns only the SSH side; the account (`account`) decides when a pod serves and what its env and
ports are (`PodAccess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncssh

from sandbox.interpreter import Sleep, run_script, run_shell

__all__ = ["PodAccess", "PodSshd", "SshdSettings"]

log = logging.getLogger(__name__)

_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})
_EXIT_INTERRUPTED: Final = 130
_HTTP_METHODS: Final = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


@dataclass(frozen=True, slots=True)
class SshdSettings:
    """`bind_host`: where the pods' sshd listen; `advertise_host`: the address reported in
    `ssh.direct.host` (default: `bind_host`, or 127.0.0.1 when that is a wildcard)."""

    bind_host: str = "127.0.0.1"
    advertise_host: str | None = None

    @property
    def advertised(self) -> str:
        if self.advertise_host:
            return self.advertise_host
        return "127.0.0.1" if self.bind_host in _WILDCARDS else self.bind_host


@dataclass(frozen=True, slots=True)
class PodAccess:
    """What a pod's sshd reads from the pod, live: `PUBLIC_KEY` lines, the container env, the
    declared ports as (number, "http" | "tcp")."""

    authorized_keys: Callable[[], str]
    env: Callable[[], Mapping[str, str]]
    ports: Callable[[], Sequence[tuple[int, str]]]


@dataclass(eq=False)
class _Served:
    pod_id: str
    sock: socket.socket
    access: PodAccess | None  # None: the port refuses (sshd-less image)
    acceptor: asyncssh.SSHAcceptor | None = None
    starting: asyncio.Task[None] | None = None
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)


class PodSshd:
    """Every pod's sshd, on the account's event loop. `serve`, `refuse` and `stop` are plain
    calls (the account's state machine is synchronous); the asyncio work they start is tracked
    and awaited by `close`."""

    def __init__(self, settings: SshdSettings, *, sleep: Sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._served: dict[str, _Served] = {}
        self._host_keys: dict[str, asyncssh.SSHKey] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what the account calls ----------------------------------------------------------------
    def serve(self, pod_id: str, access: PodAccess, *, port: int | None = None) -> int:
        """Start the pod's sshd (on `port` again when it is free) and return its port."""
        self.stop(pod_id)
        served = _Served(pod_id=pod_id, sock=self._bind(port), access=access)
        served.sock.listen(64)  # connections queue until the server below accepts them
        self._served[pod_id] = served
        served.starting = self._track(self._start(served), name=f"sandbox-sshd-{pod_id}")
        return int(served.sock.getsockname()[1])

    def refuse(self, pod_id: str, *, port: int | None = None) -> int:
        """Hold the pod's 22 port without listening: connections to it are refused."""
        self.stop(pod_id)
        served = _Served(pod_id=pod_id, sock=self._bind(port), access=None)
        self._served[pod_id] = served
        return int(served.sock.getsockname()[1])

    def stop(self, pod_id: str) -> None:
        """The pod's sshd goes away with its container: listener, connections, sessions."""
        served = self._served.pop(pod_id, None)
        if served is not None:
            self._track(self._shutdown(served), name=f"sandbox-sshd-stop-{pod_id}")

    def forget(self, pod_id: str) -> None:
        """The pod is terminated: its host key goes too."""
        self.stop(pod_id)
        self._host_keys.pop(pod_id, None)

    def describe(self, pod_id: str) -> dict[str, Any] | None:
        """For `/_sandbox/state`: whether SSH is served, where, and how many are connected."""
        served = self._served.get(pod_id)
        if served is None:
            return None
        return {
            "serving": served.access is not None,
            "port": int(served.sock.getsockname()[1]),
            "connections": len(served.connections),
        }

    @property
    def idle(self) -> bool:
        """Nothing served and nothing running: what `close` leaves."""
        return not self._served and not self._tasks

    async def close(self) -> None:
        for pod_id in list(self._served):
            self.stop(pod_id)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- internals -----------------------------------------------------------------------------
    def _track(self, coroutine: Any, *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _bind(self, port: int | None) -> socket.socket:
        """A socket bound on `port` when it is free again, else on any free port."""
        if port:
            with contextlib.suppress(OSError):
                return self._socket(port)
        return self._socket(0)

    def _socket(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.settings.bind_host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _host_key(self, pod_id: str) -> asyncssh.SSHKey:
        if pod_id not in self._host_keys:
            self._host_keys[pod_id] = asyncssh.generate_private_key("ssh-ed25519")
        return self._host_keys[pod_id]

    async def _start(self, served: _Served) -> None:
        try:
            served.acceptor = await asyncssh.listen(
                sock=served.sock,
                server_factory=lambda: _Connection(served, self),
                server_host_keys=[self._host_key(served.pod_id)],
                config=None,
                # Text sessions that carry any bytes: undecodable input round-trips unchanged.
                encoding="utf-8",
                errors="surrogateescape",
                line_editor=True,
                allow_pty=True,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
                login_timeout=30,
            )
        except OSError as exc:
            log.warning("sandbox sshd did not start", extra={"pod": served.pod_id, "error": str(exc)})
            served.sock.close()

    async def _shutdown(self, served: _Served) -> None:
        if served.starting is not None:
            await asyncio.gather(served.starting, return_exceptions=True)
        if served.acceptor is not None:
            served.acceptor.close()
            await served.acceptor.wait_closed()
        served.sock.close()
        connections = list(served.connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            await conn.wait_closed()

    def run_session(self, coroutine: Any, *, pod_id: str) -> asyncio.Task[Any]:
        """A session's command, as a task `close` waits for."""
        return self._track(coroutine, name=f"sandbox-ssh-session-{pod_id}")

    @property
    def sleep(self) -> Sleep:
        """The `sleep` commands use (the account's: `sleep infinity` waits until cancelled)."""
        return self._sleep


def _authorized(public_keys: str) -> set[bytes]:
    """The public keys (wire form) of each `authorized_keys` line of `PUBLIC_KEY`."""
    keys: set[bytes] = set()
    for line in public_keys.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        with contextlib.suppress(asyncssh.KeyImportError, ValueError):
            keys.add(asyncssh.import_public_key(line).public_data)
    return keys


class _Connection(asyncssh.SSHServer):
    def __init__(self, served: _Served, sshd: PodSshd) -> None:
        self._served = served
        self._sshd = sshd
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._served.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._served.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        access = self._served.access
        if access is None or username != "root":
            return False
        return key.public_data in _authorized(access.authorized_keys())

    def session_requested(self) -> asyncssh.SSHServerSession[str]:
        access = self._served.access
        if access is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "sshd is stopping")
        return _Session(access=access, sshd=self._sshd, pod_id=self._served.pod_id)

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
        access = self._served.access
        if access is None or self._conn is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Connection refused")
        if dest_host not in _LOOPBACK_NAMES:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED,
                f"{dest_host}: the emulated pod reaches only its own ports (localhost)",
            )
        kinds = dict(access.ports())
        if dest_port not in kinds:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"Connection refused: nothing listens on port {dest_port}"
            )
        channel: asyncssh.SSHTCPChannel[bytes] = self._conn.create_tcp_channel()
        return channel, _PortListener(
            pod_id=self._served.pod_id, port=dest_port, http=kinds[dest_port] == "http"
        )

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote forwarding out of an emulated pod


class _Input:
    """A session's stdin, fed by the channel: `interpreter.Stdin`."""

    def __init__(self) -> None:
        self._buffer = ""
        self._eof = False
        self._changed = asyncio.Event()

    def feed(self, data: str) -> None:
        self._buffer += data
        self._changed.set()

    def end(self) -> None:
        self._eof = True
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def read(self) -> str:
        while not self._buffer and not self._eof:
            await self._wait()
        data, self._buffer = self._buffer, ""
        return data

    async def readline(self) -> str:
        while "\n" not in self._buffer and not self._eof:
            await self._wait()
        line, newline, rest = self._buffer.partition("\n")
        self._buffer = rest
        return line + newline


class _Session(asyncssh.SSHServerSession[str]):
    def __init__(self, *, access: PodAccess, sshd: PodSshd, pod_id: str) -> None:
        self._access = access
        self._sshd = sshd
        self._pod_id = pod_id
        self._chan: asyncssh.SSHServerChannel[str] | None = None
        self._command: str | None = None
        self._term: str | None = None
        self._size = (80, 24)
        self._stdin = _Input()
        self._task: asyncio.Task[Any] | None = None
        self._interrupted = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        self._term = term_type or "xterm"
        self._resize(term_size[0], term_size[1])
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._resize(width, height)

    def _resize(self, width: int, height: int) -> None:
        self._size = (width or 80, height or 24)

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False  # no sftp in an emulated container

    def session_started(self) -> None:
        self._task = self._sshd.run_session(self._run(), pod_id=self._pod_id)

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        self._stdin.feed(data)

    def eof_received(self) -> bool:
        self._stdin.end()
        return True  # stay half open: the command may still write

    def soft_eof_received(self) -> None:
        self._stdin.end()  # Ctrl-D on the terminal

    def break_received(self, msec: int) -> bool:
        self._interrupt()  # Ctrl-C on the terminal
        return True

    def signal_received(self, signal: str) -> None:
        if signal in ("INT", "TERM", "KILL", "HUP"):
            self._interrupt()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None:
            self._task.cancel()

    def _interrupt(self) -> None:
        if self._task is not None and not self._task.done():
            self._interrupted = True
            self._task.cancel()

    def _write(self, text: str) -> None:
        if self._chan is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._chan.write(text)

    def _write_err(self, text: str) -> None:
        if self._chan is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._chan.write_stderr(text)

    async def _run(self) -> None:
        env = dict(self._access.env())
        tty = self._term is not None
        if tty:
            env["TERM"] = self._term or "xterm"
        # On a terminal both streams are the terminal, as with a real sshd.
        write_err = self._write if tty else self._write_err
        terminal = (lambda: self._size) if tty else None
        try:
            if self._command is None:
                code = await run_shell(
                    env=env, write=self._write, write_err=write_err, sleep=self._sshd.sleep,
                    stdin=self._stdin, terminal=terminal,
                )  # fmt: skip
            else:
                code = await run_script(
                    self._command, env=env, write=self._write, write_err=write_err,
                    sleep=self._sshd.sleep, stdin=self._stdin, terminal=terminal,
                )  # fmt: skip
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            if tty:
                self._write("^C\n")
            code = _EXIT_INTERRUPTED
        if self._chan is not None:
            with contextlib.suppress(OSError):
                self._chan.exit(code)


class _PortListener(asyncssh.SSHTCPSession[bytes]):
    """What answers a forwarded port of an emulated pod: an echo, or a one-line HTTP answer."""

    def __init__(self, *, pod_id: str, port: int, http: bool) -> None:
        self._pod_id = pod_id
        self._port = port
        self._http = http
        self._chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._request = b""

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._chan is None:
            return
        if self._http and (self._request or data.startswith(_HTTP_METHODS)):
            self._request += data
            if b"\r\n\r\n" in self._request or b"\n\n" in self._request:
                self._answer_http()
            return
        self._chan.write(data)

    def _answer_http(self) -> None:
        if self._chan is None:
            return
        line = self._request.split(b"\n", 1)[0].strip().decode("latin-1")
        body = f"sandbox pod {self._pod_id} port {self._port}/http: {line}\n".encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self._chan.write(head + body)
        self._chan.close()

    def eof_received(self) -> bool:
        return False  # everything received was echoed: close
