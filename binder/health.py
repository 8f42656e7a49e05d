"""The binder's /healthz, /readyz and /metrics endpoints (plain HTTP, the Deployment's probes).

Owns the readiness decision and the tiny aiohttp server that serves it; the metrics themselves
are defined by the modules that own what they measure, in prometheus_client's default registry.

- /healthz: the process and its event loop answer. Nothing else: restarting a binder because
  RunPod or the apiserver is down would not help.
- /readyz: connected to the apiserver (it answered within `stale_after` seconds) and either
  leading or standing by. A standby replica is ready: it is ready to take over, and gating
  readiness on leadership would make rolling updates wait on the wrong thing.
- /metrics: Prometheus text format.

aiohttp serves it (already present through kubernetes_asyncio) because, unlike uvicorn, it
installs no signal handlers: the composition root owns SIGTERM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["HealthState", "Role", "readiness", "start_health_server"]

# How long without an apiserver answer before the replica stops calling itself ready.
DEFAULT_STALE_AFTER: Final = 60.0


class Role(StrEnum):
    STARTING = "starting"
    STANDBY = "standby"
    LEADER = "leader"
    STOPPING = "stopping"


def readiness(*, role: Role, last_contact: float | None, now: float, stale_after: float) -> tuple[bool, str]:
    """(ready, human reason)."""
    if role in (Role.STARTING, Role.STOPPING):
        return False, role.value
    if last_contact is None:
        return False, "apiserver not reached yet"
    if now - last_contact > stale_after:
        return False, f"apiserver silent for {now - last_contact:.0f}s"
    return True, role.value


@dataclass
class HealthState:
    """Latest-value cells the composition root updates; the server only reads them."""

    role: Role = Role.STARTING
    contact: Callable[[], float | None] = lambda: None
    stale_after: float = DEFAULT_STALE_AFTER
    monotonic: Callable[[], float] = field(default=time.monotonic)

    def readiness(self) -> tuple[bool, str]:
        return readiness(
            role=self.role, last_contact=self.contact(), now=self.monotonic(), stale_after=self.stale_after
        )


def build_app(state: HealthState) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ready, reason = state.readiness()
        return web.Response(status=200 if ready else 503, text=f"{reason}\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health_server(state: HealthState, *, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (call `.cleanup()` to stop) and the bound port
    (useful with port 0)."""
    runner = web.AppRunner(build_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port)
    await site.start()
    # With port 0 the OS picks one; the runner knows which.
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
