"""Composition of the sandbox server: one `Account`, the gateway, the /v2 and admin routers.

`build_app` is the only place these meet; `serve` runs it under uvicorn on given sockets so
callers (CLI, tests) choose the port. The account is started and closed with the server:
containers stop and open log streams end *before* uvicorn waits for connections to drain,
so shutdown never hangs on a live `GET .../logs`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import admin, routes
from sandbox.account import Account
from sandbox.gateway import GatewayMiddleware, render_api_error, render_http_exception
from sandbox.problems import ApiError

__all__ = ["SandboxServer", "build_app", "free_socket", "make_server"]


def build_app(account: Account) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await account.start()
        try:
            yield
        finally:
            await account.close()

    app = FastAPI(
        title="runpod-kubelet sandbox",
        description="A local emulator of RunPod's REST v2 API. Admin endpoints under /_sandbox.",
        lifespan=lifespan,
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.account = account
    app.include_router(routes.router)
    app.include_router(admin.router)
    app.add_exception_handler(ApiError, render_api_error)
    app.add_exception_handler(StarletteHTTPException, render_http_exception)
    app.add_middleware(GatewayMiddleware, account=account)
    return app


class SandboxServer(uvicorn.Server):
    """uvicorn, but the account closes first on shutdown (ends live log streams)."""

    def __init__(self, config: uvicorn.Config, account: Account) -> None:
        super().__init__(config)
        self.account = account

    async def shutdown(self, sockets: Sequence[socket.socket] | None = None) -> None:
        await self.account.close()
        await super().shutdown(sockets=list(sockets) if sockets is not None else None)


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def make_server(account: Account, *, log_level: str = "warning", **config: Any) -> SandboxServer:
    uv_config = uvicorn.Config(
        build_app(account),
        log_level=log_level,
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=5,
        **config,
    )
    return SandboxServer(uv_config, account)
