"""Pods move like RunPod pods: timed states, restarts, stops, money, visibility, foreign pods."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sandbox_helpers import API_KEY, FAST, POD_BODY, Contract, contract_client, logs_snapshot, wait_status

from sandbox.testing import running_sandbox


def test_pod_walks_provisioning_starting_running_on_the_configured_timings(contract: Contract) -> None:
    timings = {"provisioningS": 0.3, "startingS": 0.3}
    with running_sandbox(api_key=API_KEY, timings=timings) as sb, contract_client(sb, contract) as api:
        start = time.monotonic()
        pod = api.post("/v2/pods", json=POD_BODY).json()
        seen: dict[str, float] = {}
        while "RUNNING" not in seen and time.monotonic() - start < 5:
            status = api.get(f"/v2/pods/{pod['id']}").json()["status"]
            seen.setdefault(status, time.monotonic() - start)
            time.sleep(0.02)
        assert list(seen) == ["PROVISIONING", "STARTING", "RUNNING"]
        assert 0.25 <= seen["STARTING"] < 0.6 and 0.55 <= seen["RUNNING"] < 1.2
        running = api.get(f"/v2/pods/{pod['id']}").json()
        tcp = next(p for p in running["runtime"]["ports"] if p["type"] == "tcp")
        http = next(p for p in running["runtime"]["ports"] if p["type"] == "http")
        assert tcp["private"] == 22 and tcp["public"] and tcp["ip"] == running["ssh"]["direct"]["host"]
        assert http["public"] is None and http["ip"] is None


def test_exited_container_is_restarted_and_uptime_resets(api: httpx.Client, sandbox: Any) -> None:
    body = {**POD_BODY, "args": "sh -c 'echo run; exit 3'"}
    pod = api.post("/v2/pods", json=body).json()
    wait_status(api, pod["id"], "RUNNING")
    time.sleep(0.4)
    lines = logs_snapshot(api, pod["id"], source="container")
    assert lines.count("run") >= 3  # ran, exited, was restarted, ran again...
    state = sandbox.admin.state()
    assert state["pods"][0]["restarts"] >= 2 and state["pods"][0]["status"] == "RUNNING"
    system = logs_snapshot(api, pod["id"], source="system")
    assert "container exited; restarting" in system
    assert not any("3" in line for line in system)  # RunPod reports no exit code


def test_default_command_runs_forever_with_one_banner_line(api: httpx.Client) -> None:
    pod = api.post("/v2/pods", json=POD_BODY).json()
    wait_status(api, pod["id"], "RUNNING")
    time.sleep(0.2)
    assert logs_snapshot(api, pod["id"], source="container") == [
        "nginx:1.27: default command started; serving"
    ]


def test_stop_start_restart_and_invalid_actions(api: httpx.Client, sandbox: Any) -> None:
    pod = api.post("/v2/pods", json=POD_BODY).json()
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"}).status_code == 409
    wait_status(api, pod["id"], "RUNNING")
    stopped = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "stop"}).json()
    assert (stopped["status"], stopped["cost"], stopped["runtime"], stopped["actions"]) == (
        "EXITED",
        0.0,
        None,
        ["start", "terminate"],
    )
    # The host filled up while the pod was stopped: start fails on capacity and it stays EXITED.
    sandbox.admin.set_stock(gpu_id="NVIDIA A40", datacenter_id="EU-RO-1", free=0)
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"}).status_code == 400
    sandbox.admin.set_stock(gpu_id="NVIDIA A40", datacenter_id="EU-RO-1", free=1)
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "start"}).status_code == 200
    assert wait_status(api, pod["id"], "RUNNING")["status"] == "RUNNING"
    restarted = api.post(f"/v2/pods/{pod['id']}/action", json={"action": "restart"}).json()
    assert restarted["status"] == "STARTING"
    assert api.post(f"/v2/pods/{pod['id']}/action", json={"action": "terminate"}).status_code == 204
    assert api.get(f"/v2/pods/{pod['id']}").status_code == 404


def test_spend_accrues_while_holding_gpus_and_stops_with_the_pod(api: httpx.Client, sandbox: Any) -> None:
    pod = api.post("/v2/pods", json={**POD_BODY, "gpu": {"id": "NVIDIA A40", "count": 2}}).json()
    assert pod["cost"] == 0.88
    time.sleep(0.3)
    api.delete(f"/v2/pods/{pod['id']}")
    spent = sandbox.admin.state()["spendUsd"]
    assert 0.88 * 0.25 / 3600 < spent < 0.88 * 2.0 / 3600
    time.sleep(0.2)
    state = sandbox.admin.state()
    assert state["spendUsd"] == spent and state["creates"] == 1 and state["deletes"] == 1
    assert [p["status"] for p in state["terminated"]] == ["TERMINATED"]


def test_balance_402_and_pool_denial_403(api: httpx.Client, sandbox: Any) -> None:
    sandbox.admin.set_balance(0.1)  # less than one hour of an A40
    answer = api.post("/v2/pods", json=POD_BODY)
    assert answer.status_code == 402
    sandbox.admin.set_balance(None)
    sandbox.admin.deny_gpus(["NVIDIA A40"])
    denied = api.post("/v2/pods", json=POD_BODY)
    assert denied.status_code == 403 and denied.json()["detail"] == "account cannot access the requested pool"
    assert sandbox.admin.state()["pods"] == []


def test_new_pods_are_invisible_for_the_visibility_delay(contract: Contract) -> None:
    timings = {**FAST, "visibilityDelayS": 0.4}
    with running_sandbox(api_key=API_KEY, timings=timings) as sb, contract_client(sb, contract) as api:
        pod = api.post("/v2/pods", json=POD_BODY).json()
        assert api.get(f"/v2/pods/{pod['id']}").status_code == 404
        assert api.get("/v2/pods").json()["pods"] == []
        assert len(sb.admin.state()["pods"]) == 1
        time.sleep(0.45)
        assert api.get(f"/v2/pods/{pod['id']}").status_code == 200


def test_foreign_pods_from_the_scenario_are_listed(contract: Contract) -> None:
    scenario = {
        "pods": [{"name": "alice-notebook", "gpu": {"id": "NVIDIA A40", "count": 1}, "env": {"X": "1"}}]
    }
    with running_sandbox(api_key=API_KEY, scenario=scenario) as sb, contract_client(sb, contract) as api:
        pods = api.get("/v2/pods").json()["pods"]
        assert [(p["name"], p["status"], p["env"]) for p in pods] == [
            ("alice-notebook", "RUNNING", {"X": "1"})
        ]


def test_crash_and_failing_image_put_the_pod_in_error(contract: Contract) -> None:
    scenario = {"failingImages": ["ghcr.io/private/nope:1"], "timings": FAST}
    with running_sandbox(api_key=API_KEY, scenario=scenario) as sb, contract_client(sb, contract) as api:
        bad = api.post("/v2/pods", json={**POD_BODY, "image": "ghcr.io/private/nope:1"}).json()
        errored = wait_status(api, bad["id"], "ERROR")
        assert errored["status"] == "ERROR" and errored["actions"] == ["start", "terminate"]
        assert any("error pulling image" in line for line in logs_snapshot(api, bad["id"], source="system"))
        good = api.post("/v2/pods", json=POD_BODY).json()
        wait_status(api, good["id"], "RUNNING")
        assert sb.admin.crash_pod(good["id"])["status"] == "ERROR"
        assert api.get(f"/v2/pods/{good['id']}").json()["cost"] == 0.0


def test_an_image_made_unpullable_at_runtime_errors_with_only_a_system_log_line_to_say_why(
    api: httpx.Client, sandbox: Any
) -> None:
    sandbox.admin.fail_images(["ghcr.io/acme/private:2"])
    pod = api.post("/v2/pods", json={**POD_BODY, "image": "ghcr.io/acme/private:2"}).json()
    errored = wait_status(api, pod["id"], "ERROR")
    assert "reason" not in errored and errored["startedAt"] is None  # RunPod has no reason field
    system = logs_snapshot(api, pod["id"], source="system")
    assert system[-1] == (
        "error pulling image ghcr.io/acme/private:2: pull access denied or repository not found"
    )
    assert logs_snapshot(api, pod["id"], source="container") == []
    sandbox.admin.fail_images([])
    again = api.post("/v2/pods", json={**POD_BODY, "image": "ghcr.io/acme/private:2"}).json()
    assert wait_status(api, again["id"], "RUNNING")["status"] == "RUNNING"


def test_patch_of_args_recreates_the_running_container(api: httpx.Client) -> None:
    pod = api.post("/v2/pods", json={**POD_BODY, "args": "sh -c 'echo v1; sleep infinity'"}).json()
    wait_status(api, pod["id"], "RUNNING")
    patched = api.patch(f"/v2/pods/{pod['id']}", json={"args": "sh -c 'echo v2; sleep infinity'"}).json()
    assert patched["status"] == "STARTING"
    wait_status(api, pod["id"], "RUNNING")
    time.sleep(0.1)
    assert logs_snapshot(api, pod["id"], source="container") == ["v1", "v2"]
