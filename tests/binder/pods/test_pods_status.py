"""Status mapping: what `kubectl get/describe pod` shows for each RunPod state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from binder.pods.status import (
    Failure,
    Observation,
    build_status,
    count_restarts,
    port_mappings,
    state_annotations,
    status_patch,
)
from contract.plan import Port
from runpod_api.models import Pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
HTTP = Port(number=8888, protocol="http")
SSH = Port(number=22, protocol="tcp")


def k8s_pod(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "main", "image": "nvidia/cuda:12"}], "restartPolicy": "Always"},
        "status": status
        or {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-27T09:59:00Z"}
            ],
        },
    }


def runpod(status: str = "RUNNING", *, ports: list[dict[str, Any]] | None = None, uptime: int = 60) -> Pod:
    body: dict[str, Any] = {
        "id": "rp1",
        "status": status,
        "gpu": {"id": "NVIDIA A40", "count": 1},
        "dataCenterId": "EU-RO-1",
        "cost": 0.44,
        "startedAt": "2026-11-27T09:58:00Z" if status == "RUNNING" else None,
    }
    if status == "RUNNING":
        body["runtime"] = {"uptime": uptime, "ports": ports or []}
    return Pod.model_validate(body)


def obs(**kw: Any) -> Observation:
    return Observation(observed_at=T0, **kw)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_no_runpod_pod_yet_is_pending_with_the_waiting_reason() -> None:
    status = build_status(
        pod=k8s_pod(), runpod=None, observation=obs(waiting_message="over budget"), ports=[]
    )
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ContainerCreating", "message": "over budget"}
    }
    assert conditions(status) == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "False",
        "Ready": "False",
    }
    assert "podIP" not in status


def test_a_missing_required_env_ref_waits_as_create_container_config_error() -> None:
    observation = obs(waiting_reason="CreateContainerConfigError", waiting_message='secret "creds" not found')
    status = build_status(pod=k8s_pod(), runpod=None, observation=observation, ports=[])
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "creds" not found'}
    }


def test_provisioning_and_starting_are_pending_container_creating() -> None:
    for state in ("PROVISIONING", "STARTING"):
        status = build_status(pod=k8s_pod(), runpod=runpod(state), observation=obs(), ports=[HTTP])
        assert status["phase"] == "Pending"
        assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
        assert status["containerStatuses"][0]["containerID"] == "runpod://rp1"


def test_running_uses_runpods_start_time_and_the_real_container_name() -> None:
    status = build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(), ports=[])
    container = status["containerStatuses"][0]
    assert status["phase"] == "Running"
    assert container["name"] == "main" and container["image"] == "nvidia/cuda:12"
    assert container["state"] == {"running": {"startedAt": "2026-11-27T09:58:00Z"}}
    assert conditions(status)["Ready"] == "True"  # no ports to wait for


def test_ready_waits_for_http_up_and_tcp_public() -> None:
    half = runpod(ports=[{"private": 8888, "public": None, "type": "http", "ip": None}])
    status = build_status(pod=k8s_pod(), runpod=half, observation=obs(), ports=[HTTP, SSH])
    assert conditions(status)["Ready"] == "False"
    tcp_private = runpod(
        ports=[
            {"private": 8888, "public": None, "type": "http", "ip": None},
            {"private": 22, "public": None, "type": "tcp", "ip": None},
        ]
    )
    assert (
        conditions(build_status(pod=k8s_pod(), runpod=tcp_private, observation=obs(), ports=[HTTP, SSH]))[
            "Ready"
        ]
        == "False"
    )
    full = runpod(
        ports=[
            {"private": 8888, "public": None, "type": "http", "ip": None},
            {"private": 22, "public": 34446, "type": "tcp", "ip": "195.26.233.3"},
        ]
    )
    status = build_status(pod=k8s_pod(), runpod=full, observation=obs(), ports=[HTTP, SSH])
    assert conditions(status)["Ready"] == "True"
    assert status["podIP"] == "195.26.233.3"
    assert status["podIPs"] == [{"ip": "195.26.233.3"}]


def test_condition_times_are_kept_while_the_condition_holds() -> None:
    first = build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(), ports=[])
    later_pod = k8s_pod(first)
    second = build_status(
        pod=later_pod,
        runpod=runpod(),
        observation=Observation(observed_at=T0 + timedelta(minutes=5)),
        ports=[],
    )
    assert second["conditions"] == first["conditions"]
    assert status_patch(later_pod, second) is None


def test_patch_ignores_nulls_the_api_server_adds() -> None:
    desired = build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(), ports=[])
    echoed = dict(desired)
    echoed["conditions"] = [{**c, "lastProbeTime": None} for c in desired["conditions"]]
    assert status_patch(k8s_pod(echoed), desired) is None


def test_exit_code_zero_succeeds_and_nonzero_fails_with_that_code() -> None:
    finished = T0 + timedelta(seconds=5)
    ok = build_status(
        pod=k8s_pod(), runpod=runpod(), observation=obs(exit_code=0, finished_at=finished), ports=[]
    )
    assert ok["phase"] == "Succeeded"
    terminated = ok["containerStatuses"][0]["state"]["terminated"]
    assert terminated == {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": "2026-11-27T09:58:00Z",
        "finishedAt": "2026-11-27T10:00:05Z",
    }
    bad = build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(exit_code=3), ports=[])
    assert bad["phase"] == "Failed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert bad["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_runpod_error_is_failed_without_inventing_success() -> None:
    status = build_status(pod=k8s_pod(), runpod=runpod("ERROR"), observation=obs(), ports=[])
    assert status["phase"] == "Failed"
    assert status["reason"] == "ProviderError"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] != 0


def test_an_image_pull_error_is_err_image_pull_with_runpods_line_as_a_kubelet_shows_it() -> None:
    from binder.pods.diagnosing import diagnose_error

    line = "error pulling image ghcr.io/acme/x:1: pull access denied or repository not found"
    diagnosis = diagnose_error([line], image="ghcr.io/acme/x:1")
    status = build_status(
        pod=k8s_pod(), runpod=runpod("ERROR"), observation=obs(diagnosis=diagnosis), ports=[]
    )
    assert status["phase"] == "Failed"
    assert (status["reason"], status["message"]) == ("ErrImagePull", f"RunPod: {line}")
    assert status["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ErrImagePull", "message": f"RunPod: {line}"}
    }


def test_another_runpod_error_quotes_its_last_system_line() -> None:
    from binder.pods.diagnosing import diagnose_error

    diagnosis = diagnose_error(["container crashed: unrecoverable error on host"], image="x")
    status = build_status(
        pod=k8s_pod(), runpod=runpod("ERROR"), observation=obs(diagnosis=diagnosis), ports=[]
    )
    assert status["reason"] == "ProviderError"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["message"].endswith(
        "its last system log line: container crashed: unrecoverable error on host"
    )


def test_provider_deletion_fails_the_pod_with_a_reason() -> None:
    running = k8s_pod(build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(), ports=[]))
    failure = Failure(reason="ProviderDeleted", message="gone")
    status = build_status(pod=running, runpod=None, observation=obs(failure=failure), ports=[])
    assert status["phase"] == "Failed"
    assert status["reason"] == "ProviderDeleted"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "ProviderDeleted"
    assert terminated["startedAt"] == "2026-11-27T09:58:00Z"


def test_unknown_runpod_status_maps_to_unknown() -> None:
    status = build_status(pod=k8s_pod(), runpod=runpod("MIGRATING"), observation=obs(), ports=[])
    assert status["phase"] == "Unknown"


def test_terminal_phases_are_never_patched_again() -> None:
    done = k8s_pod({"phase": "Succeeded"})
    desired = build_status(pod=done, runpod=runpod(), observation=obs(), ports=[])
    assert status_patch(done, desired) is None


def test_restarts_count_when_uptime_goes_back_and_restart_time_follows_uptime() -> None:
    assert count_restarts(previous_uptime=100, uptime=5, restart_count=0) == 1
    assert count_restarts(previous_uptime=100, uptime=160, restart_count=1) == 1
    assert count_restarts(previous_uptime=None, uptime=5, restart_count=2) == 2
    status = build_status(pod=k8s_pod(), runpod=runpod(uptime=5), observation=obs(restart_count=1), ports=[])
    assert status["containerStatuses"][0]["restartCount"] == 1
    assert status["containerStatuses"][0]["state"]["running"]["startedAt"] == "2026-11-27T09:59:55Z"


def test_state_annotations_mirror_the_runpod_pod() -> None:
    rp = runpod(
        ports=[
            {"private": 8888, "public": None, "type": "http", "ip": None},
            {"private": 22, "public": 34446, "type": "tcp", "ip": "195.26.233.3"},
        ]
    )
    annotations = state_annotations(rp, [HTTP, SSH])
    assert annotations == {
        "runpod.io/gpu-type": "NVIDIA A40",
        "runpod.io/datacenter-id": "EU-RO-1",
        "runpod.io/cost-per-hour": "0.44",
        "runpod.io/public-ip": "195.26.233.3",
        "runpod.io/port-mappings": "8888/http=https://rp1-8888.proxy.runpod.net,22/tcp=195.26.233.3:34446",
    }
    assert port_mappings(runpod("STARTING"), [HTTP]) == ""


def _multi_pod(drop: tuple[str, ...], *containers: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    from pods_support import make_plan

    from contract.plan import plan_to_annotations

    plan = make_plan(drop_containers=drop)
    pod = k8s_pod()
    pod["metadata"]["annotations"] = plan_to_annotations(plan)
    pod["spec"]["containers"] = [{"name": n, "image": f"{n}:1"} for n in containers]
    if init:
        pod["spec"]["initContainers"] = [{"name": n, "image": f"{n}:1"} for n in init]
    return pod


def test_dropped_containers_are_shown_waiting_not_run_and_never_ready() -> None:
    pod = _multi_pod(("sidecar", "migrate"), "main", "sidecar", init=("migrate",))
    status = build_status(pod=pod, runpod=runpod(), observation=obs(), ports=[])
    by_name = {c["name"]: c for c in status["containerStatuses"]}
    assert [c["name"] for c in status["containerStatuses"]] == ["main", "sidecar"]  # sorted, as kubelets do
    assert by_name["main"]["ready"] is True and "running" in by_name["main"]["state"]
    assert by_name["sidecar"] == {
        "name": "sidecar",
        "image": "sidecar:1",
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {
            "waiting": {
                "reason": "NotRunOnRunPod",
                "message": "not run on RunPod: a RunPod pod runs one container (main); "
                "left out by runpod.io/drop-containers",
            }
        },
    }
    [init] = status["initContainerStatuses"]
    assert init["name"] == "migrate" and init["state"]["waiting"]["reason"] == "NotRunOnRunPod"


def test_ready_follows_the_container_that_runs_and_names_the_ones_that_do_not() -> None:
    pod = _multi_pod(("sidecar", "migrate"), "main", "sidecar", init=("migrate",))
    status = build_status(pod=pod, runpod=runpod(), observation=obs(), ports=[])
    by_type = {c["type"]: c for c in status["conditions"]}
    note = "only main runs on RunPod (one container per pod); not run: sidecar, migrate"
    for kind in ("Ready", "ContainersReady"):
        assert by_type[kind]["status"] == "True"
        assert (by_type[kind]["reason"], by_type[kind]["message"]) == ("ContainersNotRunOnRunPod", note)
    assert by_type["Initialized"]["reason"] == "InitContainersNotRunOnRunPod"
    assert by_type["Initialized"]["message"] == "init containers not run on RunPod: migrate"
    # Steady: the same pod next tick needs no write.
    assert status_patch(k8s_pod(status) | {"metadata": pod["metadata"], "spec": pod["spec"]}, status) is None


def test_a_pod_with_one_container_carries_no_not_run_notes() -> None:
    status = build_status(pod=k8s_pod(), runpod=runpod(), observation=obs(), ports=[])
    assert all("reason" not in c for c in status["conditions"] if c["type"] != "PodScheduled")
    assert "initContainerStatuses" not in status


def test_when_the_first_container_is_dropped_the_next_one_is_the_running_one() -> None:
    pod = _multi_pod(("istio-proxy",), "istio-proxy", "main")
    status = build_status(pod=pod, runpod=runpod(), observation=obs(), ports=[])
    by_name = {c["name"]: c for c in status["containerStatuses"]}
    assert by_name["main"]["containerID"] == "runpod://rp1" and by_name["main"]["ready"] is True
    assert by_name["istio-proxy"]["state"]["waiting"]["reason"] == "NotRunOnRunPod"


def test_extra_containers_of_an_unchecked_pod_are_shown_as_not_run_too() -> None:
    # A pod admitted before the one-container check: its sidecar is not silently missing.
    pod = _multi_pod((), "main", "sidecar")
    status = build_status(pod=pod, runpod=runpod(), observation=obs(), ports=[])
    sidecar = {c["name"]: c for c in status["containerStatuses"]}["sidecar"]
    assert (
        sidecar["state"]["waiting"]["message"] == "not run on RunPod: a RunPod pod runs one container (main)"
    )
