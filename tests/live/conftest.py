"""The gate and fixtures of the opt-in live RunPod suite. It spends real money: read before changing.

Gate: nothing under tests/live is collected unless `RUNPOD_LIVE=1` and `RUNPOD_API_KEY` are both
set (`live_support.gate_refusal`); one line in the terminal says so and why. It is enforced at
collection (`pytest_ignore_collect`, plus a deselect for files named on the command line), never
by per-test skips, so the rest of `pytest` is unaffected.

Order: the suite's own safety checks (no network), then the read-only checks (free), then the one
test that rents a GPU, which refuses to start if a safety check failed.

Fixtures:
- `live` (session): `LiveSettings` (key, base URL, price cap, run id) read once from the env.
- `marker` (session): this run's `RunMarker`. The session starts and ends with a sweep that
  deletes every RunPod pod carrying it, and nothing else: pods without this run's marker are
  never touched. The closing sweep runs on its own event loop, so it still runs after a test
  was interrupted (pytest-timeout) before its own `finally` could.
- `contract_log` (session): violations of RunPod's OpenAPI document seen on any answer; a
  non-empty log fails the test that caused it (at teardown).
- `runpod` (function): the project's `RunPodClient` over the contract-checking transport.
- `raw_api` (function): a plain httpx client with the same transport and headers, for requests
  the typed client refuses to build (unknown fields).

`RUNPOD_BASE_URL` points the suite at another RunPod, e.g. a sandbox
(`runpod-kubelet sandbox --port 0 --api-key k`), to rehearse it for free (`rehearse.py`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import httpx
import pytest
from live_support import (
    ContractLog,
    ContractTransport,
    LiveConfigError,
    LiveSettings,
    OpenApiContract,
    RunMarker,
    gate_refusal,
    run_marker,
    sweep,
)
from prometheus_client import CollectorRegistry

from runpod_api import RetryPolicy, RunPodClient, RunPodError, RunPodMetrics
from runpod_api.client import user_agent
from sandbox.validation import openapi_document

_HERE = Path(__file__).parent.resolve()
_REFUSAL = pytest.StashKey[str]()
_SETTINGS = pytest.StashKey["LiveSettings | LiveConfigError"]()
_SAFETY_FAILURES = pytest.StashKey[list[str]]()
_SAFETY_STAGE, _COSTLY_STAGE = 0, 2
_STAGES = {
    "test_live_safety.py": _SAFETY_STAGE,
    "test_live_readonly.py": 1,
    "test_live_pod_cycle.py": _COSTLY_STAGE,
}
# Retries of reads and 429 waits stay inside the client; nothing here ever re-POSTs blindly.
_RETRY = RetryPolicy(rate_limit_retries=3)


def _inside(path: Path) -> bool:
    resolved = path.resolve()
    return resolved == _HERE or _HERE in resolved.parents


def _refusal(config: pytest.Config) -> str | None:
    if _REFUSAL not in config.stash:
        config.stash[_REFUSAL] = gate_refusal(os.environ) or ""
    return config.stash[_REFUSAL] or None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _inside(collection_path) and collection_path.name != "conftest.py" and _refusal(config):
        return True
    return None


def _stage(item: pytest.Item) -> int:
    return _STAGES.get(Path(item.path).name, 1) if _inside(Path(item.path)) else -1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    live = [item for item in items if _inside(Path(item.path))]
    if not live:
        return
    if _refusal(config):
        # Files named on the command line bypass pytest_ignore_collect; deselect them here.
        items[:] = [item for item in items if not _inside(Path(item.path))]
        config.hook.pytest_deselected(items=live)
        return
    # Free checks first, the one that rents a GPU last (sort is stable within a stage).
    items.sort(key=lambda item: max(_stage(item), 0))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _stage(item) == _SAFETY_STAGE:
        item.config.stash.setdefault(_SAFETY_FAILURES, []).append(item.name)
    return report


def pytest_runtest_setup(item: pytest.Item) -> None:
    failures = item.config.stash.get(_SAFETY_FAILURES, [])
    if _stage(item) == _COSTLY_STAGE and failures:
        pytest.fail(f"not renting a GPU: the suite's own safety checks failed: {failures}", pytrace=False)


def _settings(config: pytest.Config) -> LiveSettings | LiveConfigError:
    if _SETTINGS not in config.stash:
        try:
            config.stash[_SETTINGS] = LiveSettings.from_env(os.environ)
        except LiveConfigError as exc:
            config.stash[_SETTINGS] = exc
    return config.stash[_SETTINGS]


def pytest_collection_finish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reason = _refusal(session.config)
    if reason:
        reporter.write_line(f"live RunPod suite (tests/live) not collected: {reason}")
        return
    settings = _settings(session.config)
    if isinstance(settings, LiveSettings):
        reporter.write_line(
            f"live RunPod suite: {settings.base_url}, price cap ${settings.max_price:.2f}/GPU-hour, "
            f"run id {settings.run_id} (rerun with RUNPOD_LIVE_RUN_ID={settings.run_id} to sweep it)"
        )


@pytest.fixture(scope="session")
def live(pytestconfig: pytest.Config) -> LiveSettings:
    settings = _settings(pytestconfig)
    if isinstance(settings, LiveConfigError):
        pytest.fail(str(settings), pytrace=False)
    return settings


@pytest.fixture(scope="session")
def contract_log() -> ContractLog:
    return ContractLog()


@pytest.fixture(scope="session")
def openapi() -> OpenApiContract:
    return OpenApiContract(openapi_document())


def _client(live: LiveSettings, transport: httpx.AsyncBaseTransport) -> RunPodClient:
    return RunPodClient(
        api_key=live.api_key,
        base_url=live.base_url,
        transport=transport,
        retry=_RETRY,
        metrics=RunPodMetrics(CollectorRegistry()),
    )


def _sweep_now(live: LiveSettings, marker: RunMarker) -> list[str]:
    async def run() -> list[str]:
        async with _client(live, httpx.AsyncHTTPTransport()) as client:
            return await sweep(client, marker)

    return asyncio.run(run())


@pytest.fixture(scope="session")
def marker(live: LiveSettings, pytestconfig: pytest.Config) -> Iterator[RunMarker]:
    failures = pytestconfig.stash.get(_SAFETY_FAILURES, [])
    if failures:
        pytest.fail(
            f"not sweeping RunPod pods: the suite's own safety checks failed: {failures}", pytrace=False
        )
    run = run_marker(live.run_id)
    # A rerun with RUNPOD_LIVE_RUN_ID first removes what that killed run left behind.
    _sweep_now(live, run)
    try:
        yield run
    finally:
        try:
            left = _sweep_now(live, run)
        except RunPodError as exc:
            pytest.fail(
                f"closing sweep failed ({exc}): delete RunPod pods whose env RPVK_OWNER starts with "
                f"{run.cluster_id}/ by hand, or rerun with RUNPOD_LIVE_RUN_ID={live.run_id}",
                pytrace=False,
            )
        if left:
            pytest.fail(f"the closing sweep had to delete pods this run left behind: {left}", pytrace=False)


@pytest.fixture
def contract_transport(openapi: OpenApiContract, contract_log: ContractLog) -> Iterator[ContractTransport]:
    before = len(contract_log.violations)
    transport = ContractTransport(httpx.AsyncHTTPTransport(), contract=openapi, log=contract_log)
    yield transport
    new = contract_log.violations[before:]
    if new:
        pytest.fail("RunPod answers departed from its OpenAPI document:\n" + "\n".join(new), pytrace=False)


@pytest.fixture
async def runpod(live: LiveSettings, contract_transport: ContractTransport) -> AsyncIterator[RunPodClient]:
    async with _client(live, contract_transport) as client:
        yield client


@pytest.fixture
async def raw_api(
    live: LiveSettings, contract_transport: ContractTransport
) -> AsyncIterator[httpx.AsyncClient]:
    base = live.base_url.rstrip("/").removesuffix("/v2")
    headers = {
        "Authorization": f"Bearer {live.api_key}",
        "User-Agent": user_agent(),
        "Accept": "application/json",
    }
    async with httpx.AsyncClient(
        base_url=base, headers=headers, transport=contract_transport, timeout=60.0
    ) as client:
        yield client
