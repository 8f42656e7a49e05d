"""Starting, waiting for and stopping one local control plane.

`ControlPlane(bin_dir, data_dir)` owns the processes it starts and the files under `data_dir`:

    data_dir/pki/            CA, apiserver serving cert, client certs, front-proxy CA, SA key pair
    data_dir/*.kubeconfig    admin (system:masters), controller-manager, scheduler
    data_dir/etcd/           etcd data
    data_dir/logs/<name>.log stdout+stderr of each component

`start()` writes the PKI and kubeconfigs, starts etcd, then kube-apiserver (waits for
`/readyz`), then kube-scheduler and kube-controller-manager (waits for their `/healthz`), and
finally waits until the controller-manager has created the `default` ServiceAccount, so that
"started" means pods can be created and controllers run. Each component runs in its own
process group (`start_new_session`) and receives SIGKILL if this process's starting thread dies
(`PR_SET_PDEATHSIG`), so a killed test run leaks no apiserver; `stop()` signals exactly those
groups (SIGTERM, then SIGKILL after a grace period) and never touches other processes. Nothing
under `data_dir` is deleted here: the caller decides whether logs are kept.

Not owned: building binaries (`binaries`), certificates' contents (`pki`), flags (`flags`),
Service routing (`routing`).
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from controlplane import flags, pki
from controlplane.egress import EgressProxy, egress_selector_config
from controlplane.flags import Files, Ports
from controlplane.processes import ChildProcess, free_port
from controlplane.routing import ServiceRoute

__all__ = [
    "ALL_COMPONENTS",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "PortTaken",
    "kubeconfig_document",
]

ALL_COMPONENTS: Final = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
_START_TIMEOUT: Final = 90.0
_START_ATTEMPTS: Final = 3
_POLL: Final = 0.1
_KUBECTL_TIMEOUT: Final = 120.0


class ControlPlaneError(RuntimeError):
    """A component did not start, or exited early; the message names its log file."""


class PortTaken(ControlPlaneError):
    """A component could not bind its port: another process took it after we picked it."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; unlike CalledProcessError, `str()` includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}"


class ControlPlane:
    """One local Kubernetes control plane on free loopback ports.

    Use as a context manager, or call `start()`/`stop()`. Blocking (subprocess and HTTP
    polling); call from a thread that lives as long as the control plane (see module docstring).
    `components` may drop the scheduler and controller-manager for tests that need only storage
    and the API; `extra_args` appends flags to a component's command line (a cluster tuned
    like an operator's, e.g. shorter node-lifecycle timings), later flags winning.
    """

    def __init__(
        self,
        bin_dir: Path,
        data_dir: Path,
        *,
        components: Collection[str] = ALL_COMPONENTS,
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        unknown = set(components) - set(ALL_COMPONENTS)
        if unknown or not {"etcd", "kube-apiserver"} <= set(components):
            raise ValueError(f"components must include etcd and kube-apiserver, got {sorted(components)}")
        self.bin_dir = Path(bin_dir)
        self.data_dir = Path(data_dir)
        self.files = Files(self.data_dir)
        self._wanted = [name for name in ALL_COMPONENTS if name in components]
        self._extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        if unknown_extra := set(self._extra_args) - set(ALL_COMPONENTS):
            raise ValueError(f"extra_args names no component: {sorted(unknown_extra)}")
        self._egress: EgressProxy | None = None
        self._egress_tcp: EgressProxy | None = None
        self._cluster_networks: list[str] = []
        self._ports: Ports | None = None
        self._processes: dict[str, ChildProcess] = {}
        self._routes: list[ServiceRoute] = []
        self._http: httpx.Client | None = None

    # --- what callers read -------------------------------------------------------------------

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise ControlPlaneError("control plane not started")
        return self._ports

    @property
    def server(self) -> str:
        return f"https://{flags.LOOPBACK}:{self.ports.apiserver}"

    @property
    def etcd_url(self) -> str:
        return f"http://{flags.LOOPBACK}:{self.ports.etcd_client}"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (user `admin`, group `system:masters`), certificates inlined."""
        return self.files.kubeconfig("admin")

    @property
    def ca_file(self) -> Path:
        """The cluster CA: verifies the apiserver and signs every client certificate."""
        return self.files.cert("ca")

    @property
    def ca_key_file(self) -> Path:
        """The cluster CA's key, for tests that need a certificate the cluster trusts."""
        return self.files.key("ca")

    @property
    def kubelet_client_ca_file(self) -> Path:
        """CA that signs the apiserver's kubelet client cert: what a kubelet API must trust.

        As in kubeadm clusters this is the cluster CA itself (the kubelet client cert is
        `CN=kube-apiserver-kubelet-client, O=system:masters`).
        """
        return self.files.cert("ca")

    @property
    def log_dir(self) -> Path:
        return self.files.logs

    def running(self) -> list[str]:
        return [name for name, proc in self._processes.items() if proc.exited() is None]

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Starts every component and returns when the cluster is usable (see module doc).

        Ports are picked free but can be taken by someone else before a component binds them
        (other engineers start control planes on the same machine); that case is retried with
        fresh ports and a fresh etcd.
        """
        for directory in (self.data_dir, self.files.pki, self.files.logs):
            directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._ports = Ports(*(free_port(flags.LOOPBACK) for _ in range(5)))
            self._write_pki_and_kubeconfigs()
            try:
                self._start_all()
            except PortTaken:
                self.stop()
                if attempt == _START_ATTEMPTS:
                    raise
                for stale in (self.files.etcd_data, self.files.logs):
                    shutil.rmtree(stale, ignore_errors=True)
                self.files.logs.mkdir()
                continue
            except BaseException:
                self.stop()
                raise
            break
        return self

    def _start_all(self) -> None:
        self._start_egress()
        self.start_component("etcd")
        self.start_component("kube-apiserver")
        for name in ("kube-scheduler", "kube-controller-manager"):
            if name in self._wanted:
                self._spawn(name)
        for name in ("kube-scheduler", "kube-controller-manager"):
            if name in self._wanted:
                self._wait_healthy(name)
        if "kube-controller-manager" in self._wanted:
            self._wait_for(
                "kube-controller-manager",
                "the default ServiceAccount",
                lambda: self.http().get("/api/v1/namespaces/default/serviceaccounts/default").is_success,
            )

    def stop(self) -> None:
        """Withdraws routes, then stops components in reverse start order. Idempotent."""
        while self._routes:
            self._routes.pop().close()
        if self._http is not None:
            self._http.close()
            self._http = None
        for name in reversed(list(self._processes)):
            self._processes.pop(name).stop()
        if self._egress_tcp is not None:
            self._egress_tcp.close()
            self._egress_tcp = None
        if self._egress is not None:
            self._egress.close()
            if self._egress.socket_path is not None:
                with contextlib.suppress(OSError):
                    self._egress.socket_path.parent.rmdir()
            self._egress = None

    def allow_cluster_network(self, cidr: str) -> None:
        """Lets the apiserver dial addresses of `cidr` (a worker node's pod network on this
        machine) through the egress proxy; other destinations stay refused."""
        if self._egress is None:
            raise ControlPlaneError("control plane not started")
        self._cluster_networks.append(cidr)
        for proxy in (self._egress, self._egress_tcp):
            if proxy is not None:
                proxy.allow_network(cidr)

    def cluster_network_proxy(self) -> str:
        """An `HTTPS_PROXY` URL into the cluster network, the apiserver's own egress: for cluster
        components run as host processes (metrics-server) that dial node addresses."""
        if self._egress_tcp is None:
            self._egress_tcp = EgressProxy(None)
            for cidr in self._cluster_networks:
                self._egress_tcp.allow_network(cidr)
        return self._egress_tcp.url

    def _start_egress(self) -> None:
        """The cluster network (egress.py). Its unix socket lives in a short /tmp path: socket
        paths are limited to ~100 bytes and data dirs under pytest's tmp are longer."""
        if self._egress is None:
            socket_path = Path(tempfile.mkdtemp(prefix="rpvk-egress-")) / "egress.sock"
            self._egress = EgressProxy(socket_path)
        else:
            socket_path = self._egress.socket_path or Path()
        self.files.egress_config.write_text(egress_selector_config(socket_path))

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start_component(self, name: str) -> None:
        """(Re)starts one component on its original port and waits until it serves.

        The component is killed when the calling thread exits (PR_SET_PDEATHSIG): from asyncio,
        `asyncio.to_thread` is fine (executor threads live until the loop closes).
        """
        self._spawn(name)
        self._wait_healthy(name)

    def stop_component(self, name: str) -> None:
        """Stops one component (e.g. the apiserver, to expire watches); others keep running."""
        if name == "kube-apiserver" and self._http is not None:
            self._http.close()
            self._http = None
        proc = self._processes.pop(name, None)
        if proc is not None:
            proc.stop()

    # --- helpers for tests -------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl with the admin kubeconfig; raises KubectlError if `check`."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=_KUBECTL_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def http(self) -> httpx.Client:
        """A synchronous admin client for the apiserver (base URL = `server`), reused."""
        if self._http is None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            context.load_cert_chain(self.files.cert("admin"), self.files.key("admin"))
            self._http = httpx.Client(base_url=self.server, verify=context, timeout=30.0)
        return self._http

    def route_service_to_local_port(
        self, namespace: str, service: str, port: int, *, service_port: int = 443
    ) -> ServiceRoute:
        """Makes `service` in `namespace` reach 127.0.0.1:`port` (see `routing` for how).

        The route is withdrawn by `route.close()` or at `stop()`. Creates the Service (port
        `service_port`) if it does not exist.
        """
        route = ServiceRoute(
            http=self.http(),
            namespace=namespace,
            service=service,
            port=port,
            service_port=service_port,
        )
        self._routes.append(route)
        return route

    # --- internals ---------------------------------------------------------------------------

    def _argv(self, name: str) -> list[str]:
        build = {
            "etcd": flags.etcd_args,
            "kube-apiserver": flags.apiserver_args,
            "kube-scheduler": flags.scheduler_args,
            "kube-controller-manager": flags.controller_manager_args,
        }[name]
        return [*build(self.bin_dir, self.files, self.ports), *self._extra_args.get(name, ())]

    def _spawn(self, name: str) -> None:
        if name not in self._wanted:
            raise ValueError(f"{name} is not a component of this control plane")
        if name in self._processes:
            raise ControlPlaneError(f"{name} is already running")
        proc = ChildProcess(name, self._argv(name), self.files.logs / f"{name}.log")
        proc.start()
        self._processes[name] = proc

    def _wait_healthy(self, name: str) -> None:
        if name == "etcd":
            url = f"{self.etcd_url}/health"
            self._wait_for(name, url, lambda: _get_ok(url, verify=False))
        elif name == "kube-apiserver":
            self._wait_for(name, "/readyz", lambda: self.http().get("/readyz").is_success)
        else:
            port = self.ports.scheduler if name == "kube-scheduler" else self.ports.controller_manager
            url = f"https://{flags.LOOPBACK}:{port}/healthz"
            self._wait_for(name, url, lambda: _get_ok(url, verify=False))

    def _wait_for(self, name: str, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        proc = self._processes[name]
        while True:
            code = proc.exited()
            if code is not None:
                error = PortTaken if "address already in use" in proc.log_tail() else ControlPlaneError
                raise error(
                    f"{name} exited with code {code} before {what} was ready; log {proc.log_path}:\n"
                    f"{proc.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name}: {what} not ready after {_START_TIMEOUT:.0f}s; log {proc.log_path}:\n"
                    f"{proc.log_tail()}"
                )
            time.sleep(_POLL)

    def _write_pki_and_kubeconfigs(self) -> None:
        pki_dir = self.files.pki
        ca = pki.new_ca("runpod-kubelet-local-ca")
        pki.write_pair(ca, pki_dir, "ca")
        serving = pki.issue(
            ca,
            common_name="kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=(flags.LOOPBACK, "::1", flags.KUBERNETES_SERVICE_IP),
            server=True,
        )
        pki.write_pair(serving, pki_dir, "apiserver")
        kubelet_client = pki.issue(
            ca, common_name="kube-apiserver-kubelet-client", organizations=("system:masters",), client=True
        )
        pki.write_pair(kubelet_client, pki_dir, "apiserver-kubelet-client")
        front_proxy_ca = pki.new_ca("front-proxy-ca")
        pki.write_pair(front_proxy_ca, pki_dir, "front-proxy-ca")
        pki.write_pair(
            pki.issue(front_proxy_ca, common_name=flags.FRONT_PROXY_CLIENT, client=True),
            pki_dir,
            "front-proxy-client",
        )
        service_account_key = pki.new_key()
        self.files.sa_public.write_bytes(pki.public_pem(service_account_key))
        self.files.sa_private.touch(mode=0o600)
        self.files.sa_private.write_bytes(pki.private_pem(service_account_key))
        users = {
            "admin": ("admin", ("system:masters",)),
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
        }
        for file_name, (user, groups) in users.items():
            client = pki.issue(ca, common_name=user, organizations=groups, client=True)
            pki.write_pair(client, pki_dir, file_name)
            kubeconfig = kubeconfig_document(self.server, ca.cert_pem, client, user=user)
            path = self.files.kubeconfig(file_name)
            path.touch(mode=0o600)
            path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_document(server: str, ca_pem: bytes, client: pki.KeyPair, *, user: str) -> dict[str, Any]:
    """A kubeconfig for `user` authenticating with `client`, certificates inlined."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": flags.CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem),
                    "client-key-data": _b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": flags.CLUSTER_NAME, "context": {"cluster": flags.CLUSTER_NAME, "user": user}}],
        "current-context": flags.CLUSTER_NAME,
    }


def _get_ok(url: str, *, verify: bool) -> bool:
    return httpx.get(url, verify=verify, timeout=2.0).is_success
