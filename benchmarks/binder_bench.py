"""Binder benchmark: RunPod calls per sync tick, memory, bind->create latency, a 1,000-pod burst.

Real control plane + sandbox RunPod (with a per-minute quota, so pacing matters) + the
`runpod-kubelet binder` subprocess. Pods are added in steps up to 10, 100 and 1,000, all at
once per step; after each step, once every pod runs, the binder is watched for a few steady
sync ticks:

    calls/tick   RunPod pod requests per sync tick in steady state (must be 1: one list, no
                 per-pod GET); `other pod` = the pod calls besides the lists in that window (0)
    node/tick    the node's credential probe and the catalog publisher, per tick (constant)
    rss MiB      the binder's resident memory at that many pods
    p50/p95 s    bind -> RunPod create latency of the pods added in that step
    429s         rate-limited answers the binder received during the step (pacing keeps it ~0)
    step s       time until every pod of the step was Running

Run with `python -m benchmarks.binder_bench [--sizes 10,100,1000]`. Bounded by `--timeout`.
Absolute times on a shared machine are noise; the calls-per-tick column is the contract.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from benchmarks.chaos import API_KEY, NAMESPACE, BinderProcess, our_pods, pod_body

RECONCILE: Final = 2.0
STEADY_TICKS: Final = 4
# The sandbox's quota: generous for the steady state, tight enough that a 1,000-pod burst must
# be paced (each create is one POST, plus the list per tick).
MINUTE_QUOTA: Final = 3000
GPUS: Final = ("NVIDIA RTX A4000", "NVIDIA A40")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rate_limited(health_port: int) -> int:
    try:
        text = httpx.get(f"http://127.0.0.1:{health_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0  # not serving yet: it has not been refused anything either
    total = 0.0
    for match in re.finditer(
        r'^runpod_api_requests_total\{[^}]*status="429"[^}]*\} ([0-9.e+]+)$', text, re.M
    ):
        total += float(match.group(1))
    return int(total)


def pod_calls(requests: dict[str, int]) -> tuple[int, int, int]:
    """(pod list calls, other pod calls, non-pod calls) from the sandbox's per-route counters.

    Log streams are left out (none in this benchmark: its pods are not run-to-completion);
    non-pod calls are the node's health probe and the catalog publisher, which do not grow
    with the number of pods.
    """
    lists = requests.get("GET /v2/pods", 0)
    pods = sum(
        n
        for route, n in requests.items()
        if route.split(" ")[-1].startswith("/v2/pods") and "/logs" not in route
    )
    total = sum(n for route, n in requests.items() if "/logs" not in route)
    return lists, pods - lists, total - pods


async def wait_until_ready(health_port: int, *, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{health_port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the binder was not ready within {within:.0f}s")


async def run_bench(
    *, kubeconfig: Path, sandbox: Any, sizes: Sequence[int], log_dir: Path, budget: float
) -> list[dict[str, Any]]:
    from kit.kube import NotFound, get_json, load_api_client, post_json

    for gpu in GPUS:
        sandbox.admin.set_stock(gpu_id=gpu, datacenter_id="EU-RO-1", cloud="SECURE", free=5000)
    sandbox.admin.set_rate_limits([{"window": "minute", "quota": MINUTE_QUOTA, "windowS": 60}])
    api = await load_api_client(str(kubeconfig))
    binder = BinderProcess(
        kubeconfig=kubeconfig,
        base_url=sandbox.base_url,
        log_path=log_dir / "binder.log",
        extra=("--reconcile-interval", str(RECONCILE), "--sweep-interval", "30"),
    )
    # Bind->create latency is the binder's reaction time, not its start-up (importing the
    # Kubernetes client alone takes seconds on a loaded 2-core machine): wait until it serves.
    await wait_until_ready(binder.health_port, within=180)
    await asyncio.sleep(RECONCILE)  # its first sync tick (the pod list it recovers from)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    try:
        await post_json(
            api,
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        for _ in range(100):
            try:
                await get_json(api, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                break
            except NotFound:
                await asyncio.sleep(0.2)
        total = 0
        for size in sizes:
            if time.monotonic() - started > budget:
                print(f"time budget spent; stopping before {size} pods", flush=True)
                break
            step_start = time.monotonic()
            limited_before = rate_limited(binder.health_port)
            names = [f"b{i:04d}" for i in range(total, size)]
            posted: dict[str, float] = {}

            async def create(name: str, posted: dict[str, float] = posted) -> None:
                body = pod_body(name, completes=False)
                body["metadata"]["annotations"]["plan.runpod.io/candidates"] = (
                    '[{"gpu":"NVIDIA RTX A4000","dc":"EU-RO-1","usdPerHour":0.35},'
                    '{"gpu":"NVIDIA A40","dc":"EU-RO-1","usdPerHour":0.44}]'
                )
                pod = await post_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods", body)
                posted[pod["metadata"]["uid"]] = time.monotonic()

            for chunk in range(0, len(names), 50):
                await asyncio.gather(*(create(n) for n in names[chunk : chunk + 50]))
            seen: dict[str, float] = {}
            while len(seen) < len(posted) and time.monotonic() - started < budget:
                for pod in our_pods(sandbox.admin.state()["pods"]):
                    uid = pod["env"]["RPVK_POD_UID"]
                    if uid in posted and uid not in seen:
                        seen[uid] = time.monotonic()
                await asyncio.sleep(0.25)
            while time.monotonic() - started < budget:
                listed = await get_json(api, f"/api/v1/namespaces/{NAMESPACE}/pods")
                running = sum(
                    1 for p in listed.get("items") or [] if (p.get("status") or {}).get("phase") == "Running"
                )
                if running >= size:
                    break
                await asyncio.sleep(0.5)
            step_seconds = time.monotonic() - step_start
            await asyncio.sleep(RECONCILE * 2)  # let the last fast ticks settle into steady state
            before = pod_calls(sandbox.admin.state()["requests"])
            await asyncio.sleep(RECONCILE * STEADY_TICKS)
            after = pod_calls(sandbox.admin.state()["requests"])
            lists, others, node_calls = (after[i] - before[i] for i in range(3))
            # The sandbox counts its own /_sandbox admin calls nowhere near /v2, so these are all binder calls.
            latencies = sorted(seen[u] - posted[u] for u in seen)
            rows.append(
                {
                    "pods": size,
                    "calls_per_tick": (lists + others) / lists if lists else float("nan"),
                    "per_pod_calls": others,
                    "node_calls_per_tick": node_calls / lists if lists else float("nan"),
                    "rss_mib": rss_mib(binder.pid),
                    "p50": statistics.median(latencies) if latencies else float("nan"),
                    "p95": latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan"),
                    "rate_limited": rate_limited(binder.health_port) - limited_before,
                    "step_seconds": step_seconds,
                    "created": len(seen),
                }
            )
            print(_row(rows[-1]), flush=True)
            total = size
    finally:
        binder.stop()
        with contextlib.suppress(Exception):
            await api.close()
    return rows


_HEADER: Final = f"{'pods':>6} {'calls/tick':>10} {'other pod':>9} {'node/tick':>9} {'rss MiB':>8} {'p50 s':>7} {'p95 s':>7} {'429s':>5} {'step s':>7}"


def _row(row: dict[str, Any]) -> str:
    return (
        f"{row['pods']:>6} {row['calls_per_tick']:>10.2f} {row['per_pod_calls']:>9} "
        f"{row['node_calls_per_tick']:>9.2f} {row['rss_mib']:>8.1f} "
        f"{row['p50']:>7.2f} {row['p95']:>7.2f} {row['rate_limited']:>5} {row['step_seconds']:>7.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.binder_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default="10,100,1000", help="cumulative pod counts, comma separated")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run, seconds")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    from controlplane import ControlPlane, binaries_dir
    from sandbox.testing import running_sandbox

    data_dir = Path(tempfile.mkdtemp(prefix="runpod-kubelet-binder-bench-"))
    plane = ControlPlane(binaries_dir(build=False), data_dir)
    plane.start()
    ok = False
    try:
        with running_sandbox(api_key=API_KEY, seed=1) as sandbox:
            print(_HEADER, flush=True)
            rows = asyncio.run(
                run_bench(
                    kubeconfig=plane.kubeconfig,
                    sandbox=sandbox,
                    sizes=sizes,
                    log_dir=data_dir,
                    budget=args.timeout,
                )
            )
        ok = bool(rows) and all(r["calls_per_tick"] == 1.0 for r in rows)
        print(
            "\nbinder: "
            + ("one RunPod call per tick at every size" if ok else "MORE than one RunPod call per tick")
        )
        print(_HEADER)
        for row in rows:
            print(_row(row))
    finally:
        plane.stop()
        if ok:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"logs kept in {data_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
