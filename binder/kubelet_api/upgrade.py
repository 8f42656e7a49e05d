"""Taking a connection over from uvicorn when a streaming request asks to upgrade it.

uvicorn hands an ASGI app nothing but HTTP and, with a WebSocket library, WebSocket: a request
with `Upgrade: SPDY/3.1` reaches the app as plain HTTP and the connection cannot be had. Yet the
kubelet's `exec`, `attach` and `portForward` are upgrades (kube-apiserver sends SPDY/3.1, and
WebSocket where it proxies kubectl's straight through). So the HTTP protocol class uvicorn is
configured with (`Config(http=...)`, the extension point `peers` already uses) recognises an
upgrade request for one of those paths the way uvicorn recognises a WebSocket one
(`_should_upgrade`), and where uvicorn would hand the transport to its WebSocket protocol
(`handle_websocket_upgrade`, `transport.set_protocol`), hands it to an `UpgradedConnection`
instead. Everything else, including upgrade requests for other paths, stays uvicorn's.

An `UpgradedConnection` runs the handler with a Starlette `Request` built from the scope uvicorn
made (so authentication and authorisation are the app's own `guard`, certificate included) and
is the handler's byte pipe: an HTTP answer (`respond`), the 101 (`switch`), then raw bytes both
ways (`Wire` for `spdy_session`, with write back-pressure) until either side closes. The
connection stays in the `PeerRegistry`, so a stopping server cuts it like any other; losing it
cancels the handler. `UpgradeTracker` keeps the running handlers so a stop can wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import h11
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from binder.kubelet_api.peers import PeerRegistry, peer_recording_protocol

__all__ = [
    "STREAMING_PREFIXES",
    "UpgradeHandler",
    "UpgradeTracker",
    "UpgradedConnection",
    "streaming_protocol",
]

log = logging.getLogger(__name__)

STREAMING_PREFIXES: Final = ("/exec/", "/attach/", "/portForward/")
_UPGRADES: Final = frozenset({b"spdy/3.1", b"websocket"})

UpgradeHandler = Callable[[Request, "UpgradedConnection"], Awaitable[None]]


class UpgradeTracker:
    """The handlers of upgraded connections still running."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def wait(self, grace: float) -> None:
        """Waits up to `grace` seconds for the handlers, then cancels those left (and waits as
        long again for them to finish)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class UpgradedConnection(asyncio.Protocol):
    """One connection taken over from uvicorn: an asyncio protocol and the handler's `Wire`."""

    def __init__(
        self,
        *,
        transport: asyncio.Transport,
        scope: dict[str, Any],
        handler: UpgradeHandler,
        registry: PeerRegistry,
        tracker: UpgradeTracker,
    ) -> None:
        self.transport = transport
        self.scope = scope
        self._handler = handler
        self._registry = registry
        self._tracker = tracker
        self._receiver: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[], None] | None = None
        self._pending = bytearray()
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        self.switched = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kubelet-api-stream")
        self._tracker.add(self._task)

    async def _run(self) -> None:
        try:
            await self._handler(Request(self.scope), self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("streaming request %s failed", self.scope.get("path"))
            if not self.switched and not self.lost.is_set():
                self.respond(500, "Internal error serving the streaming request")
        finally:
            self.close()

    # --- asyncio.Protocol -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._receiver is not None:
            self._receiver(data)
        else:
            self._pending += data

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.disconnected(self.transport)
        self.lost.set()
        self._writable.set()
        if self._on_lost is not None:
            self._on_lost()
        if self._task is not None and not self._task.done() and asyncio.current_task() is not self._task:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- for the handler ------------------------------------------------------------------

    def attach(self, receiver: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        """From now on, bytes the client sends go to `receiver`; `on_lost` when it is gone."""
        self._receiver, self._on_lost = receiver, on_lost
        if self._pending:
            pending, self._pending = bytes(self._pending), bytearray()
            receiver(pending)
        if self.lost.is_set():
            on_lost()

    def header(self, name: str) -> str:
        raw = name.lower().encode("latin-1")
        return next((v.decode("latin-1") for k, v in self.scope["headers"] if k == raw), "")

    def header_values(self, name: str) -> list[str]:
        raw = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k == raw]

    def respond(self, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A plain-text HTTP answer, then the connection closes."""
        body = (text + "\n").encode()
        all_headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        self.write(_head(status, all_headers) + body)
        self.close()

    def respond_with(self, response: Response) -> None:
        """An app `Response` (the guard's 401/403), then the connection closes."""
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in response.raw_headers
            if k.lower() not in (b"content-length", b"connection")
        ]
        body = bytes(response.body)
        headers += [("Content-Length", str(len(body))), ("Connection", "close")]
        self.write(_head(response.status_code, headers) + body)
        self.close()

    def switch(self, headers: Iterable[tuple[str, str]]) -> None:
        """`101 Switching Protocols`: from here on the bytes are the upgraded protocol's."""
        self.switched = True
        self.write(_head(101, headers))

    # --- Wire ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if not self._writable.is_set() and not self.lost.is_set():
            await self._writable.wait()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def pause_reading(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.resume_reading()


def streaming_protocol(
    registry: PeerRegistry, handler: UpgradeHandler | None, tracker: UpgradeTracker
) -> type[H11Protocol]:
    """The HTTP protocol class for uvicorn: `peers`' one, plus the takeover of streaming
    upgrades when there is a `handler` (None: they stay plain requests, answered by the app)."""
    base = peer_recording_protocol(registry)
    if handler is None:
        return base
    serve: UpgradeHandler = handler

    class StreamingProtocol(base):  # type: ignore[valid-type,misc]
        def _is_streaming_upgrade(self) -> bool:
            return self._get_upgrade() in _UPGRADES and str(self.scope["path"]).startswith(STREAMING_PREFIXES)

        def _should_upgrade(self) -> bool:
            return self._is_streaming_upgrade() or bool(super()._should_upgrade())

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            if not self._is_streaming_upgrade():
                super().handle_websocket_upgrade(event)
                return
            # As uvicorn does for its WebSocket protocol: the connection is no longer its own.
            self.connections.discard(self)
            upgraded = UpgradedConnection(
                transport=self.transport,
                scope=dict(self.scope),
                handler=serve,
                registry=registry,
                tracker=tracker,
            )
            self.transport.set_protocol(upgraded)
            upgraded.start()

    return StreamingProtocol
