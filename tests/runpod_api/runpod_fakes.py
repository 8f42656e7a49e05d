"""Test doubles for the RunPod client's tests: a fake clock, RunPod-shaped answers.

Not a fake RunPod: handlers in each test state the one answer they need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from runpod_api import RunPodClient

API_KEY = "rpa_TESTKEY0123456789SECRETVALUE"


ClientFactory = Callable[..., RunPodClient]


class FakeClock:
    """Monotonic time that moves only when someone sleeps; remembers every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def problem(status: int, detail: str, *, title: str = "Error", **extra: Any) -> httpx.Response:
    body = {"title": title, "status": status, "detail": detail, **extra}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def pod_json(pod_id: str = "xedezhzb9la3ye", **fields: Any) -> dict[str, Any]:
    """A full v2 Pod as RunPod answers it (notes §4.6)."""
    pod: dict[str, Any] = {
        "id": pod_id,
        "name": "rpvk-c1a2-7f3a9b21-0",
        "status": "RUNNING",
        "actions": ["stop", "restart", "terminate"],
        "image": "nginx:1.27",
        "args": "",
        "disk": 20,
        "mounts": {},
        "ports": ["80/http", "22/tcp"],
        "env": {"RPVK_OWNER": "c1a2/ns1/web-7f3a"},
        "registry": None,
        "gpu": {"id": "NVIDIA A40", "count": 1},
        "cloud": "SECURE",
        "dataCenterId": "EU-RO-1",
        "cudaVersion": "12.8",
        "ssh": {
            "proxy": {"host": "ssh.runpod.io", "port": 22, "username": "x-64411eb2", "command": "ssh x"},
            "direct": {"host": "195.26.233.3", "port": 34446, "username": "root", "command": "ssh root"},
        },
        "template": None,
        "cost": 0.44,
        "locked": False,
        "globalNetworking": {"enabled": False},
        "runtime": {
            "uptime": 312,
            "gpus": [{"util": 0, "memoryUtil": 1}],
            "ports": [
                {"private": 22, "public": 34446, "type": "tcp", "ip": "195.26.233.3"},
                {"private": 80, "public": None, "type": "http", "ip": None},
            ],
        },
        "createdAt": "2026-11-20T09:14:02Z",
        "startedAt": "2026-11-20T09:16:40Z",
    }
    pod.update(fields)
    return pod
