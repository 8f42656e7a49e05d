"""`runpod-kubelet webhook`: settings, the composition root, and uvicorn over reloading TLS.

Two ways to run:
- in a cluster (the chart): the catalog comes from ConfigMap `runpod-catalog` in `--namespace`
  and owning Jobs from a cluster-wide Job watch, both kept in memory by `kit.kube.Reflector`;
- without a cluster (`--catalog-file FILE`: development, tests): the catalog comes from the
  file (RunPod's own catalog answer or our format) and the Job fallback is off (logged once).

HTTPS only: `--tls-cert-file`/`--tls-key-file` are required and re-read when they change. The
process exits non-zero when an essential task (server, a watch) dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
import uvloop
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from contract.catalog import CatalogError
from contract.policy import CATALOG_CONFIGMAP
from contract.settings import NodeSettings
from kit.logs import configure_logging
from webhook.app import Dependencies, create_app
from webhook.caches import CatalogSource, ConfigMapCatalog, FileCatalog, JobIndex, VolumeIndex
from webhook.tls import ReloadingTLS, TLSFilesError
from webhook.tolerations import (
    DEFAULT_OUTAGE_TOLERATION_SECONDS,
    PLUGIN_TOLERATION_SECONDS,
    OutageTolerations,
)
from webhook.volumes import VolumeLookups

log = logging.getLogger(__name__)

_KEEP_ALIVE_SECONDS = 120

__all__ = ["WebhookSettings", "load_webhook_settings", "main", "serve"]


class WebhookSettings(NodeSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="runpod-kubelet webhook",
        populate_by_name=True,
        extra="ignore",
    )

    tls_cert_file: str = Field(description="serving certificate (PEM); re-read when it changes")
    tls_key_file: str = Field(description="serving key (PEM); re-read when it changes")
    port: int = Field(default=8443, ge=1, le=65535, description="HTTPS port")
    host: str = Field(default="0.0.0.0", description="bind address")
    catalog_file: str | None = Field(
        default=None,
        description="serve from this catalog JSON instead of the cluster's ConfigMap (no Job fallback)",
    )
    outage_toleration_seconds: int | None = Field(
        default=DEFAULT_OUTAGE_TOLERATION_SECONDS,
        ge=0,
        description="how long new pods on the node tolerate its not-ready/unreachable NoExecute taints "
        "(a RunPod, key or binder outage) before eviction; 'unlimited' = never evicted",
    )

    apiserver_default_toleration_seconds: int = Field(
        default=PLUGIN_TOLERATION_SECONDS,
        ge=0,
        description="the apiserver's --default-not-ready-toleration-seconds (and unreachable): the "
        "tolerations it adds to every pod, which the webhook replaces with its own",
    )

    @field_validator("outage_toleration_seconds", mode="before")
    @classmethod
    def _unlimited(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() == "unlimited" else value

    def outage_tolerations(self) -> OutageTolerations:
        return OutageTolerations(
            seconds=self.outage_toleration_seconds,
            apiserver_default_seconds=self.apiserver_default_toleration_seconds,
        )


def load_webhook_settings(argv: Sequence[str]) -> WebhookSettings:
    """Flags over environment over defaults; raises ValidationError or SystemExit (argparse)."""
    return WebhookSettings(_cli_parse_args=list(argv))


def main(argv: list[str]) -> int:
    try:
        settings = load_webhook_settings(argv)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]).replace("_", "-")
            print(f"runpod-kubelet webhook: --{where}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        # uvloop: the event loop uvicorn.run would pick itself; measured with
        # benchmarks/webhook_bench at one connection, it lifted /mutate from 68 % to 87 % of the
        # floor's throughput (TLS records and socket callbacks cost less per review).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings))
    except (TLSFilesError, CatalogError) as exc:
        log.error("cannot start: %s", exc)
        print(f"runpod-kubelet webhook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def serve(settings: WebhookSettings) -> int:
    tls = ReloadingTLS(cert_file=settings.tls_cert_file, key_file=settings.tls_key_file)
    policy = settings.node_policy()
    async with contextlib.AsyncExitStack() as stack:
        background: dict[str, asyncio.Task[Any]] = {}
        catalog: CatalogSource
        if settings.catalog_file:
            catalog = FileCatalog(settings.catalog_file)
            deps = Dependencies(
                policy=policy,
                catalog=catalog,
                jobs=None,
                tls_handshakes=lambda: float(tls.handshakes),
                outage=settings.outage_tolerations(),
            )
            log.info(
                "serving from --catalog-file without a cluster: Job annotation fallback is off",
                extra={"catalog_file": settings.catalog_file},
            )
        else:
            # Imported here so `--catalog-file` runs need no Kubernetes client at all.
            from kit.kube import Reflector, load_api_client

            api = await load_api_client(settings.kubeconfig)
            stack.push_async_callback(api.close)
            configmaps = Reflector(
                api,
                path=f"/api/v1/namespaces/{settings.namespace}/configmaps",
                field_selector=f"metadata.name={CATALOG_CONFIGMAP}",
            )
            jobs = Reflector(api, path="/apis/batch/v1/jobs")
            claims = Reflector(api, path="/api/v1/persistentvolumeclaims")
            pvs = Reflector(api, path="/api/v1/persistentvolumes")
            index = VolumeIndex(claims=claims.items, volumes=pvs.items)
            catalog = ConfigMapCatalog(
                items=configmaps.items, key=f"{settings.namespace}/{CATALOG_CONFIGMAP}"
            )
            deps = Dependencies(
                policy=policy,
                catalog=catalog,
                jobs=JobIndex(jobs.items).lookup,
                jobs_synced=jobs.synced.is_set,
                tls_handshakes=lambda: float(tls.handshakes),
                outage=settings.outage_tolerations(),
                volumes=VolumeLookups(claims=index.claim, volumes=index.volume),
                volumes_synced=lambda: claims.synced.is_set() and pvs.synced.is_set(),
            )
            background["watch-catalog"] = asyncio.create_task(configmaps.run(), name="watch-catalog")
            background["watch-jobs"] = asyncio.create_task(jobs.run(), name="watch-jobs")
            background["watch-claims"] = asyncio.create_task(claims.run(), name="watch-claims")
            background["watch-volumes"] = asyncio.create_task(pvs.run(), name="watch-volumes")
        config = uvicorn.Config(
            create_app(deps),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # Longer than the apiserver's idle-connection timeout (90 s): if the server closed an
            # idle connection first, a review POSTed on it in that instant fails (POST is not
            # retried), and under failurePolicy Fail that fails a pod create.
            timeout_keep_alive=_KEEP_ALIVE_SECONDS,
            ssl_context_factory=lambda _config, _default: tls.context,
        )
        server = uvicorn.Server(config)
        # Everything built so far (FastAPI, pydantic schemas, the catalog) lives for the whole
        # process: keep it out of the collector's full scans, which otherwise land on reviews.
        gc.collect()
        gc.freeze()
        background["https"] = asyncio.create_task(server.serve(), name="https")
        log.info(
            "webhook starting",
            extra={
                "port": settings.port,
                "node": policy.node_name,
                "max_gpu_price": policy.max_gpu_price,
                "datacenters": ",".join(policy.allowed_datacenter_ids or ()) or "any",
                "outage_toleration_seconds": "unlimited"
                if settings.outage_toleration_seconds is None
                else settings.outage_toleration_seconds,
                "apiserver_default_toleration_seconds": settings.apiserver_default_toleration_seconds,
            },
        )
        try:
            done, _ = await asyncio.wait(background.values(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            for task in background.values():
                if task.get_name() != "https":
                    task.cancel()
            await asyncio.gather(*background.values(), return_exceptions=True)
        finished = done.pop()
        if finished.get_name() == "https" and not finished.cancelled() and finished.exception() is None:
            return 0  # a signal asked uvicorn to stop
        error = None if finished.cancelled() else finished.exception()
        log.error("essential task %s ended; exiting", finished.get_name(), exc_info=error)
        return 1
    return 1  # pragma: no cover  (mypy: the stack never swallows exceptions)
