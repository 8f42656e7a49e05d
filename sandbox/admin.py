"""`/_sandbox/*`: the emulator's control panel for tests, demos and people (no auth, loopback only).

GET    /_sandbox                    this list
GET    /_sandbox/state              pods (full, env included, each with the `createBody` it was
                                    created with, and `sshd`: whether SSH is served, its port and
                                    open connections; null without 22/tcp), terminated pods,
                                    creates, deletes, spendUsd, balanceUsd, requests per route,
                                    registries (id, name, usedBy: never a username or password),
                                    networkVolumes (usedBy)
GET    /_sandbox/faults             live fault rules
POST   /_sandbox/faults             add a rule (scenario `FaultRule`, e.g. {"route": "POST /v2/pods",
                                    "kind": "ambiguous_create", "count": 1})
DELETE /_sandbox/faults             drop all rules
PUT    /_sandbox/stock              {"gpuId", "dataCenterId", "cloud", "free"[, "cudaVersion"]}
PUT    /_sandbox/cpu-stock          {"cpuId", "dataCenterId", "free"}: free vCPUs of a CPU flavour
POST   /_sandbox/keys               {"key", "readOnly"}: accept another API key
DELETE /_sandbox/keys/{key}         revoke a key: its requests get 401
PUT    /_sandbox/balance            {"balanceUsd": 0.0 | null}: creates need an hour of credit (402)
PUT    /_sandbox/denied-gpus        ["NVIDIA H200"]: creates of these types get 403 (pool denial)
PUT    /_sandbox/failing-images     ["ghcr.io/acme/private:1"]: pulls of these images fail from now
                                    on (the pod goes to ERROR with a `system` log line saying so)
PUT    /_sandbox/sshdless-images    ["nginx:*"]: images (patterns) that run no sshd from their next
                                    start on: their 22/tcp refuses, no ssh.direct
PUT    /_sandbox/private-registries [{"host", "username", "password"}]: images under these hosts
                                    pull only with a registry credential of that username/password
PUT    /_sandbox/rate-limits        [{"window": "minute", "quota": 60, "windowS": 60}, ...]
PUT    /_sandbox/timings            scenario `Timings`
POST   /_sandbox/pods               seed a foreign pod (scenario `SeedPod`)
POST   /_sandbox/pods/{id}/crash    the pod goes to ERROR
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sandbox.account import Account
from sandbox.problems import ApiError
from sandbox.scenario import (
    CpuStockSetting,
    FaultRule,
    PrivateRegistry,
    RateWindow,
    SeedPod,
    StockSetting,
    Timings,
)

__all__ = ["router"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _loopback_only(request: Request) -> None:
    host = request.client.host if request.client else ""
    if host not in _LOOPBACK:
        raise ApiError(403, "the sandbox admin API only answers loopback clients")


router = APIRouter(prefix="/_sandbox", dependencies=[Depends(_loopback_only)])


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class KeyRequest(_Model):
    key: str = Field(min_length=1)
    read_only: bool = False


class BalanceRequest(_Model):
    balance_usd: float | None


def _account(request: Request) -> Account:
    account: Account = request.app.state.account
    return account


@router.get("")
async def index() -> Response:
    return Response((__doc__ or "").strip() + "\n", media_type="text/plain")


@router.get("/state")
async def state(request: Request) -> JSONResponse:
    return JSONResponse(_account(request).state())


@router.get("/faults")
async def list_faults(request: Request) -> JSONResponse:
    return JSONResponse({"faults": _account(request).faults.rules()})


@router.post("/faults", status_code=201)
async def add_fault(rule: FaultRule, request: Request) -> JSONResponse:
    account = _account(request)
    account.faults.add(rule)
    return JSONResponse({"faults": account.faults.rules()}, status_code=201)


@router.delete("/faults", status_code=204)
async def clear_faults(request: Request) -> Response:
    _account(request).faults.clear()
    return Response(status_code=204)


@router.put("/stock", status_code=204)
async def set_stock(setting: StockSetting, request: Request) -> Response:
    _account(request).set_stock(setting)
    return Response(status_code=204)


@router.put("/cpu-stock", status_code=204)
async def set_cpu_stock(setting: CpuStockSetting, request: Request) -> Response:
    _account(request).set_cpu_stock(setting)
    return Response(status_code=204)


@router.post("/keys", status_code=204)
async def add_key(body: KeyRequest, request: Request) -> Response:
    _account(request).add_key(body.key, read_only=body.read_only)
    return Response(status_code=204)


@router.delete("/keys/{key}", status_code=204)
async def revoke_key(key: str, request: Request) -> Response:
    _account(request).revoke_key(key)
    return Response(status_code=204)


@router.put("/balance", status_code=204)
async def set_balance(body: BalanceRequest, request: Request) -> Response:
    _account(request).set_balance(body.balance_usd)
    return Response(status_code=204)


@router.put("/denied-gpus", status_code=204)
async def set_denied_gpus(gpu_ids: list[str], request: Request) -> Response:
    _account(request).denied_gpu_ids = set(gpu_ids)
    return Response(status_code=204)


@router.put("/failing-images", status_code=204)
async def set_failing_images(images: list[str], request: Request) -> Response:
    _account(request).set_failing_images(images)
    return Response(status_code=204)


@router.put("/sshdless-images", status_code=204)
async def set_sshdless_images(patterns: list[str], request: Request) -> Response:
    _account(request).set_sshdless_images(patterns)
    return Response(status_code=204)


@router.put("/private-registries", status_code=204)
async def set_private_registries(registries: list[PrivateRegistry], request: Request) -> Response:
    _account(request).set_private_registries(registries)
    return Response(status_code=204)


@router.put("/rate-limits", status_code=204)
async def set_rate_limits(windows: list[RateWindow], request: Request) -> Response:
    _account(request).set_rate_limits(windows)
    return Response(status_code=204)


@router.put("/timings", status_code=204)
async def set_timings(timings: Timings, request: Request) -> Response:
    _account(request).set_timings(timings)
    return Response(status_code=204)


@router.post("/pods", status_code=201)
async def seed_pod(seed: SeedPod, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).seed_pod(seed), status_code=201)


@router.post("/pods/{pod_id}/crash")
async def crash_pod(pod_id: str, request: Request) -> JSONResponse:
    answer: dict[str, Any] = _account(request).crash_pod(pod_id)
    return JSONResponse(answer)
