"""Fixtures for the chart tests: a real helm binary (tools/helm/fetch) and `render`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import RELEASE_NAMESPACE, Render, fetch_helm, helm_template


@pytest.fixture(scope="session")
def helm() -> Path:
    return fetch_helm()


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """render("runpod.apiKey=x", ...) -> the manifests, parsed; fails the test on a helm error.

    Renders each value set once per session (helm is the slow part); every caller gets a copy.
    """
    cache: dict[tuple[tuple[str, ...], str], list[dict[str, Any]]] = {}

    def _render(*values: str, namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
        key = (values, namespace)
        if key not in cache:
            result = helm_template(helm, values=values, namespace=namespace)
            if result.returncode != 0:
                pytest.fail(f"helm template failed: {result.stderr}")
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return copy.deepcopy(cache[key])

    return _render
