"""The emulated RunPod account: pods, their state machine, containers, billing, keys and logs.

One `Account` lives on the server's event loop and is only touched from it (handlers are
`async def`, timers are `loop.call_later`), so no locks are needed. Operations are plain
methods that raise `ApiError` for refusals and return RunPod-shaped dicts; HTTP stays in
`routes`. Per pod the cost is two timer handles for the PROVISIONING -> STARTING -> RUNNING
walk and one asyncio task while its container "runs" (the `interpreter`), so a thousand pods
are cheap. Stale timers and tasks recognise themselves by the pod's `generation`.

A create buys GPUs or, with `cpu`, a CPU pod's vCPUs (billed per vCPU); `placing` decides where,
and both hold their stock until the pod stops or is terminated.

Not owned here: catalogue/stock rules (`catalog`), placing a create (`placing`), request schemas
(`validation`), how a pod renders (`pods`), auth/rate/fault plumbing of HTTP (`gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from sandbox.catalog import Cloud, Inventory, load_inventory
from sandbox.faults import FaultBook
from sandbox.interpreter import LineSplitter, run_script
from sandbox.logbook import LogBook
from sandbox.placing import Placed, place_cpu, place_gpu
from sandbox.pods import ACTIONS, BILLING_STATUSES, PodRecord, PodStatus, parse_ports, render_pod, spend_of
from sandbox.problems import (
    BALANCE_DETAIL,
    CAPACITY_DETAIL,
    POD_NOT_FOUND_DETAIL,
    ApiError,
)
from sandbox.ratelimit import RateLimiter
from sandbox.registries import RegistryBook, pull_denied_line
from sandbox.scenario import (
    CpuStockSetting,
    PrivateRegistry,
    RateWindow,
    Scenario,
    SeedPod,
    StockSetting,
    Timings,
)
from sandbox.sshd import PodAccess, PodSshd, SshdSettings
from sandbox.validation import check_create_rules, check_update_rules, validate_body
from sandbox.volumes import VolumeBook

__all__ = ["Account", "Clock", "KeyCheck"]

Clock = Callable[[], float]
KeyCheck = Literal["ok", "missing", "invalid"]
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_RECREATING_FIELDS: Final = ("image", "args", "disk", "ports", "env", "registry")
_LOOPBACK_SSHD: Final = SshdSettings()


class Account:
    def __init__(
        self,
        *,
        api_keys: Iterable[str],
        scenario: Scenario | None = None,
        seed: int = 0,
        clock: Clock = time.time,
        inventory: Inventory | None = None,
        sshd: SshdSettings | None = _LOOPBACK_SSHD,
    ) -> None:
        """`sshd`: where running pods that expose 22/tcp serve SSH (`sandbox.sshd`); None = no
        emulated sshd (`ssh.direct` then names the pod's unreachable public IP)."""
        self.scenario = scenario or Scenario()
        self.timings: Timings = self.scenario.timings
        self.clock = clock
        self.inventory = inventory or load_inventory(bands=self.scenario.bands)
        for setting in self.scenario.stock:
            self.inventory.set_stock(setting)
        for cpu_setting in self.scenario.cpu_stock:
            self.inventory.set_cpu_stock(cpu_setting)
        self._keys: dict[str, bool] = {key: False for key in (*api_keys, *self.scenario.extra_keys) if key}
        self._keys.update({key: True for key in self.scenario.read_only_keys})
        self.pods: dict[str, PodRecord] = {}
        self.terminated: list[PodRecord] = []
        self.logs: dict[str, LogBook] = {}
        self.creates = 0
        self.deletes = 0
        self.requests: Counter[str] = Counter()
        self.rate = RateLimiter(self.scenario.rate_limits, now=clock())
        self.faults = FaultBook(self.scenario.faults)
        self.denied_gpu_ids = set(self.scenario.denied_gpu_ids)
        self.failing_images = set(self.scenario.failing_images)
        self.sshdless_images = list(self.scenario.sshdless_images)
        self.sshd = PodSshd(sshd, sleep=_sleep) if sshd is not None else None
        self._balance: float | None = self.scenario.balance_usd
        self._spend_at_balance = 0.0
        self._rng = random.Random(seed)
        # Registry credentials and network volumes: their own books, on their own random streams.
        self.registries = RegistryBook(
            rng=random.Random(f"{seed}-registries"), private=self.scenario.private_registries
        )
        self.volumes = VolumeBook(rng=random.Random(f"{seed}-volumes"), inventory=self.inventory)
        self._containers: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.closing = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Seed the scenario's foreign pods (needs the running loop for their containers)."""
        for seed in self.scenario.pods:
            self.seed_pod(seed)

    async def close(self) -> None:
        """Stop every container and wake every log reader so the server can shut down."""
        self.closing.set()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._containers.values())
        self._containers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sshd is not None:
            await self.sshd.close()
        for book in self.logs.values():
            book.close()

    # -- keys ----------------------------------------------------------------------------------
    def check_key(self, authorization: str | None) -> KeyCheck:
        if not authorization:
            return "missing"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "missing"
        return "ok" if token.strip() in self._keys else "invalid"

    def is_read_only(self, authorization: str | None) -> bool:
        token = (authorization or "").partition(" ")[2].strip()
        return self._keys.get(token, False)

    def add_key(self, key: str, *, read_only: bool = False) -> None:
        self._keys[key] = read_only

    def revoke_key(self, key: str) -> None:
        self._keys.pop(key, None)

    # -- helpers -------------------------------------------------------------------------------
    def _new_id(self) -> str:
        while True:
            pod_id = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(14))
            if pod_id not in self.pods:
                return pod_id

    def _log(self, pod: PodRecord, source: Literal["container", "system"], line: str) -> None:
        book = self.logs.get(pod.id)
        if book is not None:
            book.append(source, line, self.clock())

    def _schedule(self, pod: PodRecord, delay: float, step: Callable[[PodRecord], None]) -> None:
        generation = pod.generation

        def fire() -> None:
            self._timers.pop(pod.id, None)
            current = self.pods.get(pod.id)
            if current is pod and pod.generation == generation:
                step(pod)

        loop = asyncio.get_running_loop()
        old = self._timers.pop(pod.id, None)
        if old is not None:
            old.cancel()
        self._timers[pod.id] = loop.call_later(delay, fire)

    def _set_status(self, pod: PodRecord, status: PodStatus) -> None:
        holding = pod.status in BILLING_STATUSES
        pod.set_status(status, self.clock())
        if holding and status not in BILLING_STATUSES:
            self._release(pod)
        if status != "RUNNING":
            self._stop_container(pod)
            pod.container_started_at = None
            if self.sshd is not None:
                self.sshd.stop(pod.id)

    def _release(self, pod: PodRecord) -> None:
        """Give back what the pod holds: its vCPUs, or its GPUs."""
        if pod.cpu_id is not None:
            self.inventory.release_cpu(cpu_id=pod.cpu_id, vcpus=pod.vcpu_count, dc_id=pod.dc_id)
        else:
            self.inventory.release(gpu_id=pod.gpu_id, cloud=pod.cloud, count=pod.gpu_count, dc_id=pod.dc_id)

    def _reserve_again(self, pod: PodRecord) -> bool:
        """Take its GPUs or vCPUs back on the same host (a stopped pod starting)."""
        if pod.cpu_id is not None:
            return self.inventory.reserve_cpu_at(cpu_id=pod.cpu_id, vcpus=pod.vcpu_count, dc_id=pod.dc_id)
        return self.inventory.reserve_at(
            gpu_id=pod.gpu_id, cloud=pod.cloud, count=pod.gpu_count, dc_id=pod.dc_id
        )

    def spend(self) -> float:
        now = self.clock()
        return sum(spend_of(p, now) for p in self.pods.values()) + sum(
            spend_of(p, now) for p in self.terminated
        )

    def balance_left(self) -> float | None:
        if self._balance is None:
            return None
        return self._balance - (self.spend() - self._spend_at_balance)

    def set_balance(self, usd: float | None) -> None:
        self._balance = usd
        self._spend_at_balance = self.spend()
        self.enforce_balance()

    def enforce_balance(self) -> None:
        """A balance at $0 stops every billing pod (RunPod pricing docs, notes A.3)."""
        left = self.balance_left()
        if left is None or left > 0:
            return
        for pod in self.pods.values():
            if pod.status in BILLING_STATUSES:
                self._log(pod, "system", "pod stopped: account balance exhausted")
                self._set_status(pod, "EXITED")

    def _check_balance(self, hourly: float) -> None:
        left = self.balance_left()
        if left is not None and left < hourly:
            raise ApiError(402, BALANCE_DETAIL)

    def _visible(self, pod: PodRecord, now: float) -> bool:
        return now >= pod.visible_at

    def _find(self, pod_id: str) -> PodRecord:
        pod = self.pods.get(pod_id)
        if pod is None:
            raise ApiError(404, POD_NOT_FOUND_DETAIL)
        return pod

    # -- state machine steps -------------------------------------------------------------------
    def _to_starting(self, pod: PodRecord) -> None:
        self._set_status(pod, "STARTING")
        self._log(pod, "system", f"pulling image {pod.image}")
        self._schedule(pod, self.timings.starting_s, self._finish_starting)

    def _finish_starting(self, pod: PodRecord) -> None:
        if pod.image in self.failing_images or self.registries.pull_fails(pod.image, pod.registry):
            self._log(pod, "system", pull_denied_line(pod.image))
            self._set_status(pod, "ERROR")
            return
        self._to_running(pod)

    def _to_running(self, pod: PodRecord) -> None:
        now = self.clock()
        self._set_status(pod, "RUNNING")
        if pod.started_at is None:
            pod.started_at = now
        self._start_sshd(pod)
        for private, kind in parse_ports(pod.ports):
            if kind == "tcp" and private not in pod.public_ports:
                pod.public_ports[private] = self._rng.randint(10_000, 60_000)
        pod.container_started_at = now
        self._log(pod, "system", "container started")
        self._containers[pod.id] = asyncio.get_running_loop().create_task(
            self._run_container(pod, pod.generation), name=f"sandbox-container-{pod.id}"
        )

    def _start_sshd(self, pod: PodRecord) -> None:
        """The image's sshd starts with the container (port 22 reused when still free), or, for
        an sshd-less image, the port is held so that connecting to it is refused."""
        if self.sshd is None or "22/tcp" not in pod.ports:
            return
        pod.sshd_less = any(fnmatch.fnmatchcase(pod.image, pattern) for pattern in self.sshdless_images)
        previous = pod.public_ports.get(22)
        if pod.sshd_less:
            pod.public_ports[22] = self.sshd.refuse(pod.id, port=previous)
        else:
            access = PodAccess(
                authorized_keys=lambda: pod.env.get("PUBLIC_KEY", ""),
                env=lambda: self._container_env(pod),
                ports=lambda: parse_ports(pod.ports),
            )
            pod.public_ports[22] = self.sshd.serve(pod.id, access, port=previous)
        pod.ssh_host = self.sshd.settings.advertised

    def _stop_container(self, pod: PodRecord) -> None:
        task = self._containers.pop(pod.id, None)
        if task is not None:
            task.cancel()

    def _container_env(self, pod: PodRecord) -> dict[str, str]:
        env = dict(pod.env)
        env.update(
            {
                "RUNPOD_POD_ID": pod.id,
                "RUNPOD_DC_ID": pod.dc_id,
                "RUNPOD_POD_HOSTNAME": f"{pod.id}-{pod.ssh_suffix[:4]}",
                "RUNPOD_GPU_COUNT": str(pod.gpu_count),
                "RUNPOD_PUBLIC_IP": pod.public_ip,
                "HOME": "/root",
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            }
        )
        if pod.cpu_id is not None:
            env["RUNPOD_CPU_COUNT"] = str(pod.vcpu_count)
        for private, public in pod.public_ports.items():
            env[f"RUNPOD_TCP_PORT_{private}"] = str(public)
        return env

    async def _run_container(self, pod: PodRecord, generation: int) -> None:
        """Run the pod's `args` until stopped; RunPod restarts a container whose command ends."""
        splitter = LineSplitter(lambda line: self._log(pod, "container", line))
        try:
            while True:
                if not pod.args.strip():
                    # The image's default command: a server that runs forever.
                    splitter.write(f"{pod.image}: default command started; serving\n")
                    await asyncio.Future()
                await run_script(pod.args, env=self._container_env(pod), write=splitter.write, sleep=_sleep)
                splitter.flush()
                if pod.generation != generation:
                    return
                # No exit code: RunPod reports none (notes §4.3).
                self._log(pod, "system", "container exited; restarting")
                await asyncio.sleep(self.timings.restart_delay_s)
                if pod.generation != generation:
                    return
                pod.container_started_at = self.clock()
                pod.restarts += 1
                self._log(pod, "system", "container started")
        finally:
            splitter.flush()

    # -- pod operations (the /v2 API) ------------------------------------------------------------
    def create_pod(self, body: object) -> dict[str, Any]:
        validate_body("CreatePodRequest", body)
        if not isinstance(body, dict):  # the schema requires an object; this narrows the type
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        check_create_rules(body)
        if "templateId" in body:
            raise ApiError(404, "template not found")
        self.registries.check_create(body)
        cloud: Cloud = "COMMUNITY" if body.get("cloud") == "COMMUNITY" else "SECURE"
        dc_ids: list[str] = list(body.get("dataCenterIds") or [])
        for dc_id in dc_ids:
            if dc_id not in self.inventory.dcs:
                raise ApiError(400, f"unknown data center id {dc_id!r}")
        dc_ids = self.volumes.placement(body, dc_ids)
        if "cpu" in body:
            placed = place_cpu(self.inventory, body["cpu"], dc_ids, afford=self._check_balance)
        else:
            placed = place_gpu(
                self.inventory,
                body,
                cloud,
                dc_ids,
                afford=self._check_balance,
                denied=self.denied_gpu_ids,
                count_omitted_bug=self.scenario.count_omitted_bug,
            )
        env = dict(body.get("env") or {})
        if body.get("startJupyter") and "JUPYTER_PASSWORD" not in env:
            env["JUPYTER_PASSWORD"] = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(16))
        pod = self._make_pod(
            name=body["name"],
            image=body["image"],
            args=body.get("args", ""),
            disk=body.get("disk", 50),
            ports=list(body.get("ports") or []),
            env=env,
            registry=body.get("registry"),
            mounts=dict(body.get("mounts") or {}),
            placed=placed,
            global_networking=bool(body.get("globalNetworking")),
        )
        pod.create_body = body
        pod.visible_at = pod.created_at + self.timings.visibility_delay_s
        host = f"{placed.cpu_id} CPU" if placed.cpu_id is not None else f"{placed.gpu_id}"
        self._log(pod, "system", f"pod scheduled on a {host} host in {pod.dc_id}")
        self._schedule(pod, self.timings.provisioning_s, self._to_starting)
        self.creates += 1
        return render_pod(pod, self.clock(), runtime_empty_object=self.scenario.runtime_empty_object)

    def _make_pod(
        self,
        *,
        name: str,
        image: str,
        args: str,
        disk: int,
        ports: list[str],
        env: dict[str, str],
        registry: str | None,
        mounts: dict[str, Any],
        placed: Placed,
        global_networking: bool,
    ) -> PodRecord:
        now = self.clock()
        rng = self._rng
        pod = PodRecord(
            id=self._new_id(),
            name=name,
            image=image,
            args=args,
            disk=disk,
            ports=ports,
            env=env,
            registry=registry,
            mounts=mounts,
            gpu_id=placed.gpu_id,
            gpu_count=placed.gpu_count,
            cloud=placed.cloud,
            dc_id=placed.dc_id,
            cuda_version=placed.cuda,
            price_per_gpu=placed.price_per_gpu,
            cpu_id=placed.cpu_id,
            vcpu_count=placed.vcpu_count,
            memory_gb=placed.memory_gb,
            price_per_vcpu=placed.price_per_vcpu,
            created_at=now,
            public_ip=f"{rng.randint(38, 213)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
            ssh_suffix=f"{rng.getrandbits(32):08x}",
            global_networking=global_networking,
            visible_at=now,
        )
        pod.set_status("PROVISIONING", now)
        self.pods[pod.id] = pod
        self.logs[pod.id] = LogBook()
        return pod

    def list_pods(self) -> list[dict[str, Any]]:
        self.enforce_balance()
        now = self.clock()
        flag = self.scenario.runtime_empty_object
        return [
            render_pod(p, now, runtime_empty_object=flag) for p in self.pods.values() if self._visible(p, now)
        ]

    def get_pod(self, pod_id: str) -> dict[str, Any]:
        self.enforce_balance()
        now = self.clock()
        pod = self.pods.get(pod_id)
        if pod is not None and self._visible(pod, now):
            return render_pod(pod, now, runtime_empty_object=self.scenario.runtime_empty_object)
        ghost = self._ghost(pod_id, now)
        if ghost is not None:
            return render_pod(ghost, now)
        raise ApiError(404, POD_NOT_FOUND_DETAIL)

    def _ghost(self, pod_id: str, now: float) -> PodRecord | None:
        """A terminated pod still answering GET (TERMINATED) within the configured window."""
        window = self.timings.terminated_visible_s
        if window <= 0:
            return None
        for pod in reversed(self.terminated):
            if pod.id == pod_id and pod.terminated_at is not None and now - pod.terminated_at < window:
                return pod
        return None

    def patch_pod(self, pod_id: str, body: object) -> dict[str, Any]:
        pod = self._find(pod_id)
        validate_body("UpdatePodRequest", body)
        if not isinstance(body, dict):
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        check_update_rules(body, current_mounts=pod.mounts)
        if "templateId" in body:
            raise ApiError(404, "template not found")
        recreate = any(f in body and body[f] != getattr(pod, f) for f in _RECREATING_FIELDS)
        for field_name in ("name", *_RECREATING_FIELDS):
            if field_name in body:
                setattr(
                    pod, field_name, body[field_name] if field_name != "ports" else list(body[field_name])
                )
        if "locked" in body:
            pod.locked = bool(body["locked"])
        if "globalNetworking" in body:
            pod.global_networking = bool(body["globalNetworking"])
        if body.get("mounts"):
            for kind, value in body["mounts"].items():
                pod.mounts[kind] = value
        if recreate and pod.status == "RUNNING":
            self._log(pod, "system", "configuration changed; recreating container")
            self._to_starting(pod)
        return render_pod(pod, self.clock())

    def delete_pod(self, pod_id: str) -> None:
        pod = self._find(pod_id)
        self._terminate(pod)

    def _terminate(self, pod: PodRecord) -> None:
        now = self.clock()
        self._set_status(pod, "TERMINATED")
        if self.sshd is not None:
            self.sshd.forget(pod.id)
        pod.terminated_at = now
        timer = self._timers.pop(pod.id, None)
        if timer is not None:
            timer.cancel()
        self.pods.pop(pod.id, None)
        self.terminated.append(pod)
        book = self.logs.pop(pod.id, None)
        if book is not None:
            book.close()
        self.deletes += 1

    def act(self, pod_id: str, body: object) -> dict[str, Any] | None:
        """`POST /v2/pods/{id}/action`; None means 204 (terminate)."""
        pod = self._find(pod_id)
        validate_body("PodActionRequest", body)
        if not isinstance(body, dict):
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        action = body["action"]
        if action not in ("terminate", *ACTIONS[pod.status]):
            raise ApiError(409, f"action {action!r} is not valid for a pod in status {pod.status}")
        if action == "terminate":
            self._terminate(pod)
            return None
        if action == "stop":
            if pod.locked:
                raise ApiError(409, "pod is locked")
            self._log(pod, "system", "pod stopped")
            self._set_status(pod, "EXITED")
        elif action == "restart":
            self._log(pod, "system", "restarting container")
            self._to_starting(pod)
        elif action == "start":
            self._check_balance(pod.rate)
            if not self._reserve_again(pod):
                raise ApiError(400, CAPACITY_DETAIL)
            # Reserved by hand above, so enter STARTING without re-reserving.
            pod.set_status("STARTING", self.clock())
            self._log(pod, "system", f"pulling image {pod.image}")
            self._schedule(pod, self.timings.starting_s, self._finish_starting)
        return render_pod(pod, self.clock())

    def logbook(self, pod_id: str) -> LogBook:
        now = self.clock()
        pod = self.pods.get(pod_id)
        if pod is None or not self._visible(pod, now):
            raise ApiError(404, POD_NOT_FOUND_DETAIL)
        return self.logs[pod_id]

    # -- admin ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self.enforce_balance()
        now = self.clock()
        return {
            "pods": [
                render_pod(p, now)
                | {"restarts": p.restarts, "createBody": p.create_body, "sshd": self._sshd_state(p)}
                for p in self.pods.values()
            ],
            "terminated": [render_pod(p, now) | {"createBody": p.create_body} for p in self.terminated],
            "creates": self.creates,
            "deletes": self.deletes,
            "spendUsd": round(self.spend(), 9),
            "balanceUsd": self.balance_left(),
            "requests": dict(self.requests),
            "registries": self.registries.state(self._used_by("registry")),
            "networkVolumes": self.volumes.state(self._used_by("network")),
        }

    def _sshd_state(self, pod: PodRecord) -> dict[str, Any] | None:
        """Whether the pod's SSH is served (and where, and how many are connected); no keys."""
        return self.sshd.describe(pod.id) if self.sshd is not None else None

    def set_sshdless_images(self, patterns: list[str]) -> None:
        """Images that run no sshd from their next start on (scenario `sshdlessImages`)."""
        self.sshdless_images = list(patterns)

    def _used_by(self, what: Literal["registry", "network"]) -> dict[str, list[str]]:
        """Credential or volume id -> the pods (not terminated) that use it."""
        used: dict[str, list[str]] = {}
        for pod in self.pods.values():
            if what == "registry":
                ids = [pod.registry] if pod.registry else []
            else:
                ids = [m["volumeId"] for m in pod.mounts.get("network") or []]
            for found in ids:
                used.setdefault(found, []).append(pod.id)
        return used

    # -- registries and volumes ---------------------------------------------------------------
    def delete_registry(self, registry_id: str) -> None:
        """Refused (400) while any pod of the account still names the credential."""
        in_use = any(p.registry == registry_id for p in self.pods.values())
        self.registries.delete(registry_id, in_use=in_use)

    def set_private_registries(self, registries: list[PrivateRegistry]) -> None:
        self.registries.set_private(registries)

    def set_stock(self, setting: StockSetting) -> None:
        self.inventory.set_stock(setting)

    def set_cpu_stock(self, setting: CpuStockSetting) -> None:
        self.inventory.set_cpu_stock(setting)

    def set_failing_images(self, images: list[str]) -> None:
        """Images whose pull fails from now on (scenario `failingImages`, changed at runtime)."""
        self.failing_images = set(images)

    def set_rate_limits(self, windows: list[RateWindow]) -> None:
        self.rate.configure(windows, now=self.clock())

    def set_timings(self, timings: Timings) -> None:
        self.timings = timings

    def crash_pod(self, pod_id: str) -> dict[str, Any]:
        """An unrecoverable host fault: the pod goes to ERROR (no reason field, a system line)."""
        pod = self._find(pod_id)
        self._log(pod, "system", "container crashed: unrecoverable error on host")
        self._set_status(pod, "ERROR")
        return render_pod(pod, self.clock())

    def seed_pod(self, seed: SeedPod) -> dict[str, Any]:
        """Put a pod in the account as if someone else made it, already running (or stopped)."""
        if seed.gpu.id not in self.inventory.gpus:
            raise ApiError(400, f"unknown GPU type {seed.gpu.id!r}")
        dcs = [seed.data_center_id] if seed.data_center_id else []
        placement = self.inventory.place(
            gpu_id=seed.gpu.id, cloud=seed.cloud, count=seed.gpu.count, dc_ids=dcs
        )
        if placement is None:
            # Seeded pods take real stock, so releasing them later keeps the books balanced.
            raise ApiError(400, CAPACITY_DETAIL)
        pod = self._make_pod(
            name=seed.name,
            image=seed.image,
            args=seed.args,
            disk=50,
            ports=list(seed.ports),
            env=dict(seed.env),
            registry=None,
            mounts={},
            placed=Placed(
                dc_id=placement.dc_id,
                cloud=seed.cloud,
                gpu_id=seed.gpu.id,
                gpu_count=seed.gpu.count,
                price_per_gpu=self.inventory.gpus[seed.gpu.id].price.get(seed.cloud, 0.0),
                cuda=placement.cuda_version,
            ),
            global_networking=False,
        )
        self._to_running(pod)
        if seed.status == "EXITED":
            self._set_status(pod, "EXITED")
        return render_pod(pod, self.clock())


async def _sleep(seconds: float) -> None:
    if seconds == float("inf"):
        await asyncio.Future()
    await asyncio.sleep(seconds)
