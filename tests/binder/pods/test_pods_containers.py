"""Pods with containers RunPod does not run: shown as such, never silently missing."""

from __future__ import annotations

from pods_support import Harness, make_plan, phase, running_and_ready, wait_for


async def test_dropped_containers_show_as_not_run_while_the_pod_runs_and_is_ready(
    pods_harness: Harness, control_plane: object
) -> None:
    h = pods_harness
    await h.start()
    plan = make_plan(drop_containers=("log-shipper", "migrate"))
    created = await h.create_pod("web", plan=plan, sidecars=("log-shipper",), init_containers=("migrate",))

    await wait_for(lambda: running_and_ready(h, "web"), what="pod Running and Ready")
    pod = await h.pod("web")
    assert pod is not None
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert statuses["main"]["ready"] is True and "running" in statuses["main"]["state"]
    assert statuses["log-shipper"]["ready"] is False
    assert statuses["log-shipper"]["state"]["waiting"]["reason"] == "NotRunOnRunPod"
    assert pod["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "NotRunOnRunPod"
    ready_condition = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["message"] == (
        "only main runs on RunPod (one container per pod); not run: log-shipper, migrate"
    )
    assert len(h.runpod_pods(created["metadata"]["uid"])) == 1
    events = {e["reason"]: e["message"] for e in await h.events("web")}
    assert events["NotRunOnRunPod"] == (
        "containers log-shipper and init containers migrate do not run on RunPod "
        "(left out by runpod.io/drop-containers); a RunPod pod runs one container: main"
    )
    # What a kubectl user sees: one of two containers ready, and why.
    listed = control_plane.kubectl("get", "pod", "-n", h.namespace, "web", "--no-headers")  # type: ignore[attr-defined]
    assert listed.stdout.split()[1:3] == ["1/2", "NotRunOnRunPod"]
    described = control_plane.kubectl("describe", "pod", "-n", h.namespace, "web")  # type: ignore[attr-defined]
    assert "Reason:       NotRunOnRunPod" in described.stdout


async def test_a_pod_with_unnamed_extra_containers_fails_without_a_runpod_pod(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    created = await h.create_pod("unchecked", sidecars=("sidecar",))

    async def failed() -> bool:
        return phase(await h.pod("unchecked")) == "Failed"

    await wait_for(failed, what="pod Failed")
    pod = await h.pod("unchecked")
    assert pod is not None
    assert pod["status"]["reason"] == "UnsupportedContainers"
    assert (
        "sidecar would not run and runpod.io/drop-containers does not name them" in pod["status"]["message"]
    )
    assert h.runpod_pods(created["metadata"]["uid"]) == []
    assert h.sandbox.admin.state()["creates"] == 0
    sidecar = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "sidecar")
    assert sidecar["state"]["waiting"]["reason"] == "NotRunOnRunPod"
