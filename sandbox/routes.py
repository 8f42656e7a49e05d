"""The `/v2` endpoints: thin handlers that parse HTTP, call the `Account`, and shape the answer.

Handlers are `async def` on purpose: the account lives on the event loop and is not
thread-safe, so nothing may run in Starlette's thread pool. Refusals are `ApiError`s, rendered
by the app's exception handler; auth, quotas and faults already happened in the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sandbox.account import Account
from sandbox.catalog import filter_datacenters, parse_catalog_query, parse_cpu_query, parse_datacenter_query
from sandbox.logbook import LogBook, LogCursor, filter_source, format_event, parse_log_query, select_backfill
from sandbox.problems import ApiError
from sandbox.validation import validate_query

__all__ = ["router"]

router = APIRouter(prefix="/v2", include_in_schema=False)

_SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def _account(request: Request) -> Account:
    account: Account = request.app.state.account
    return account


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None


@router.get("/catalog/gpus")
async def list_gpu_types(request: Request) -> JSONResponse:
    inventory = _account(request).inventory
    query = parse_catalog_query(dict(request.query_params))
    gpus = [inventory.render_gpu(g, query) for _, g in sorted(inventory.gpus.items())]
    return JSONResponse({"gpus": [g for g in gpus if g is not None]})


@router.get("/catalog/gpus/{gpu_id}")
async def get_gpu_type(gpu_id: str, request: Request) -> JSONResponse:
    inventory = _account(request).inventory
    query = parse_catalog_query(dict(request.query_params))
    gpu = inventory.gpus.get(gpu_id)
    if gpu is None:
        raise ApiError(404, "GPU type not found")
    return JSONResponse(inventory.render_gpu(gpu, query, single=True))


@router.get("/catalog/cpus")
async def list_cpu_types(request: Request) -> JSONResponse:
    inventory = _account(request).inventory
    query = parse_cpu_query(dict(request.query_params))
    return JSONResponse({"cpus": [inventory.render_cpu(c, query) for _, c in sorted(inventory.cpus.items())]})


@router.get("/catalog/cpus/{cpu_id}")
async def get_cpu_type(cpu_id: str, request: Request) -> JSONResponse:
    inventory = _account(request).inventory
    query = parse_cpu_query(dict(request.query_params))
    cpu = inventory.cpus.get(cpu_id)
    if cpu is None:
        raise ApiError(404, "CPU type not found")
    return JSONResponse(inventory.render_cpu(cpu, query))


@router.get("/catalog/datacenters")
async def list_datacenters(request: Request) -> JSONResponse:
    inventory = _account(request).inventory
    query = parse_datacenter_query(dict(request.query_params))
    dcs = [
        inventory.render_datacenter(
            dc, gpu_availability=query.gpu_availability, cpu_availability=query.cpu_availability
        )
        for dc in filter_datacenters(inventory, query)
    ]
    return JSONResponse({"dataCenters": dcs})


@router.get("/registries")
async def list_registries(request: Request) -> JSONResponse:
    return JSONResponse({"registries": _account(request).registries.listing()})


@router.post("/registries")
async def create_registry(request: Request) -> JSONResponse:
    return JSONResponse(_account(request).registries.create(await _json_body(request)), status_code=201)


@router.get("/registries/{registry_id}")
async def get_registry(registry_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).registries.get(registry_id))


@router.delete("/registries/{registry_id}")
async def delete_registry(registry_id: str, request: Request) -> Response:
    _account(request).delete_registry(registry_id)
    return Response(status_code=204)


@router.get("/network-volumes")
async def list_network_volumes(request: Request) -> JSONResponse:
    return JSONResponse({"networkVolumes": _account(request).volumes.listing()})


@router.post("/network-volumes")
async def create_network_volume(request: Request) -> JSONResponse:
    return JSONResponse(_account(request).volumes.create(await _json_body(request)), status_code=201)


@router.get("/network-volumes/{volume_id}")
async def get_network_volume(volume_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).volumes.get(volume_id))


@router.patch("/network-volumes/{volume_id}")
async def update_network_volume(volume_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).volumes.update(volume_id, await _json_body(request)))


@router.delete("/network-volumes/{volume_id}")
async def delete_network_volume(volume_id: str, request: Request) -> Response:
    _account(request).volumes.delete(volume_id)
    return Response(status_code=204)


@router.post("/pods")
async def create_pod(request: Request) -> JSONResponse:
    return JSONResponse(_account(request).create_pod(await _json_body(request)), status_code=201)


@router.get("/pods")
async def list_pods(request: Request) -> JSONResponse:
    # `includeClusterPods` is checked (a boolean); the sandbox has no clusters to include.
    validate_query("/v2/pods", "get", dict(request.query_params))
    return JSONResponse({"pods": _account(request).list_pods()})


@router.get("/pods/{pod_id}")
async def get_pod(pod_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).get_pod(pod_id))


@router.patch("/pods/{pod_id}")
async def update_pod(pod_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_account(request).patch_pod(pod_id, await _json_body(request)))


@router.delete("/pods/{pod_id}")
async def delete_pod(pod_id: str, request: Request) -> Response:
    _account(request).delete_pod(pod_id)
    return Response(status_code=204)


@router.post("/pods/{pod_id}/action")
async def pod_action(pod_id: str, request: Request) -> Response:
    answer = _account(request).act(pod_id, await _json_body(request))
    return Response(status_code=204) if answer is None else JSONResponse(answer)


@router.get("/pods/{pod_id}/logs")
async def pod_logs(pod_id: str, request: Request) -> StreamingResponse:
    account = _account(request)
    params = request.query_params
    cursor = parse_log_query(
        source=params.get("source"),
        tail=params.get("tail"),
        since=params.get("since"),
        last_event_id=request.headers.get("last-event-id"),
    )
    book = account.logbook(pod_id)
    slow = account.faults.match("GET", request.url.path, kinds=frozenset({"slow_logs"}))
    delay = slow.delay_s if slow is not None else 0.0
    stream = _stream(book, cursor, keepalive=account.timings.keepalive_s, delay=delay)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)


async def _stream(book: LogBook, cursor: LogCursor, *, keepalive: float, delay: float) -> AsyncIterator[str]:
    """Backfill, then live lines as they are printed; ends when the pod is gone."""
    backfill = select_backfill(book.lines, cursor)
    last = book.last_seq
    for line in backfill:
        if delay:
            await asyncio.sleep(delay)
        yield format_event(line)
    while True:
        fresh = filter_source(book.after(last), cursor.source)
        last = book.last_seq
        for line in fresh:
            if delay:
                await asyncio.sleep(delay)
            yield format_event(line)
        if fresh:
            continue
        if book.closed:
            return
        try:
            async with asyncio.timeout(keepalive):
                await book.wait_after(last)
        except TimeoutError:
            yield ": keepalive\n\n"
