"""Sandbox test fixtures: a running sandbox, a contract-checked httpx client on it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sandbox_helpers import API_KEY, FAST, Contract, contract_client, load_contract

from sandbox.testing import RunningSandbox, running_sandbox


@pytest.fixture(scope="session")
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox(api_key=API_KEY, seed=1, timings=FAST) as sb:
        yield sb


@pytest.fixture
def api(sandbox: RunningSandbox, contract: Contract) -> Iterator[httpx.Client]:
    with contract_client(sandbox, contract) as client:
        yield client
