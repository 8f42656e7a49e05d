"""Running the kubelet API: TLS, the uvicorn server, the serving-certificate rotation.

`serve_kubelet_api` is what the binder's composition root starts while leading: it binds the
kubelet port (`--kubelet-port`, all interfaces), serves HTTPS until cancelled, and on
cancellation stops accepting, ends open log streams (a follow never ends by itself) and
exec/attach/port-forward sessions (their SSH side closed with them), and returns. The process's signals stay with the composition root: uvicorn's own signal handling
is switched off here.

`KubeletApiServer` is the same as an object, with a `ready` event and the bound port, for
callers that need them (tests bind port 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote

import uvicorn
from kubernetes_asyncio.client import ApiClient

from binder.kubelet_api.app import EMPTY_VIEW, KubeletApi, NodeView, PodReader, RunPodLogs, build_app
from binder.kubelet_api.auth import KubeAuth
from binder.kubelet_api.peers import PeerRegistry
from binder.kubelet_api.streams import StreamTimings
from binder.kubelet_api.tls import (
    CsrError,
    CsrImpossible,
    ServingContext,
    renewal_delay,
    request_serving_certificate,
    self_signed_pair,
    utc_now,
)
from binder.kubelet_api.upgrade import UpgradeTracker, streaming_protocol
from binder.retained_logs import RetainedLogs
from binder.settings import BinderSettings
from binder.ssh.dialing import SshDialer
from kit.kube import KubeError, NotFound, get_json
from runpod_api.client import RunPodClient

__all__ = ["KubeletApiServer", "serve_kubelet_api"]

log = logging.getLogger(__name__)

# Open log streams get this long to end after a stop before they are cancelled.
GRACEFUL_STOP: Final = 1.0
SHUTDOWN_LIMIT: Final = 5.0
CSR_TIMEOUT: Final = 600.0
CSR_RETRY: Final = 60.0
LISTEN_BACKLOG: Final = 128


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The binder's composition root owns SIGTERM/SIGINT and cancels us.
        yield


def _listen(port: int) -> socket.socket:
    """A listening socket on every interface, IPv6 and IPv4 where the host has both."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[Any, ...] = ("::", port)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    sock.listen(LISTEN_BACKLOG)
    return sock


def pod_reader(api: ApiClient) -> PodReader:
    async def read_pod(namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            return await get_json(api, f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}")
        except NotFound:
            return None

    return read_pod


class KubeletApiServer:
    """The kubelet API over HTTPS on `port` (0 = any free port; see `bound_port`)."""

    def __init__(
        self,
        *,
        api: ApiClient,
        runpod: RunPodLogs,
        settings: BinderSettings,
        port: int | None = None,
        retained_logs: RetainedLogs | None = None,
        view: NodeView = EMPTY_VIEW,
        ssh_dialer: SshDialer | None = None,
        auth: KubeAuth | None = None,
        read_pod: PodReader | None = None,
        timings: StreamTimings | None = None,
    ) -> None:
        """`auth` and `read_pod` default to the apiserver's and `timings` (exec, attach and
        port-forward) to the settings' (tests give stand-ins)."""
        self._api = api
        self._settings = settings
        self._port = settings.kubelet_port if port is None else port
        self._csr = settings.kubelet_serving_csr
        self.peers = PeerRegistry()
        self.tls = ServingContext(client_ca_file=settings.kubelet_client_ca_file)
        self.handlers = KubeletApi(
            node_name=settings.node_name,
            auth=auth if auth is not None else KubeAuth(api=api),
            peers=self.peers,
            read_pod=read_pod if read_pod is not None else pod_reader(api),
            runpod=runpod,
            retained=retained_logs,
            view=view,
            ssh_dialer=ssh_dialer,
            stream_timings=timings if timings is not None else stream_timings(settings),
        )
        # exec/attach/portForward sessions in progress (connections taken over from uvicorn).
        self.upgrades = UpgradeTracker()
        self.ready = asyncio.Event()
        self.bound_port: int | None = None

    def _load_initial_certificate(self) -> None:
        settings = self._settings
        if settings.kubelet_tls_cert_file and settings.kubelet_tls_key_file:
            self.tls.load_files(
                cert_file=settings.kubelet_tls_cert_file, key_file=settings.kubelet_tls_key_file
            )
            self._csr = False  # the operator's files win
            return
        self.tls.install(
            self_signed_pair(node_name=settings.node_name, node_address=settings.node_address, now=utc_now())
        )

    async def _rotate_serving_certificate(self) -> None:
        """Obtain (and keep renewing) a cluster-signed serving certificate through CSRs."""
        settings = self._settings
        while True:
            try:
                pair = await request_serving_certificate(
                    self._api,
                    node_name=settings.node_name,
                    node_address=settings.node_address,
                    wait_limit=CSR_TIMEOUT,
                )
            except CsrImpossible as exc:
                log.error("kubelet serving certificate cannot be requested: %s", exc)
                return
            except (CsrError, KubeError) as exc:
                log.error("kubelet serving certificate not obtained (%s); still serving the current one", exc)
                await asyncio.sleep(CSR_RETRY)
                continue
            self.tls.install(pair)
            await asyncio.sleep(
                renewal_delay(not_before=pair.not_before, not_after=pair.not_after, now=utc_now())
            )

    async def serve(self) -> None:
        """Serve until cancelled. Raises OSError when the port cannot be bound."""
        self._load_initial_certificate()
        sock = _listen(self._port)
        self.bound_port = sock.getsockname()[1]
        context = self.tls.context
        config = uvicorn.Config(
            build_app(self.handlers),
            http=streaming_protocol(self.peers, self.handlers.upgrade_handler, self.upgrades),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_LIMIT),
            ssl_context_factory=lambda _config, _default: context,
        )
        server = _Server(config)
        rotation = (
            asyncio.create_task(self._rotate_serving_certificate(), name="kubelet-api-serving-cert")
            if self._csr
            else None
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="kubelet-api-uvicorn")
        try:
            # The socket already listens: connections made from now on wait in its backlog
            # until uvicorn accepts them, so the server is ready as of here.
            log.info("kubelet API serving on port %s", self.bound_port)
            self.ready.set()
            await asyncio.shield(serving)
        finally:
            # uvicorn stops accepting and closes idle connections; open responses (a follow
            # never ends by itself) and TLS goodbyes get GRACEFUL_STOP seconds, then their
            # connections are cut, which ends their responses.
            server.should_exit = True
            await asyncio.wait([serving], timeout=GRACEFUL_STOP)
            self.peers.abort_all()
            # Cut streaming sessions end with their connections; let them close their SSH side.
            await self.upgrades.wait(GRACEFUL_STOP)
            await asyncio.wait([serving], timeout=SHUTDOWN_LIMIT)
            for task in (serving, rotation):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            self.peers.abort_all()
            sock.close()
            self.tls.close()
            self.ready.clear()


def stream_timings(settings: BinderSettings) -> StreamTimings:
    """exec/attach/portForward timeouts from the settings (0 idle timeout: none)."""
    return StreamTimings(
        connect_timeout=settings.stream_connect_timeout,
        idle_timeout=settings.stream_idle_timeout or None,
    )


async def serve_kubelet_api(
    *,
    api: ApiClient,
    runpod: RunPodClient,
    settings: BinderSettings,
    retained_logs: RetainedLogs | None = None,
    view: NodeView = EMPTY_VIEW,
    ssh_dialer: SshDialer | None = None,
) -> None:
    """Serve the kubelet API on `settings.kubelet_port` until cancelled (see module docstring).

    `retained_logs`: the store the pod controller's completion readers fill (finished pods);
    `view`: the pod controller's pods and usage ledger, for the read endpoints; `ssh_dialer`:
    how exec, attach and port-forward reach pods (None: those answer 501)."""
    await KubeletApiServer(
        api=api,
        runpod=runpod,
        settings=settings,
        retained_logs=retained_logs,
        view=view,
        ssh_dialer=ssh_dialer,
    ).serve()
