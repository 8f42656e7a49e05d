"""The sandbox in-process, for tests and the demo: a real HTTP server on a free loopback port.

    with running_sandbox(api_key="test-key", seed=1) as sb:
        client = RunPodClient(base_url=sb.base_url, api_key="test-key")
        sb.admin.inject({"route": "POST /v2/pods", "kind": "ambiguous_create", "count": 1})
        ...
        assert sb.admin.state()["pods"] == []

The server runs in a background thread with its own event loop (so sync and async tests alike
can use it); `SandboxAdmin` is a small sync client of the `/_sandbox` endpoints. Leaving the
block stops containers, ends open log streams and joins the thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox.account import Account
from sandbox.app import free_socket, make_server
from sandbox.scenario import Scenario, Timings, load_scenario

__all__ = ["RunningSandbox", "SandboxAdmin", "running_sandbox"]

_START_TIMEOUT_S = 10.0


class SandboxAdmin:
    """Sync helper over `/_sandbox/*`; every method raises `httpx.HTTPStatusError` on refusal."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/_sandbox", timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: object = None) -> Any:
        response = (
            self._http.request(method, path, json=body)
            if body is not None
            else self._http.request(method, path)
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        """{"pods": [...], "terminated": [...], "creates", "deletes", "spendUsd", "balanceUsd", "requests"}."""
        state: dict[str, Any] = self._call("GET", "/state")
        return state

    def inject(self, rule: Mapping[str, Any]) -> None:
        self._call("POST", "/faults", dict(rule))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call("GET", "/faults")["faults"]
        return rules

    def set_stock(self, *, gpu_id: str, datacenter_id: str, cloud: str = "SECURE", free: int) -> None:
        self._call(
            "PUT", "/stock", {"gpuId": gpu_id, "dataCenterId": datacenter_id, "cloud": cloud, "free": free}
        )

    def set_cpu_stock(self, *, cpu_id: str, datacenter_id: str, free: int) -> None:
        self._call("PUT", "/cpu-stock", {"cpuId": cpu_id, "dataCenterId": datacenter_id, "free": free})

    def add_key(self, key: str, *, read_only: bool = False) -> None:
        self._call("POST", "/keys", {"key": key, "readOnly": read_only})

    def revoke_key(self, key: str) -> None:
        self._call("DELETE", f"/keys/{key}")

    def set_balance(self, usd: float | None) -> None:
        self._call("PUT", "/balance", {"balanceUsd": usd})

    def deny_gpus(self, gpu_ids: list[str]) -> None:
        self._call("PUT", "/denied-gpus", gpu_ids)

    def fail_images(self, images: list[str]) -> None:
        """Pulls of these images fail from now on: such pods go to ERROR with a system log line."""
        self._call("PUT", "/failing-images", images)

    def sshdless_images(self, patterns: list[str]) -> None:
        """Images (fnmatch patterns) that run no sshd from their next start on."""
        self._call("PUT", "/sshdless-images", patterns)

    def set_private_registries(self, registries: list[Mapping[str, str]]) -> None:
        """Images under these hosts pull only with a matching credential (`host`, `username`, `password`)."""
        self._call("PUT", "/private-registries", registries)

    def set_rate_limits(self, windows: list[Mapping[str, Any]]) -> None:
        self._call("PUT", "/rate-limits", [dict(w) for w in windows])

    def set_timings(self, timings: Mapping[str, Any]) -> None:
        self._call("PUT", "/timings", dict(timings))

    def seed_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """A foreign pod (not ours) already running in the account."""
        seeded: dict[str, Any] = self._call("POST", "/pods", dict(pod))
        return seeded

    def crash_pod(self, pod_id: str) -> dict[str, Any]:
        crashed: dict[str, Any] = self._call("POST", f"/pods/{pod_id}/crash")
        return crashed


@dataclass(frozen=True)
class RunningSandbox:
    base_url: str
    api_key: str
    admin: SandboxAdmin
    account: Account  # for white-box assertions; touch only from the server thread


@contextmanager
def running_sandbox(
    api_key: str = "test-key",
    seed: int = 1,
    scenario: Scenario | Mapping[str, Any] | str | Path | None = None,
    timings: Timings | Mapping[str, Any] | None = None,
) -> Iterator[RunningSandbox]:
    """Serve a fresh sandbox account on `127.0.0.1:<free port>` for the duration of the block."""
    loaded = load_scenario(dict(scenario) if isinstance(scenario, Mapping) else scenario)
    if timings is not None:
        loaded = loaded.model_copy(
            update={"timings": timings if isinstance(timings, Timings) else Timings.model_validate(timings)}
        )
    account = Account(api_keys=[api_key], scenario=loaded, seed=seed)
    sock = free_socket()
    server = make_server(account)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)

    thread = threading.Thread(target=serve, name="sandbox-server", daemon=True)
    thread.start()
    try:
        waited = threading.Event()
        for _ in range(int(_START_TIMEOUT_S / 0.01)):
            if server.started or failure or not thread.is_alive():
                break
            waited.wait(0.01)
        if not server.started:
            raise RuntimeError(f"sandbox did not start: {failure[0] if failure else 'timeout'}")
        port = sock.getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        admin = SandboxAdmin(base_url)
        try:
            yield RunningSandbox(base_url=base_url, api_key=api_key, admin=admin, account=account)
        finally:
            admin.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
