"""`exec` and `attach` as the kubelet serves them, each carried by one SSH session.

The kubelet's protocol (`k8s.io/cri-streaming/pkg/streaming/remotecommand`):
- options from the query: `input`, `output`, `error`, `tty` ("1" = on; at least one of the
  first three; `tty` drops `error`, a terminal has one output), argv as repeated `command`;
- SPDY: the protocol is negotiated from `X-Stream-Protocol-Version` (we speak
  `v4.channel.k8s.io`, `v3` and `v2`; kube-apiserver offers v4 first, also when it translates
  kubectl's WebSocket `v5.channel.k8s.io`), then the client opens one stream per channel,
  `streamType` = error, stdin, stdout, stderr, resize (v3+, with a TTY);
- WebSocket: `v5.channel.k8s.io`, `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`: one channel
  byte per message, see `websocket`;
- resize: a stream of JSON `{"Width": w, "Height": h}` objects;
- the outcome on the error stream: v4+ a `metav1.Status` JSON, `Success`, or `Failure` with reason
  `NonZeroExitCode` and an `ExitCode` cause (so `kubectl exec ... -- sh -c 'exit 7'` exits 7);
  v2/v3 the failure's message only, nothing on success.

Mapping onto SSH (`run`): exec runs `shlex.join(argv)` through the pod's sshd (an SSH `exec`
request: sshd's login shell gets the string, as `ssh host -- cmd` does), attach opens the login
shell (an SSH `shell` request): RunPod offers no way to the main process's stdio, so attach needs
`-i` and lands in a new shell (see `attach_refusal`). A TTY is an SSH pty (TERM=xterm) sized
from the first resize message and resized on every later one; stdin EOF is the channel's EOF;
the exit status (or 128 + signal) is the status. The environment is sshd's login environment,
not the container's.

`ExecChannels` is what either streaming protocol gives this module: byte sources and sinks and a
status writer. Pure helpers (options, negotiation, statuses, quoting, resize parsing) are plain
functions, tested without sockets.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import shlex
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncssh

from binder.kubelet_api.stream_targets import StreamRefusal

__all__ = [
    "SPDY_PROTOCOLS",
    "WEBSOCKET_PROTOCOLS",
    "ExecChannels",
    "ExecOptions",
    "ResizeDecoder",
    "Sink",
    "Source",
    "attach_refusal",
    "exit_code",
    "failure_status",
    "negotiate",
    "parse_exec_options",
    "run",
    "ssh_command",
    "status_message",
    "success_status",
]

log = logging.getLogger(__name__)

V4: Final = "v4.channel.k8s.io"
V3: Final = "v3.channel.k8s.io"
V2: Final = "v2.channel.k8s.io"
V5: Final = "v5.channel.k8s.io"
# In preference order, as `httpstream.Handshake` walks the client's list against ours.
SPDY_PROTOCOLS: Final = (V4, V3, V2)
WEBSOCKET_PROTOCOLS: Final = (V5, V4, "v4.base64.channel.k8s.io")
NON_ZERO_EXIT: Final = "NonZeroExitCode"
EXIT_CODE_CAUSE: Final = "ExitCode"
CHUNK: Final = 32 * 1024
TERM: Final = "xterm"
DEFAULT_SIZE: Final = (80, 24)


class StreamingError(Exception):
    """The session could not run (not the command's own failure); its message goes to the user."""


# --- options, negotiation, quoting ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def parse_exec_options(query: Mapping[str, str]) -> ExecOptions:
    """The kubelet's `NewOptions`: flags are on when "1"; tty drops stderr."""
    flag = {name: query.get(name) == "1" for name in ("input", "output", "error", "tty")}
    if not (flag["input"] or flag["output"] or flag["error"]):
        raise StreamRefusal("you must specify at least 1 of stdin, stdout, stderr")
    return ExecOptions(
        stdin=flag["input"], stdout=flag["output"], stderr=flag["error"] and not flag["tty"], tty=flag["tty"]
    )


def negotiate(offered: Sequence[str], supported: Sequence[str]) -> str:
    """`httpstream.Handshake`: the first protocol of the client's (comma-separated, repeatable)
    `X-Stream-Protocol-Version` values that we speak. 400 when it sent none, 403 when none fits
    (with `X-Accepted-Stream-Protocol-Versions`, as the kubelet answers)."""
    client = [p.strip() for value in offered for p in value.split(",") if p.strip()]
    if not client:
        raise StreamRefusal("unable to upgrade: header X-Stream-Protocol-Version does not exist in request")
    for protocol in client:
        if protocol in supported:
            return protocol
    raise StreamRefusal(
        f"unable to upgrade: unable to negotiate protocol: client supports {client}, server accepts {list(supported)}",
        status=403,
        headers=tuple(("X-Accepted-Stream-Protocol-Versions", p) for p in supported),
    )


def ssh_command(argv: Sequence[str]) -> str:
    """argv as one shell string for sshd, each word quoted: what runs is exactly argv."""
    if not argv:
        raise StreamRefusal("you must specify at least one command for the container")
    return shlex.join(argv)


def attach_refusal(options: ExecOptions, *, pod: str) -> StreamRefusal | None:
    """Attach over SSH opens the container's login shell; without stdin that shell could only
    end at once, so say what works instead."""
    if options.stdin:
        return None
    return StreamRefusal(
        f"kubectl attach on a RunPod node needs -i: RunPod gives no access to the main process's "
        f"stdio, so attach opens a shell in the container over SSH (kubectl attach -it {pod}); the "
        f"main process's output is its log (kubectl logs -f {pod})"
    )


# --- statuses ------------------------------------------------------------------------------


def success_status() -> dict[str, Any]:
    return {"status": "Success"}


def exit_status(code: int) -> dict[str, Any]:
    """The kubelet's status for a command that exited non-zero."""
    return {
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": NON_ZERO_EXIT,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def failure_status(message: str) -> dict[str, Any]:
    """The kubelet's `newInternalError`: the session itself failed."""
    return {
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "code": 500,
    }


def status_message(protocol: str, status: Mapping[str, Any]) -> bytes | None:
    """The bytes written on the error channel for `status` under `protocol`; None = nothing."""
    if protocol in (V4, V5, "v4.base64.channel.k8s.io"):
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


def exit_code(exit_status_value: int | None, exit_signal: tuple[str, bool, str, str] | None) -> int | None:
    """The command's exit code from SSH's `exit-status` or `exit-signal` (128 + number, as a
    shell reports a signalled child); None when sshd reported neither."""
    if exit_signal is not None:
        name = str(exit_signal[0]).upper().removeprefix("SIG")
        number = getattr(signal, f"SIG{name}", None)
        return 128 + int(number) if number is not None else 255
    if exit_status_value is None or exit_status_value < 0:
        return None
    return exit_status_value if exit_status_value <= 255 else 255


def status_for(code: int | None) -> dict[str, Any]:
    if code is None:
        return failure_status("the SSH session ended without an exit status (was the pod's sshd stopped?)")
    return success_status() if code == 0 else exit_status(code)


class ResizeDecoder:
    """The resize channel's JSON objects, however the bytes are cut. Stops at the first
    malformed object, as the kubelet's `json.Decoder` loop does."""

    LIMIT: Final = 4096  # an object that long is no terminal size

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._decoder = json.JSONDecoder()
        self.broken = False

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        if self.broken:
            return []
        self._buffer += self._text.decode(data)
        sizes: list[tuple[int, int]] = []
        while True:
            text = self._buffer.lstrip()
            self._buffer = text
            if not text:
                return sizes
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                # A flat object is complete at its "}": until one came, wait for more.
                if text.startswith("{") and "}" not in text and len(text) < self.LIMIT:
                    return sizes
                self.broken = True
                return sizes
            self._buffer = text[end:]
            if not isinstance(value, dict):
                self.broken = True
                return sizes
            width, height = value.get("Width", 0), value.get("Height", 0)
            if isinstance(width, int) and isinstance(height, int) and width >= 0 and height >= 0:
                sizes.append((width, height))


# --- channels and the SSH session ----------------------------------------------------------


class Source(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" at the end."""
        ...


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass
class ExecChannels:
    """One exec/attach's channels, from either streaming protocol."""

    stdin: Source | None
    stdout: Sink | None
    stderr: Sink | None
    resize: Source | None
    write_status: Callable[[Mapping[str, Any]], Awaitable[None]]
    # Set when the client's connection ended (nothing more can be written to it).
    ended: asyncio.Event


async def _first_size(resize: Source | None, decoder: ResizeDecoder, wait: float) -> tuple[int, int]:
    """kubectl sends the terminal's size as the first resize message, right after the streams:
    start the pty with it when it comes within `wait`."""
    if resize is None:
        return DEFAULT_SIZE
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            while True:
                data = await resize.read()
                if not data:
                    break
                sizes = decoder.feed(data)
                if sizes:
                    return sizes[-1]
    return DEFAULT_SIZE


async def run(
    channels: ExecChannels,
    connection: asyncssh.SSHClientConnection,
    *,
    command: str | None,
    options: ExecOptions,
    first_resize_wait: float = 1.0,
) -> int | None:
    """Runs `command` (None: the login shell) over `connection` with the channels, then writes
    the outcome on the error channel. Returns the exit code (None when the session failed or
    the client went away first)."""
    decoder = ResizeDecoder()
    size = await _first_size(channels.resize, decoder, first_resize_wait) if options.tty else DEFAULT_SIZE
    try:
        process: asyncssh.SSHClientProcess[bytes] = await connection.create_process(
            command,
            encoding=None,
            term_type=TERM if options.tty else None,
            term_size=size if options.tty else None,
            request_pty=options.tty,
        )
    except (asyncssh.Error, OSError) as exc:
        reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        await _write_status(channels, failure_status(f"the pod's sshd refused the session: {reason}"))
        return None
    tasks: list[asyncio.Task[Any]] = []
    try:
        stdin_task = asyncio.create_task(_pump_stdin(channels.stdin, process, tty=options.tty))
        outputs = [asyncio.create_task(_pump_output(process.stdout, channels.stdout))]
        if not options.tty:
            outputs.append(asyncio.create_task(_pump_output(process.stderr, channels.stderr)))
        tasks = [stdin_task, *outputs]
        if options.tty and channels.resize is not None:
            tasks.append(asyncio.create_task(_pump_resize(channels.resize, decoder, process)))
        ended = asyncio.create_task(channels.ended.wait())
        tasks.append(ended)
        finished: asyncio.Future[Any] = asyncio.gather(*outputs, process.wait_closed())
        waiting: list[asyncio.Future[Any]] = [finished, ended]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if finished not in done:
            finished.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await finished
            log.info("streaming client went away; closing the SSH session")
            return None
        failed = finished.exception()
        if failed is not None:
            log.warning("SSH session failed: %s", failed)
            await _write_status(channels, failure_status(f"the SSH session failed: {failed}"))
            return None
        code = exit_code(process.exit_status, process.exit_signal)
        await _write_status(channels, status_for(code))
        return code
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        process.close()


async def _write_status(channels: ExecChannels, status: Mapping[str, Any]) -> None:
    if channels.ended.is_set():
        return
    with contextlib.suppress(Exception):
        await channels.write_status(status)


async def _pump_stdin(source: Source | None, process: asyncssh.SSHClientProcess[bytes], *, tty: bool) -> None:
    writer = process.stdin
    if source is None:
        if not tty:
            writer.write_eof()  # no stdin: the command reads EOF, as with /dev/null
        return
    while True:
        data = await source.read()
        if not data:
            with contextlib.suppress(Exception):
                writer.write_eof()
            return
        try:
            writer.write(data)
            await writer.drain()
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            return  # the command is gone; what it did not read is dropped


async def _pump_output(reader: asyncssh.SSHReader[bytes], sink: Sink | None) -> None:
    """Copies until EOF, then half-closes the sink. A sink that fails (its stream was reset) is
    dropped, and the rest is read and discarded so the command never blocks on a full pipe."""
    while True:
        data = await reader.read(CHUNK)
        if not data:
            break
        if sink is not None:
            try:
                await sink.write(data)
            except Exception as exc:
                log.debug("output stream closed by the client: %s", exc)
                sink = None
    if sink is not None:
        with contextlib.suppress(Exception):
            await sink.close()


async def _pump_resize(
    source: Source, decoder: ResizeDecoder, process: asyncssh.SSHClientProcess[bytes]
) -> None:
    while True:
        data = await source.read()
        if not data:
            return
        for width, height in decoder.feed(data):
            with contextlib.suppress(asyncssh.Error, OSError):
                process.change_terminal_size(width, height)
