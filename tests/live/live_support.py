"""What the opt-in live RunPod suite decides and checks, apart from the tests that spend money.

Owns:
- the gate (`gate_refusal`): the suite runs only with `RUNPOD_LIVE=1` AND a `RUNPOD_API_KEY`,
  so a key in a developer's shell never spends money by accident;
- `LiveSettings`: the caps and budgets every costly step obeys, read once from the environment;
- `run_marker`: the deterministic name and owner-marker env of this run's one RunPod pod, built
  with the binder's own naming (`binder.pods.naming`), so the suite proves RunPod echoes the
  marker the binder's reconcile and sweeps rely on;
- `choose_gpus`: the cheapest in-stock GPU types under the price cap (pure, over the project's
  own `Catalog`, so the live catalog also goes through `build_catalog`);
- `ContractTransport`: an httpx transport that checks every answer against RunPod's official
  OpenAPI document (the copy bundled with the sandbox, pinned by the sandbox's contract tests),
  recording violations instead of raising them, so the project's `RunPodClient` runs unchanged
  on top of it.

- `sweep`: delete every RunPod pod carrying this run's marker, and no other.

It owns no other RunPod call (the tests) and no fixture (`conftest.py`).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from binder.pods.naming import owned_by_cluster, owner_markers, runpod_pod_name
from contract.catalog import AVAILABILITY_RANK, Catalog
from contract.policy import Cloud
from runpod_api import Pod, RunPodClient
from runpod_api.client import DEFAULT_BASE_URL

LIVE_FLAG: Final = "RUNPOD_LIVE"
KEY_ENV: Final = "RUNPOD_API_KEY"
BASE_URL_ENV: Final = "RUNPOD_BASE_URL"
MAX_PRICE_ENV: Final = "RUNPOD_LIVE_MAX_PRICE"
RUN_ID_ENV: Final = "RUNPOD_LIVE_RUN_ID"

DEFAULT_MAX_PRICE: Final = 0.50  # USD per GPU-hour: the hard cap of the one pod the suite creates
# Above this the override is refused: a typo (5 instead of 0.5) must not rent an H100.
PRICE_CEILING: Final = 3.00
DISK_GB: Final = 10
IMAGE: Final = "busybox:1.36.1"  # ~2 MB, has `sh`, no ENTRYPOINT: RunPod's `args` is the command
# Every costly step has a deadline; the sum bounds what one run can cost (README section).
RUNNING_TIMEOUT_S: Final = 600.0
LOGS_TIMEOUT_S: Final = 180.0
DELETE_TIMEOUT_S: Final = 90.0
POLL_INTERVAL_S: Final = 5.0
MAX_CANDIDATES: Final = 3  # GPU types tried when a create meets "no capacity" (the catalog is a hint)
EXIT_CODE: Final = 3  # the workload's exit code, read back from the completion wrapper's marker

_RUN_ID: Final = re.compile(r"^[a-z0-9]{4,16}$")
_RATE_MEMBER: Final = re.compile(r'^"(minute|hour|day)";r=\d+;t=\d+$')
_POLICY_MEMBER: Final = re.compile(r'^"(minute|hour|day)";q=\d+;w=\d+$')
_DOC_URI: Final = "urn:runpod-v2-openapi"


def gate_refusal(env: Mapping[str, str]) -> str | None:
    """Why the live suite must not be collected, or None when it may run (and spend money)."""
    live = env.get(LIVE_FLAG, "") == "1"
    key = bool(env.get(KEY_ENV, "").strip())
    if live and key:
        return None
    if key:
        return f"{KEY_ENV} is set but {LIVE_FLAG} is not 1 (the live suite spends real money; opt in)"
    if live:
        return f"{LIVE_FLAG}=1 but {KEY_ENV} is empty"
    return f"set {LIVE_FLAG}=1 and {KEY_ENV} to run it against real RunPod (it spends real money)"


class LiveConfigError(ValueError):
    """An override the suite refuses to run with; the message names the variable and the rule."""


@dataclass(frozen=True)
class LiveSettings:
    api_key: str = field(repr=False)
    base_url: str
    max_price: float
    run_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LiveSettings:
        raw_price = env.get(MAX_PRICE_ENV, "").strip()
        try:
            max_price = float(raw_price) if raw_price else DEFAULT_MAX_PRICE
        except ValueError:
            raise LiveConfigError(
                f"{MAX_PRICE_ENV}={raw_price!r} is not a number (USD per GPU-hour)"
            ) from None
        if not 0 < max_price <= PRICE_CEILING:
            raise LiveConfigError(
                f"{MAX_PRICE_ENV}={raw_price} is outside (0, {PRICE_CEILING}] USD per GPU-hour"
            )
        run_id = env.get(RUN_ID_ENV, "").strip() or secrets.token_hex(4)
        if not _RUN_ID.match(run_id):
            raise LiveConfigError(f"{RUN_ID_ENV}={run_id!r} must be 4-16 lowercase letters or digits")
        return cls(
            api_key=env.get(KEY_ENV, "").strip(),
            base_url=env.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL,
            max_price=max_price,
            run_id=run_id,
        )


@dataclass(frozen=True)
class RunMarker:
    """This run's ownership: only RunPod pods whose env names `cluster_id` are ever deleted."""

    cluster_id: str
    uid: str

    def name(self, attempt: int) -> str:
        return runpod_pod_name(cluster_id=self.cluster_id, uid=self.uid, attempt=attempt)

    def env(self, attempt: int) -> dict[str, str]:
        return owner_markers(
            cluster_id=self.cluster_id, namespace="live", name="cycle", uid=self.uid, attempt=attempt
        )

    def owns(self, env: Mapping[str, str] | None) -> bool:
        return owned_by_cluster(env, self.cluster_id) is not None

    def claims(self, pod: Pod) -> bool:
        """Ours to delete: this run's marker env AND one of this run's names (both, to be sure)."""
        return self.owns(pod.env) and pod.name.startswith(self.name(0).removesuffix("0"))


def run_marker(run_id: str) -> RunMarker:
    """Same run id, same marker: a rerun with `RUNPOD_LIVE_RUN_ID` sweeps what a killed run left."""
    return RunMarker(
        cluster_id=f"rpvk-live-{run_id}",
        uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/runpod-kubelet/live/{run_id}")),
    )


async def sweep(client: RunPodClient, marker: RunMarker) -> list[str]:
    """Delete every RunPod pod carrying this run's marker; return their ids. Never any other pod."""
    deleted: list[str] = []
    for pod in await client.list_pods():
        if marker.claims(pod):
            await client.delete_pod(pod.id)
            deleted.append(pod.id)
    return deleted


@dataclass(frozen=True)
class GpuChoice:
    gpu_id: str
    price: float
    availability: str
    datacenters: tuple[str, ...]  # best stocked first


def choose_gpus(catalog: Catalog, *, cloud: Cloud, max_price: float) -> list[GpuChoice]:
    """In-stock GPU types of `cloud` at most `max_price` per GPU-hour: cheapest, then most stock, then id."""
    choices: list[GpuChoice] = []
    for gpu in catalog.gpu_types:
        price = gpu.price_in(cloud)
        stock = gpu.stock_in(cloud)
        if price is None or price > max_price or not stock:
            continue
        ranked = sorted(stock.items(), key=lambda item: (-AVAILABILITY_RANK[item[1]], item[0]))
        best = ranked[0][1]
        choices.append(
            GpuChoice(
                gpu_id=gpu.id, price=price, availability=best, datacenters=tuple(dc for dc, _ in ranked)
            )
        )
    choices.sort(key=lambda c: (c.price, -AVAILABILITY_RANK[c.availability], c.gpu_id))
    return choices


# ---- the OpenAPI contract ------------------------------------------------------------------


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


class OpenApiContract:
    """Which documented response an answer is, and whether its status, media type and body fit."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc
        self._registry: Registry[Any] = Registry().with_resource(
            _DOC_URI, DRAFT202012.create_resource(dict(doc))
        )
        # Literal segments beat placeholders: most literal characters first.
        templates: list[str] = [str(t) for t in doc["paths"]]
        self._routes = sorted(
            ((_template_pattern(t), t) for t in templates),
            key=lambda item: -len(re.sub(r"\{[^/]+\}", "", item[1])),
        )

    def template(self, path: str) -> str | None:
        for pattern, template in self._routes:
            if pattern.match(path):
                return template
        return None

    def _resolve(self, node: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
        pointer = None
        while "$ref" in node:
            pointer = str(node["$ref"]).removeprefix("#")
            target: Any = self._doc
            for part in pointer.lstrip("/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node, pointer

    def problems(
        self, *, method: str, path: str, status: int, media: str, body: Any | None, has_body: bool
    ) -> list[str]:
        """Every way this answer departs from the document (empty: it conforms)."""
        template = self.template(path)
        operation = self._doc["paths"].get(template, {}).get(method.lower()) if template else None
        if operation is None:
            return [] if status in (404, 405) else [f"{method} {path} is not a documented operation"]
        responses = operation["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            return [f"status {status} is not documented"]
        spec, pointer = self._resolve(responses[key])
        if pointer is None:
            pointer = f"/paths/{_escape(template or path)}/{method.lower()}/responses/{key}"
        content = spec.get("content")
        if not content:
            return [f"status {status} must have no body"] if has_body else []
        if media not in content:
            return [f"media type {media!r} is not among {sorted(content)}"]
        if media == "text/event-stream":
            return []
        schema = {"$ref": f"{_DOC_URI}#{pointer}/content/{_escape(media)}/schema"}
        validator = Draft202012Validator(schema, registry=self._registry)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [f"body at {list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]]


def rate_header_problems(headers: httpx.Headers) -> list[str]:
    """RateLimit headers, where RunPod sends them, in the documented `"window";r=..;t=..` form."""
    out: list[str] = []
    for name, member in (("ratelimit", _RATE_MEMBER), ("ratelimit-policy", _POLICY_MEMBER)):
        value = headers.get(name)
        if value and not all(member.match(m.strip()) for m in value.split(",")):
            out.append(f"header {name}: {value!r} is not in the documented form")
    return out


@dataclass
class ContractLog:
    """What the transport saw: answers checked, answers with RateLimit headers, violations."""

    checked: int = 0
    rate_limited_answers: int = 0
    violations: list[str] = field(default_factory=list)


_HOP_HEADERS: Final = ("content-encoding", "content-length", "transfer-encoding")


class ContractTransport(httpx.AsyncBaseTransport):
    """Passes requests to `inner` and checks each answer against the contract (bodies are buffered,
    except log streams, whose status and media type alone are checked)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, contract: OpenApiContract, log: ContractLog
    ) -> None:
        self._inner = inner
        self._contract = contract
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        if media == "text/event-stream":
            self._record(where, request, response, body=None, has_body=True, media=media)
            return response
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        body: Any = None
        if content.strip() and "json" in media:
            try:
                body = httpx.Response(200, content=content).json()
            except ValueError:
                self.log.violations.append(f"{where}: {media} body is not JSON")
        self._record(where, request, response, body=body, has_body=bool(content.strip()), media=media)
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )

    def _record(
        self,
        where: str,
        request: httpx.Request,
        response: httpx.Response,
        *,
        body: Any,
        has_body: bool,
        media: str,
    ) -> None:
        self.log.checked += 1
        if response.headers.get("ratelimit"):
            self.log.rate_limited_answers += 1
        problems = self._contract.problems(
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            media=media,
            body=body,
            has_body=has_body,
        )
        problems += rate_header_problems(response.headers)
        self.log.violations.extend(f"{where}: {p}" for p in problems)

    async def aclose(self) -> None:
        await self._inner.aclose()
