"""The verified client certificate of each open connection, for the request handlers.

uvicorn does not put the TLS peer certificate into the ASGI scope (there is no `tls`
extension in its protocols), so the HTTP protocol class it is configured with
(`Config(http=...)`, a supported extension point) records each connection's certificate, keyed
by the client address that the scope carries as `client`, and forgets it when the connection
closes. Only certificates OpenSSL verified against the client CA are ever present
(`getpeercert()` returns nothing otherwise).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["PeerRegistry", "peer_recording_protocol"]

Address = tuple[str, int]


def _address(transport: asyncio.BaseTransport) -> Address | None:
    # The same (host, port) uvicorn puts into scope["client"].
    info = transport.get_extra_info("peername")
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class PeerRegistry:
    """client address -> verified peer certificate (`getpeercert()` dict) of open connections.

    Also the set of open connections, so a stopping server can cut those still open (a TLS
    close waits for the peer's close_notify; a stopped server must not leave sockets behind).
    """

    def __init__(self) -> None:
        self._certs: dict[Address, dict[str, Any]] = {}
        self._open: set[asyncio.BaseTransport] = set()

    def connected(self, transport: asyncio.BaseTransport) -> None:
        self._open.add(transport)
        address = _address(transport)
        cert = transport.get_extra_info("peercert")
        if address is not None and cert:
            self._certs[address] = dict(cert)

    def disconnected(self, transport: asyncio.BaseTransport) -> None:
        self._open.discard(transport)
        address = _address(transport)
        if address is not None:
            self._certs.pop(address, None)

    def abort_all(self) -> None:
        """Closes every connection still open at once, without a TLS goodbye."""
        for transport in list(self._open):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
        self._open.clear()
        self._certs.clear()

    def certificate(self, client: Any) -> dict[str, Any] | None:
        """The certificate of the connection a request came on (`scope["client"]`)."""
        if not isinstance(client, (list, tuple)) or len(client) < 2:
            return None
        return self._certs.get((str(client[0]), int(client[1])))

    def __len__(self) -> int:
        return len(self._certs)


def peer_recording_protocol(registry: PeerRegistry) -> type[H11Protocol]:
    """An h11 protocol class that keeps `registry` current."""

    class PeerRecordingProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            registry.connected(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is not None:
                registry.disconnected(self.transport)
            super().connection_lost(exc)

    return PeerRecordingProtocol
