"""`make chaos`: kill the binder at random during creates and deletes; count leaks and duplicates.

Real control plane + sandbox RunPod (faults on: ambiguous creates, create timeouts, 5xx, 429,
failing deletes and lists) + `runpod-kubelet binder` as a subprocess, SIGKILLed at random 20
times while 50 pods are created and deleted (a fifth of the deletes forced, which only the orphan
sweep can clean up; a third of the pods run to completion). Then one binder runs undisturbed
until everything settles, and the sandbox's own books are checked:

    leaked      RunPod pods of this cluster still alive after every Kubernetes pod is gone
    duplicated  Kubernetes pod UIDs for which RunPod ever created more than one pod
    creates     RunPod creates (sandbox counter);  deletes = Kubernetes deletes issued
    kills       SIGKILLs delivered to the binder

The last line is `leaked=N duplicated=M creates=K deletes=L kills=J`; the exit code is 0 only
when leaked and duplicated are both 0. Bounded in time (`--timeout`). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from binder.testing import BinderProcess as RunningBinder

API_KEY: Final = "chaos-key"
NODE: Final = "chaos-runpod"
NAMESPACE: Final = "chaos"
CLUSTER_ID: Final = "chaos-cluster"
FAULTS: Final[tuple[dict[str, Any], ...]] = (
    {"route": "POST /v2/pods", "kind": "ambiguous_create", "count": 1},
    {"route": "POST /v2/pods", "kind": "ambiguous_timeout", "count": 1, "delaySeconds": 3},
    {"route": "POST /v2/pods", "kind": "timeout", "count": 1, "delaySeconds": 3},
    {"route": "POST /v2/pods", "kind": "status", "status": 500, "count": 1},
    {"route": "POST /v2/pods", "kind": "status", "status": 429, "count": 2, "retryAfter": 1},
    {"route": "DELETE /v2/pods/{id}", "kind": "status", "status": 503, "count": 2},
    {"route": "GET /v2/pods", "kind": "status", "status": 500, "count": 1},
)


class BinderProcess(RunningBinder):
    """The chaos binder: short intervals, no leader election, output appended to one log file."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        base_url: str,
        log_path: Path,
        node: str = NODE,
        namespace: str = NAMESPACE,
        cluster_id: str = CLUSTER_ID,
        extra: Sequence[str] = (),
    ) -> None:
        args = [
            "--kubeconfig", str(kubeconfig), "--runpod-base-url", base_url,
            "--node-name", node, "--namespace", namespace, "--cluster-id", cluster_id,
            "--no-leader-election", "--reconcile-interval", "2", "--fast-interval", "0.5",
            "--sweep-interval", "2", "--sweep-grace-seconds", "5", "--gpu-budget", "1000",
            "--max-gpu-price", "2", "--node-status-interval", "2", "--log-level", "info", *extra,
        ]  # fmt: skip
        super().__init__(args=args, log_path=log_path, api_key=API_KEY, append=True)


def pod_body(name: str, *, completes: bool) -> dict[str, Any]:
    from contract.plan import Candidate, Plan, plan_to_annotations

    plan = Plan(
        candidates=(
            Candidate(gpu="NVIDIA A40", dc="EU-RO-1", usdPerHour=0.44),
            Candidate(gpu="NVIDIA RTX A4000", usdPerHour=0.35),
        ),
        gpu_count=1,
        cloud="SECURE",
        container_disk_gb=20,
        max_gpu_price=2.0,
        catalog_revision="chaos",
    )
    container: dict[str, Any] = {"name": "main", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04"}
    if completes:
        container["command"] = ["sh", "-c", "echo done; exit 0"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": plan_to_annotations(plan)},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never" if completes else "Always",
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [container],
        },
    }


def our_pods(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if (p.get("env") or {}).get("RPVK_OWNER", "").startswith(CLUSTER_ID + "/")]


def count_duplicates(state: dict[str, Any]) -> int:
    """Kubernetes pod UIDs for which RunPod ever held more than one pod (alive or terminated)."""
    per_uid = Counter(p["env"]["RPVK_POD_UID"] for p in our_pods([*state["pods"], *state["terminated"]]))
    return sum(1 for n in per_uid.values() if n > 1)


async def run_chaos(
    *, kubeconfig: Path, sandbox: Any, ops: int, kills: int, seed: int, budget_seconds: float, log_dir: Path
) -> dict[str, int]:
    from kit.kube import NotFound, delete_json, get_json, load_api_client, post_json

    rng = random.Random(seed)
    api = await load_api_client(str(kubeconfig))
    binder_log = log_dir / "binder.log"
    binder = BinderProcess(kubeconfig=kubeconfig, base_url=sandbox.base_url, log_path=binder_log)
    started = time.monotonic()
    counts = {"creates": 0, "deletes": 0, "kills": 0}
    try:
        await post_json(
            api,
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        with contextlib.suppress(Exception):
            await post_json(
                api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
            )
        for _ in range(100):
            try:
                await get_json(api, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                break
            except NotFound:
                await asyncio.sleep(0.2)
        live: list[str] = []
        next_kill = time.monotonic() + rng.uniform(2.0, 5.0)
        created = deleted = 0
        while created < ops or deleted < ops or counts["kills"] < kills:
            if time.monotonic() - started > budget_seconds * 0.6:
                break
            now = time.monotonic()
            if counts["kills"] < kills and now >= next_kill:
                binder.kill()
                counts["kills"] += 1
                binder = BinderProcess(kubeconfig=kubeconfig, base_url=sandbox.base_url, log_path=binder_log)
                next_kill = now + rng.uniform(3.0, 9.0)
            if rng.random() < 0.3:
                sandbox.admin.inject(rng.choice(FAULTS))
            can_create = created < ops
            can_delete = bool(live) and deleted < created
            if can_create and (not can_delete or len(live) < 6 or rng.random() < 0.5):
                name = f"c{created:03d}"
                await post_json(
                    api, f"/api/v1/namespaces/{NAMESPACE}/pods", pod_body(name, completes=rng.random() < 0.33)
                )
                live.append(name)
                created += 1
            elif can_delete:
                name = live.pop(rng.randrange(len(live)))
                force = rng.random() < 0.2
                body = {"gracePeriodSeconds": 0} if force else None
                with contextlib.suppress(NotFound):
                    await delete_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods/{name}", body=body)
                deleted += 1
            await asyncio.sleep(rng.uniform(0.5, 2.0))
        counts["creates_issued"], counts["deletes"] = created, deleted
        # Whatever is left gets deleted too: the end state must be "no pods, no RunPod pods".
        for name in live:
            with contextlib.suppress(NotFound):
                await delete_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            counts["deletes"] += 1
        sandbox.admin.clear_faults()
        deadline = started + budget_seconds
        while time.monotonic() < deadline:
            pods = (await get_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods")).get("items") or []
            alive = [p for p in our_pods(sandbox.admin.state()["pods"]) if p.get("status") != "TERMINATED"]
            if not pods and not alive:
                break
            await asyncio.sleep(1.0)
    finally:
        binder.stop()
        await api.close()
    state = sandbox.admin.state()
    counts["leaked"] = len([p for p in our_pods(state["pods"]) if p.get("status") != "TERMINATED"])
    counts["duplicated"] = count_duplicates(state)
    counts["runpod_creates"] = int(state["creates"])
    counts["seconds"] = int(time.monotonic() - started)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=50, help="pods created (and as many deleted)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the binder")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args(argv)

    from controlplane import ControlPlane, binaries_dir
    from sandbox.testing import running_sandbox

    data_dir = Path(tempfile.mkdtemp(prefix="runpod-kubelet-chaos-"))
    plane = ControlPlane(binaries_dir(build=False), data_dir)
    print(f"chaos: seed={args.seed} ops={args.ops} kills={args.kills} data={data_dir}", flush=True)
    plane.start()
    failed = True
    try:
        with running_sandbox(api_key=API_KEY, seed=args.seed) as sandbox:
            counts = asyncio.run(
                run_chaos(
                    kubeconfig=plane.kubeconfig,
                    sandbox=sandbox,
                    ops=args.ops,
                    kills=args.kills,
                    seed=args.seed,
                    budget_seconds=args.timeout,
                    log_dir=data_dir,
                )
            )
        failed = bool(counts["leaked"] or counts["duplicated"])
        print(f"runpod creates={counts['runpod_creates']} pods created={counts['creates_issued']} "
              f"seconds={counts['seconds']}", flush=True)  # fmt: skip
        print(
            f"leaked={counts['leaked']} duplicated={counts['duplicated']} creates={counts['creates_issued']} "
            f"deletes={counts['deletes']} kills={counts['kills']}",
            flush=True,
        )
    finally:
        plane.stop()
        if failed or args.keep:
            print(f"logs kept in {data_dir}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
