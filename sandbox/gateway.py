"""What RunPod's front door does before a handler runs: auth, quotas and scripted faults.

A pure ASGI middleware (streaming-safe, unlike `BaseHTTPMiddleware`) in front of every `/v2`
request, in RunPod's order:

1. bearer key: missing -> 401 `missing bearer token`, unknown -> 401 `invalid token`, both
   without RateLimit headers;
2. quota: every authenticated request counts; an exhausted window -> 429 with `Retry-After`
   and a `detail` naming the window; RateLimit/RateLimit-Policy headers on every answer;
3. read-only keys may only GET (403 `access denied`);
4. the first matching fault rule, acted out (status, ambiguous create, timeout).

Also renders Starlette's own 404/405 as RunPod problem+json (with `Allow` on 405).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.account import Account
from sandbox.faults import route_template
from sandbox.problems import PATH_NOT_FOUND_DETAIL, PROBLEM_JSON, ApiError, problem_body
from sandbox.scenario import FaultRule

__all__ = ["GatewayMiddleware", "problem_response", "render_api_error", "render_http_exception"]

_ACTING_KINDS: Final = frozenset({"status", "ambiguous_create", "timeout", "ambiguous_timeout"})
_HTML_PAGE: Final = "<html><head><title>{code}</title></head><body><h1>{code} {phrase}</h1></body></html>"


def problem_response(status: int, detail: str, *, headers: dict[str, str] | None = None) -> Response:
    return Response(
        problem_body(status, detail), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def render_api_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):  # registered for ApiError only
        raise exc
    return Response(exc.body(), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers)


async def render_http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return problem_response(404, PATH_NOT_FOUND_DETAIL, headers=headers)
    if exc.status_code == 405:
        allow = _ALLOW.get(route_template(request.url.path))
        if allow:
            headers["Allow"] = allow
        return problem_response(405, f"method {request.method} is not allowed on this path", headers=headers)
    return problem_response(exc.status_code, str(exc.detail), headers=headers)


# Methods per /v2 route, for `Allow` on 405 (Starlette would name only the first matching route).
_ALLOW: Final = {
    "/v2/pods": "GET, POST",
    "/v2/pods/{id}": "GET, PATCH, DELETE",
    "/v2/pods/{id}/action": "POST",
    "/v2/pods/{id}/logs": "GET",
    "/v2/catalog/gpus": "GET",
    "/v2/catalog/gpus/{id}": "GET",
    "/v2/catalog/datacenters": "GET",
    "/v2/registries": "GET, POST",
    "/v2/registries/{id}": "GET, DELETE",
    "/v2/network-volumes": "GET, POST",
    "/v2/network-volumes/{id}": "GET, PATCH, DELETE",
}


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, account: Account) -> None:
        self.app = app
        self.account = account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith("/v2"):
            await self.app(scope, receive, send)
            return
        try:
            await self._gate(scope, receive, send)
        except ClientDisconnect:
            # The client went away before its body arrived (killed, timed out): nothing was
            # done, there is no one to answer, and it is not the emulator's error to log.
            return

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        account = self.account
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        check = account.check_key(headers.get("authorization"))
        if check != "ok":
            detail = "missing bearer token" if check == "missing" else "invalid token"
            await problem_response(401, detail)(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        decision = account.rate.hit(account.clock())
        rate_headers = decision.headers
        if not decision.allowed:
            await problem_response(
                429,
                f"rate limit exceeded for the {decision.window} window",
                headers={**rate_headers, "Retry-After": str(decision.retry_after)},
            )(scope, receive, send)
            return
        account.requests[f"{method} {route_template(path)}"] += 1
        if method != "GET" and account.is_read_only(headers.get("authorization")):
            await problem_response(403, "access denied", headers=rate_headers)(scope, receive, send)
            return
        rule = account.faults.match(method, path, kinds=_ACTING_KINDS)
        if rule is None:
            await self.app(scope, receive, _with_headers(send, rate_headers))
            return
        await self._act(rule, scope, receive, send, rate_headers)

    async def _act(
        self, rule: FaultRule, scope: Scope, receive: Receive, send: Send, rate_headers: dict[str, str]
    ) -> None:
        if rule.kind in ("ambiguous_create", "ambiguous_timeout"):
            # Do the real work (the pod exists afterwards), then lose the answer.
            await self.app(scope, receive, _discard)
        if rule.kind in ("timeout", "ambiguous_timeout"):
            await _sleep_unless(self.account.closing, rule.delay_s)
            await problem_response(504, "upstream request timeout", headers=rate_headers)(
                scope, receive, send
            )
            return
        await _fault_response(rule, rate_headers)(scope, receive, send)


def _fault_response(rule: FaultRule, rate_headers: dict[str, str]) -> Response:
    status = rule.status if rule.kind == "status" else (rule.status if rule.status >= 500 else 500)
    headers = dict(rate_headers) if rule.headers else {}
    if status == 429 and rule.headers:
        headers["Retry-After"] = str(rule.retry_after)
    if rule.html:
        from http import HTTPStatus

        page = _HTML_PAGE.format(code=status, phrase=HTTPStatus(status).phrase)
        return Response(page, status_code=status, media_type="text/html", headers=headers)
    detail = rule.detail or {
        429: "rate limit exceeded for the minute window",
        500: "internal server error",
        502: "bad gateway",
        503: "service unavailable",
    }.get(status, "injected fault")
    return problem_response(status, detail, headers=headers)


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return


async def _discard(message: Message) -> None:
    return None


def _with_headers(send: Send, extra: dict[str, str]) -> Callable[[Message], Awaitable[None]]:
    encoded = [(k.lower().encode(), v.encode()) for k, v in extra.items()]

    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start" and encoded:
            message["headers"] = [*message.get("headers", []), *encoded]
        await send(message)

    return wrapped
