"""The narrated story the demo tells once everything runs, step by step, with real tools.

Steps: the node (`kubectl get nodes`), the catalog the binder published, a bad pod refused with
the webhook's message, a Job with its resolved plan, its phases as they change, its logs
(`kubectl logs`), its exit code, and how many RunPod pods are left after cleanup (counted with
one RunPod list call, by this cluster's owner marker).

On a cluster where the webhook is installed (local) manifests go through `kubectl apply` as a
user's would; otherwise (external cluster) each is first admitted client-side by the webhook's
own functions (`demo_admission`) and the output says so.

Owns the order and the printing; what a line says comes from `demo_render`, processes and
cluster objects from `demo_stack`.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from contract import annotations as keys
from contract.catalog import Catalog, parse_catalog_document
from contract.plan import PlanError, plan_from_annotations
from contract.policy import CATALOG_CONFIGMAP, CATALOG_CONFIGMAP_KEY, NodePolicy
from runpod_kubelet.demo_admission import Refused, admit_manifest
from runpod_kubelet.demo_render import (
    DemoError,
    exit_code_of,
    job_finished,
    progress_line,
    render_catalog,
    render_plan,
)
from runpod_kubelet.demo_stack import Kube, wait_until

__all__ = ["Story", "StoryResult", "count_runpod_pods"]

BAD_ANNOTATION: Final = "runpod.io/gpu-memory"
GOOD_ANNOTATION: Final = keys.REQUIRED_GPU_MEMORY
_POLL: Final = 0.5
_LOGS_TIMEOUT: Final = 30.0
_CLEANUP_TIMEOUT: Final = 120.0


@dataclass(frozen=True)
class StoryResult:
    exit_code: int | None
    job_outcome: str | None
    runpod_pods_left: int


async def _list_owned(*, base_url: str | None, api_key: str, cluster_id: str) -> int:
    from binder.pods.naming import owned_by_cluster
    from runpod_api.client import DEFAULT_BASE_URL, RunPodClient

    async with RunPodClient(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL) as client:
        pods = await client.list_pods()
    return sum(1 for pod in pods if owned_by_cluster(pod.env, cluster_id) is not None)


def count_runpod_pods(*, base_url: str | None, api_key: str, cluster_id: str) -> int:
    """RunPod pods carrying this cluster's owner marker (one list call)."""
    return asyncio.run(_list_owned(base_url=base_url, api_key=api_key, cluster_id=cluster_id))


class Story:
    def __init__(
        self,
        *,
        kube: Kube,
        say: Callable[[str], None],
        namespace: str,
        system_namespace: str,
        node_name: str,
        policy: NodePolicy,
        examples: Path,
        job_file: Path,
        webhook_installed: bool,
        count_runpod: Callable[[], int],
        check_alive: Callable[[], None],
        job_timeout: float,
        placement_namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kube, self.say = kube, say
        # Namespaces whose pods are shown with their nodes before cleanup (`demo --chart`).
        self.placement_namespaces = placement_namespaces
        self.namespace, self.system_namespace, self.node_name = namespace, system_namespace, node_name
        self.policy = policy
        self.examples, self.job_file = examples, job_file
        self.webhook_installed = webhook_installed
        self.count_runpod, self.check_alive = count_runpod, check_alive
        self.job_timeout = job_timeout
        self._step = 0
        self._catalog: Catalog | None = None
        self._follower: subprocess.Popen[str] | None = None
        self.job_name: str | None = None

    # --- narration helpers ---------------------------------------------------------------------

    def title(self, text: str) -> None:
        self._step += 1
        self.say("")
        self.say(f"==> {self._step}. {text}")

    def show(self, text: str, indent: str = "    ") -> None:
        for line in text.rstrip("\n").splitlines():
            self.say(indent + line)

    # --- the story -----------------------------------------------------------------------------

    def run(self) -> StoryResult:
        self.node()
        self.catalog()
        self.bad_pod()
        pod_name = self.job()
        pod = self.phases(pod_name)
        self.logs(pod_name)
        exit_code, outcome = self.exit_code(pod)
        if self.placement_namespaces:
            self.placement()
        left = self.cleanup()
        return StoryResult(exit_code=exit_code, job_outcome=outcome, runpod_pods_left=left)

    def placement(self) -> None:
        self.title("Where it all ran: the chart's pods on the real node, the Job's on the virtual one")
        for namespace in (*self.placement_namespaces, self.namespace):
            self.show(f"$ kubectl get pods -n {namespace} -o wide")
            self.show(self.kube.run("get", "pods", "-n", namespace, "-o", "wide").stdout)

    def node(self) -> None:
        self.title("The virtual node, as `kubectl get nodes` shows it")
        self.show(self.kube.run("get", "nodes", "-o", "wide").stdout)
        node = self.kube.get("node", self.node_name) or {}
        taints = ", ".join(
            f"{t['key']}={t.get('value', '')}:{t['effect']}"
            for t in (node.get("spec") or {}).get("taints") or []
        )
        gpus = ((node.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu", "?")
        self.show(f"taint {taints}; capacity nvidia.com/gpu={gpus} (the scheduler enforces the GPU budget)")

    def catalog(self) -> None:
        self.title(
            f"The GPU catalog the binder published (ConfigMap {self.system_namespace}/{CATALOG_CONFIGMAP})"
        )
        configmap = self.kube.get("configmap", CATALOG_CONFIGMAP, "-n", self.system_namespace) or {}
        text = (configmap.get("data") or {}).get(CATALOG_CONFIGMAP_KEY)
        if not text:
            raise DemoError("the catalog ConfigMap is empty")
        self._catalog = parse_catalog_document(text)
        self.show("\n".join(render_catalog(self._catalog, cap=self.policy.max_gpu_price)))
        self.show(
            f"(all of it: kubectl get configmap -n {self.system_namespace} {CATALOG_CONFIGMAP} -o yaml)"
        )

    def bad_pod(self) -> None:
        source = self.examples / "gpu-pod.yaml"
        self.title(
            f"A bad pod is refused: {source.name} with `{GOOD_ANNOTATION}` misspelt `{BAD_ANNOTATION}`"
        )
        pod = yaml.safe_load(source.read_text())
        annotations = pod["metadata"]["annotations"]
        annotations[BAD_ANNOTATION] = annotations.pop(GOOD_ANNOTATION, "16")
        pod["metadata"]["name"] = "typo"
        if self.webhook_installed:
            self.show(f"$ kubectl apply -n {self.namespace} -f <gpu-pod.yaml with the typo>")
            result = self.kube.apply(pod, namespace=self.namespace)
            if result.returncode == 0:
                raise DemoError(f"the bad pod was admitted: {result.stdout.strip()}")
            self.show(result.stderr)
            self.say("    refused by the webhook: nothing was created, no GPU was bought")
            return
        self.say(
            "    (client-side: this cluster's apiserver cannot call a webhook on this machine's loopback,"
        )
        self.say("     so the demo runs the webhook's own admission function before kubectl would)")
        try:
            admit_manifest(pod, namespace=self.namespace, catalog=self._require_catalog(), policy=self.policy)
        except Refused as refused:
            self.show(
                f'Error from server: admission webhook "mutate.runpod-kubelet.io" denied the request: {refused.message}'
            )
            self.say("    refused: nothing was created, no GPU was bought")
            return
        raise DemoError("the bad pod was admitted by the webhook's function")

    def job(self) -> str:
        job = yaml.safe_load(self.job_file.read_text())
        name = str(job["metadata"]["name"])
        self.job_name = name
        self.title(f"A GPU Job: {self.job_file.name} (Job {self.namespace}/{name})")
        if self.kube.get("job", name, "-n", self.namespace) is not None:
            raise DemoError(f"Job {self.namespace}/{name} already exists; delete it first")
        if not self.webhook_installed:
            try:
                admitted = admit_manifest(
                    job, namespace=self.namespace, catalog=self._require_catalog(), policy=self.policy
                )
            except Refused as refused:
                raise DemoError(f"the Job was refused: {refused.message}") from None
            for warning in admitted.warnings:
                self.show(f"Warning: {warning}")
            self.say("    (client-side admission wrote the plan into the Job's pod template)")
            job = admitted.manifest
        self.show(f"$ kubectl apply -n {self.namespace} -f {self.job_file}")
        result = self.kube.apply(job, namespace=self.namespace)
        self.show(result.stderr + result.stdout)
        if result.returncode != 0:
            raise DemoError(f"kubectl apply of the Job failed: {result.stderr.strip()}")
        pod = wait_until(f"the Job's pod (label job-name={name})", lambda: self._job_pod(name), timeout=60)
        pod_name = str(pod["metadata"]["name"])
        try:
            plan = plan_from_annotations(pod["metadata"].get("annotations") or {})
        except PlanError as exc:
            raise DemoError(f"pod {pod_name} has no valid plan: {exc}") from None
        self.say(f"    pod {pod_name} was created with this plan (plan.runpod.io/* annotations):")
        self.show("\n".join(render_plan(plan)), indent="      ")
        return pod_name

    def phases(self, pod_name: str) -> dict[str, Any]:
        self.title(f"Its phases as they change (pod {pod_name})")
        started = time.monotonic()
        last = ""
        deadline = started + self.job_timeout
        self._follower = None
        while True:
            self.check_alive()
            pod = self.kube.get("pod", pod_name, "-n", self.namespace)
            if pod is None:
                raise DemoError(f"pod {pod_name} disappeared")
            line = progress_line(pod)
            if line != last:
                self.say(f"    [{time.monotonic() - started:5.1f}s] {line}")
                last = line
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Running" and self._follower is None:
                # RunPod keeps no logs once a pod is terminated, and the binder terminates it as
                # soon as the exit code is known: follow the logs while the container runs.
                self._follower = self.kube.follow_logs(pod_name, namespace=self.namespace)
            annotations = pod["metadata"].get("annotations") or {}
            if phase in ("Succeeded", "Failed") and keys.TERMINATED in annotations:
                return pod
            if time.monotonic() > deadline:
                raise DemoError(
                    f"pod {pod_name} did not finish within {self.job_timeout:.0f}s (last: {line})"
                )
            time.sleep(_POLL)

    def logs(self, pod_name: str) -> None:
        self.title(f"Its logs: kubectl logs -f -n {self.namespace} {pod_name} (followed while it ran)")
        follower, self._follower = self._follower, None
        if follower is None:
            # It finished before it was ever seen Running; its logs may already be gone.
            result = self.kube.run("logs", "-n", self.namespace, pod_name, check=False)
            self.show(
                result.stdout if result.returncode == 0 else f"kubectl logs failed: {result.stderr.strip()}"
            )
            return
        try:
            out, err = follower.communicate(timeout=_LOGS_TIMEOUT)
        except subprocess.TimeoutExpired:
            follower.kill()
            out, err = follower.communicate()
        if out.strip():
            self.show(out)
        else:
            # kubectl retries a failing follow and repeats the same error; once is enough.
            errors = list(dict.fromkeys(line for line in err.splitlines() if line.strip()))
            self.show("kubectl logs printed nothing: " + ("\n".join(errors[:3]) or "no output"))
            if not self.webhook_installed:
                self.say(
                    "    (on an external cluster the apiserver must reach this machine's kubelet port "
                    "for logs; it could not)"
                )

    def exit_code(self, pod: dict[str, Any]) -> tuple[int | None, str | None]:
        self.title("Its exit code")
        code = exit_code_of(pod)
        annotations = pod["metadata"].get("annotations") or {}
        name = self.job_name or ""
        outcome = wait_until(
            f"Job {name} to finish",
            lambda: job_finished(self.kube.get("job", name, "-n", self.namespace) or {}),
            timeout=60,
        )
        self.show(
            f"exit code {code} (read by the binder from the log stream: runpod.io/exit-code="
            f"{annotations.get(keys.EXIT_CODE, '?')}); pod {pod['status'].get('phase')}; Job {outcome}"
        )
        return code, outcome

    def cleanup(self) -> int:
        self.title("Cleaning up: the Job is deleted, the binder terminates what is left on RunPod")
        name = self.job_name or ""
        self.show(f"$ kubectl delete job -n {self.namespace} {name}")
        left = self.remove_job(show=self.show)
        self.say(f"    {left} RunPod pods left")
        return left

    def remove_job(self, *, show: Callable[[str], None] | None = None) -> int:
        """Deletes the Job (if any) and waits for its pods to go and for this cluster's RunPod
        pods to be terminated; returns how many RunPod pods are left. Safe to call twice: the
        demo's teardown calls it while the binder still runs, so an interrupted story leaves no
        RunPod pod behind."""
        name = self.job_name
        if name is None:
            return self.count_runpod()
        deleted = self.kube.run(
            "delete",
            "job",
            "-n",
            self.namespace,
            name,
            "--cascade=background",
            "--ignore-not-found",
            check=False,
        )
        if show is not None:
            show(deleted.stdout or deleted.stderr)
        deadline = time.monotonic() + _CLEANUP_TIMEOUT
        while self._job_pods(name) and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(1.0)
        left = self.count_runpod()
        while left and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(1.0)
            left = self.count_runpod()
        return left

    # --- helpers -------------------------------------------------------------------------------

    def _require_catalog(self) -> Catalog:
        if self._catalog is None:
            raise DemoError("the catalog was not read")
        return self._catalog

    def _job_pods(self, name: str) -> list[dict[str, Any]]:
        listed = self.kube.get("pods", "-n", self.namespace, "-l", f"job-name={name}") or {}
        return list(listed.get("items") or [])

    def _job_pod(self, name: str) -> dict[str, Any] | None:
        self.check_alive()
        pods = self._job_pods(name)
        return copy.deepcopy(pods[0]) if pods else None
