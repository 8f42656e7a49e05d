"""Fixtures every subsystem shares: the real local control plane and a fresh namespace.

- `control_plane` (session): one `controlplane.ControlPlane` for the whole run, started lazily
  by the first test that asks for it (pure tests never pay for it). Attributes include
  `kubeconfig: Path`, `bin_dir: Path`, `server: str`, `ca_file`, `kubelet_client_ca_file`,
  `kubectl(*args, input=None, check=True)`, `http()` (sync admin httpx client) and
  `route_service_to_local_port(namespace, service, port)`. Every test using it is marked
  `cluster` automatically, so `pytest -m "not cluster"` runs the pure suite.
- `namespace` (function): a new namespace whose `default` ServiceAccount exists (pods can be
  created at once); deleted after the test without waiting.
- `kube_api` (function, async): a `kubernetes_asyncio` ApiClient for the admin kubeconfig.
- `worker_node` (session): a real worker node (`controlplane.WorkerNode`: containerd, kubelet,
  kube-proxy, CoreDNS) joined to `control_plane`, started by the first test that asks for it.
  Tests that use it run after every other test (collection order), so the rest of the suite
  sees the node-less cluster it was written for. Marked `node` automatically. A module that
  needs a tuned control plane starts its own node instead (marked `node` by hand): it runs
  before the shared node starts.
- `chart_image` (session): the project's image built from the Dockerfile (`tools/image/build`)
  and imported into the worker node; its reference.

Binaries are never built from here (a first build takes far longer than a test timeout): run
`make control-plane` (part of `make test`). Component logs live in the data directory, which
is deleted after a clean run; when any cluster test failed its logs, PKI and kubeconfigs are kept
(etcd data is not) and the path is printed.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient

from controlplane import BinariesMissing, ControlPlane, binaries_dir
from controlplane.images import built_image
from controlplane.node import WorkerNode, node_binaries_dir
from kit.kube import load_api_client

_PLANE = pytest.StashKey["ControlPlane"]()
_CLUSTER_FAILED = pytest.StashKey[bool]()
_KEPT = pytest.StashKey[Path]()
_SA_TIMEOUT = 30.0


def _uses_node(item: pytest.Item) -> bool:
    return "worker_node" in getattr(item, "fixturenames", ())


def _run_order(item: pytest.Item) -> int:
    """Node-less tests first; then tests that start a worker node of their own (marked `node`,
    on a control plane of their own) and stop it before the shared `worker_node` takes the
    machine's only node slot (the host lock) for the rest of the run."""
    if _uses_node(item):
        return 2
    return 1 if item.get_closest_marker("node") is not None else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
        if _uses_node(item):
            item.add_marker(pytest.mark.node)
    # Stable: node tests keep their own order, after everything else.
    items.sort(key=_run_order)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        item.config.stash[_CLUSTER_FAILED] = True
        plane = item.config.stash.get(_PLANE, None)
        if plane is not None:
            report.sections.append(("control plane", f"component logs: {plane.log_dir}"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, None)
    if kept is not None:
        terminalreporter.write_line(f"control plane data and component logs kept in {kept / 'logs'}")


@pytest.fixture(scope="session")
def control_plane(pytestconfig: pytest.Config) -> Iterator[ControlPlane]:
    try:
        bin_dir = binaries_dir(build=False)
    except BinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    data_dir = Path(tempfile.mkdtemp(prefix="runpod-kubelet-cp-"))
    plane = ControlPlane(bin_dir, data_dir)
    plane.start()
    pytestconfig.stash[_PLANE] = plane
    try:
        yield plane
    finally:
        plane.stop()
        if pytestconfig.stash.get(_CLUSTER_FAILED, False):
            # Logs, PKI and kubeconfigs explain a failure; etcd's data (tens of MB) does not.
            shutil.rmtree(plane.files.etcd_data, ignore_errors=True)
            pytestconfig.stash[_KEPT] = data_dir
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    http = control_plane.http()
    created = http.post(
        "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    created.raise_for_status()
    # The ServiceAccount admission plugin rejects pods until the controller-manager has made
    # the namespace's `default` ServiceAccount; wait here so tests need not.
    deadline = time.monotonic() + _SA_TIMEOUT
    while not http.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").is_success:
        if time.monotonic() > deadline:
            pytest.fail(f"no default ServiceAccount in {name} after {_SA_TIMEOUT:.0f}s")
        time.sleep(0.05)
    yield name
    http.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    api = await load_api_client(str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture(scope="session")
def worker_node(control_plane: ControlPlane) -> Iterator[WorkerNode]:
    node = WorkerNode(
        control_plane, node_bin_dir=node_binaries_dir(), data_dir=control_plane.data_dir / "node"
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def chart_image(worker_node: WorkerNode) -> str:
    image = built_image()
    worker_node.import_image(image.archive)
    return image.reference
