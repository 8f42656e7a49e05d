"""`runpod-kubelet demo` (`make demo`): the whole system in one command, narrated.

    runpod-kubelet demo [--keep] [--yes] [--kubeconfig FILE] [--live] [--chart] [--job FILE] [--data-dir DIR]

Default: builds (first run only) and starts a local Kubernetes control plane, the sandbox
RunPod, the binder and the webhook, then tells the story in `demo_story` and tears everything
down. `--keep` leaves it all running until Ctrl-C and prints the `KUBECONFIG` to use.

`--kubeconfig FILE` (or `KUBECONFIG`) runs the same story on an existing cluster instead of a
local control plane (no Go toolchain needed): the binder runs here against that cluster; the
webhook's decisions are made client-side with the same functions, because that apiserver cannot
call a webhook on this machine's loopback (the demo prints this).

`--chart` installs the chart instead, as an operator does (`demo_chart`): a real worker node
joins the local control plane, the image is built from the Dockerfile, `helm install` runs it
with the in-cluster sandbox, and the story's Job runs through the chart's own pods.

`--live` (with `RUNPOD_API_KEY`) sends the binder to real RunPod after showing the price cap
and asking for confirmation (`--yes` or `CI=true` skips it). Without `--live` the demo never
touches real RunPod, even when `RUNPOD_API_KEY` is set.

Owns the flags, the prompts, signals and the order start -> story -> keep/stop. Processes live
in `demo_stack`, the narration in `demo_story`, computed text in `demo_render`.
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, TextIO

from contract.policy import DEFAULT_MAX_GPU_PRICE, DEFAULT_NODE_NAME, NodePolicy, parse_id_list
from runpod_kubelet.demo_render import DemoError, RunPodTarget, choose_runpod, needs_confirmation

if TYPE_CHECKING:
    from runpod_kubelet.demo_stack import Kube
    from runpod_kubelet.demo_story import Story

__all__ = ["DemoOptions", "main", "parse_options"]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES: Final = REPO_ROOT / "examples"
# Its own namespace for the catalog ConfigMap, the webhook Service and leases, so that on an
# existing cluster the demo can never overwrite a real installation's objects.
SYSTEM_NAMESPACE: Final = "runpod-kubelet-demo"
DEMO_NAMESPACE: Final = "runpod-demo"
EXIT_OK: Final = 0
EXIT_STORY_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_DECLINED: Final = 3
EXIT_INTERRUPTED: Final = 130


@dataclass(frozen=True)
class DemoOptions:
    keep: bool
    yes: bool
    live: bool
    kubeconfig: Path | None
    data_dir: Path
    examples: Path
    job: Path
    node_name: str
    max_gpu_price: float
    gpu_budget: int
    datacenter_ids: str
    job_timeout: float
    node_address: str | None = None
    chart: bool = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runpod-kubelet demo",
        description="The whole system on a local control plane (or your cluster), narrated.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep everything running after the story until Ctrl-C"
    )
    parser.add_argument("--yes", "-y", action="store_true", help="answer yes to prompts (also: CI=true)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="run on this existing cluster instead of a local control plane (default: $KUBECONFIG if set)",
    )
    parser.add_argument(
        "--local", action="store_true", help="ignore $KUBECONFIG: always a local control plane"
    )
    parser.add_argument(
        "--live", action="store_true", help="use real RunPod (needs RUNPOD_API_KEY; costs money)"
    )
    parser.add_argument(
        "--chart",
        action="store_true",
        help="helm install the chart onto a real local worker node (needs root) instead of host processes",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="logs and state (default: ./.demo/<run>)")
    parser.add_argument(
        "--examples", type=Path, default=DEFAULT_EXAMPLES, help="directory of example manifests"
    )
    parser.add_argument(
        "--job", type=Path, default=None, help="the Job to run (default: <examples>/gpu-job.yaml)"
    )
    parser.add_argument(
        "--node-name", default=DEFAULT_NODE_NAME, help=f"virtual node name (default {DEFAULT_NODE_NAME})"
    )
    parser.add_argument(
        "--max-gpu-price",
        type=float,
        default=DEFAULT_MAX_GPU_PRICE,
        help="node cap, USD per GPU-hour (default 0.5)",
    )
    parser.add_argument("--gpu-budget", type=int, default=2, help="concurrent GPUs on the node (default 2)")
    parser.add_argument(
        "--datacenter-ids", default="", help="allowed data centers, comma list (default: any)"
    )
    parser.add_argument(
        "--node-address",
        default=None,
        help="existing cluster only: the address its apiserver dials for kubectl logs "
        "(default: this machine's outbound address)",
    )
    parser.add_argument(
        "--job-timeout", type=float, default=300, help="seconds the Job may take (default 300)"
    )
    return parser


def parse_options(argv: list[str], environ: Mapping[str, str]) -> DemoOptions:
    """Flags over environment; raises SystemExit on bad flags (argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_gpu_price <= 0:
        parser.error("--max-gpu-price must be above 0")
    kubeconfig: Path | None = args.kubeconfig
    if kubeconfig is None and not args.local and environ.get("KUBECONFIG"):
        # KUBECONFIG may list several files; kubectl merges them, the first names the context.
        kubeconfig = Path(environ["KUBECONFIG"].split(os.pathsep)[0])
    if args.chart and (kubeconfig_flag_or_env := args.kubeconfig):
        parser.error(
            f"--chart runs on the local control plane; install the chart on {kubeconfig_flag_or_env} with helm"
        )
    if args.chart and args.live:
        parser.error(
            "--chart uses the in-cluster sandbox; for real RunPod install the chart with runpod.apiKey"
        )
    data_dir: Path = args.data_dir or Path.cwd() / ".demo" / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")
    examples: Path = args.examples
    return DemoOptions(
        chart=args.chart,
        keep=args.keep,
        yes=args.yes,
        live=args.live,
        kubeconfig=None if args.chart else kubeconfig,
        data_dir=data_dir.resolve(),
        examples=examples.resolve(),
        job=(args.job or examples / "gpu-job.yaml").resolve(),
        node_name=args.node_name,
        max_gpu_price=args.max_gpu_price,
        gpu_budget=args.gpu_budget,
        datacenter_ids=",".join(parse_id_list(args.datacenter_ids)),
        job_timeout=args.job_timeout,
        node_address=args.node_address,
    )


def _say_to(stream: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    return say


def _confirm_live(options: DemoOptions, runpod: RunPodTarget, *, say: Callable[[str], None]) -> bool:
    say("LIVE: the binder will create real RunPod pods billed to the account of RUNPOD_API_KEY.")
    say(
        f"  price cap: ${options.max_gpu_price:g} per GPU-hour (node cap; the Job's own cap may be lower), "
        f"at most {options.gpu_budget} GPU(s) at once -> at most "
        f"${options.max_gpu_price * options.gpu_budget:.2f}/hour while the demo runs"
    )
    say(f"  the Job: {options.job}; its RunPod pod is terminated when it exits and when the demo ends")
    if not needs_confirmation(yes=options.yes, environ=os.environ):
        say("  (confirmation skipped: --yes or CI=true)")
        return True
    try:
        answer = input("Proceed and spend real money? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def main(argv: list[str]) -> int:
    options = parse_options(argv, os.environ)
    say = _say_to(sys.stdout)
    try:
        runpod = choose_runpod(
            live=options.live, environ=os.environ, sandbox_key=f"sandbox-{secrets.token_hex(8)}"
        )
    except DemoError as exc:
        print(f"runpod-kubelet demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not options.job.is_file():
        print(f"runpod-kubelet demo: no Job manifest at {options.job}", file=sys.stderr)
        return EXIT_USAGE
    if runpod.notice:
        say(runpod.notice)
    if runpod.live and not _confirm_live(options, runpod, say=say):
        say("not confirmed; nothing was started")
        return EXIT_DECLINED
    return _run(options, runpod, say)


class _Interrupted(Exception):
    """SIGTERM asked the demo to stop (Ctrl-C arrives as KeyboardInterrupt)."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _run(options: DemoOptions, runpod: RunPodTarget, say: Callable[[str], None]) -> int:
    from runpod_kubelet.demo_chart import RELEASE_NAMESPACE, ChartStack
    from runpod_kubelet.demo_stack import Stack, StackOptions
    from runpod_kubelet.demo_story import Story, count_runpod_pods

    mode = (
        f"existing cluster ({options.kubeconfig}; --local for a local control plane instead)"
        if options.kubeconfig
        else "the chart, helm-installed on a local control plane with a real worker node"
        if options.chart
        else "a local control plane"
    )
    say(f"runpod-kubelet demo on {mode}, RunPod: {'LIVE' if runpod.live else 'the sandbox emulator'}")
    say(f"logs and state: {options.data_dir}")
    system_namespace = RELEASE_NAMESPACE if options.chart else SYSTEM_NAMESPACE
    stack: Stack | ChartStack = (
        ChartStack(
            data_dir=options.data_dir,
            runpod=runpod,
            demo_namespace=DEMO_NAMESPACE,
            say=say,
            max_gpu_price=options.max_gpu_price,
        )
        if options.chart
        else Stack(
            options=StackOptions(
                data_dir=options.data_dir,
                external_kubeconfig=options.kubeconfig,
                runpod=runpod,
                node_name=options.node_name,
                system_namespace=SYSTEM_NAMESPACE,
                demo_namespace=DEMO_NAMESPACE,
                max_gpu_price=options.max_gpu_price,
                gpu_budget=options.gpu_budget,
                datacenter_ids=options.datacenter_ids,
                node_address=options.node_address,
            ),
            say=say,
        )
    )
    atexit.register(stack.close)
    if _main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        # Even when started with SIGINT ignored (a background job of a script), Ctrl-C stops it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    code = EXIT_OK
    keeping = False
    try:
        stack.start()
        if options.kubeconfig is not None:
            say(
                "note: this apiserver cannot call a webhook on this machine's loopback, so no webhook "
                "configuration is installed; each manifest is admitted client-side by the webhook's own "
                "functions (same messages, same plan) before kubectl applies it"
            )
        kube = stack.kube
        if kube is None:
            raise DemoError("no cluster")
        story = Story(
            kube=kube,
            say=say,
            namespace=DEMO_NAMESPACE,
            system_namespace=system_namespace,
            node_name=options.node_name,
            policy=NodePolicy(
                node_name=options.node_name,
                allowed_datacenter_ids=parse_id_list(options.datacenter_ids) or None,
                max_gpu_price=options.max_gpu_price,
            ),
            examples=options.examples,
            job_file=options.job,
            webhook_installed=stack.webhook_installed,
            count_runpod=lambda: count_runpod_pods(
                base_url=stack.sandbox_url or runpod.base_url,
                api_key=runpod.api_key,
                cluster_id=stack.cluster_id,
            ),
            check_alive=stack.check_alive,
            job_timeout=options.job_timeout,
            placement_namespaces=(RELEASE_NAMESPACE,) if options.chart else (),
        )
        stack.defer("the demo Job and its RunPod pods", lambda: _remove_job(story, say))
        result = story.run()
        ok = result.exit_code == 0 and result.runpod_pods_left == 0
        say("")
        say(
            f"demo {'finished' if ok else 'FAILED'}: Job exit code {result.exit_code}, "
            f"{result.runpod_pods_left} RunPod pods left"
        )
        code = EXIT_OK if ok else EXIT_STORY_FAILED
        _print_next_steps(options, stack.kube, say)
        if options.keep:
            say("everything keeps running; press Ctrl-C to stop it")
            keeping = True
            threading.Event().wait()
    except (KeyboardInterrupt, _Interrupted) as exc:
        say(f"\n{'Ctrl-C' if isinstance(exc, KeyboardInterrupt) else exc}: stopping what the demo started")
        # Ctrl-C is how a kept demo ends: the story's outcome stands. Mid-story it is an interrupt.
        code = code if keeping else EXIT_INTERRUPTED
    except DemoError as exc:
        say(f"\ndemo failed: {exc}")
        say(f"component logs: {stack.log_dir}")
        code = EXIT_STORY_FAILED
    finally:
        # A second Ctrl-C during teardown must not leave half of it undone.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            stack.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        say("stopped everything the demo started")
    return code


def _remove_job(story: Story, say: Callable[[str], None]) -> None:
    left = story.remove_job()
    if left:
        say(f"WARNING: {left} RunPod pods of this cluster still exist; check them in the RunPod console")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _print_next_steps(options: DemoOptions, kube: Kube | None, say: Callable[[str], None]) -> None:
    if kube is None:
        return
    say("")
    if not options.keep:
        say(
            "to keep it all running and try it yourself: runpod-kubelet demo --keep  (make demo DEMO_ARGS=--keep)"
        )
        say("it then prints the KUBECONFIG to use from another terminal")
        return
    say("to use the cluster from another terminal:")
    say(f"  export KUBECONFIG={kube.kubeconfig}")
    say(f"  alias kubectl={kube.kubectl_path}" if options.kubeconfig is None else "")
    say(f"  kubectl apply -n {DEMO_NAMESPACE} -f {options.examples / 'job-level-annotations.yaml'}")
    say(f"  kubectl get pods -n {DEMO_NAMESPACE} -w")
