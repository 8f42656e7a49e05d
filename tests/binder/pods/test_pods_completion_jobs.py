"""Run-to-completion pods: the exit code travels through the log stream and ends the Job."""

from __future__ import annotations

from pods_support import Harness, create_job, job, job_condition, job_pods, phase, wait_for


async def test_a_job_exiting_3_fails_with_exit_code_3_and_terminates_its_runpod_pod(
    pods_harness: Harness,
) -> None:
    h = pods_harness
    await h.start()
    await create_job(h, "fails", command=["sh", "-c", "echo hi; exit 3"])

    async def failed_pod() -> dict | None:  # type: ignore[type-arg]
        pods = await job_pods(h, "fails")
        return pods[0] if pods and phase(pods[0]) == "Failed" else None

    pod = await wait_for(failed_pod, what="the Job's pod to fail")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    await wait_for(lambda: _annotated_terminated(h, pod["metadata"]["name"]), what="runpod.io/terminated")
    current = await h.pod(pod["metadata"]["name"])
    assert current is not None
    assert current["metadata"]["annotations"]["runpod.io/exit-code"] == "3"
    assert h.runpod_pods(pod["metadata"]["uid"]) == []

    async def job_failed() -> bool:
        return job_condition(await job(h, "fails"), "Failed") == "True"

    await wait_for(job_failed, what="Job Failed condition")


async def test_a_job_exiting_0_succeeds_and_completes(pods_harness: Harness) -> None:
    h = pods_harness
    await h.start()
    await create_job(h, "works", command=["sh", "-c", "echo working; exit 0"])

    async def complete() -> bool:
        return job_condition(await job(h, "works"), "Complete") == "True"

    await wait_for(complete, what="Job Complete")
    pods = await job_pods(h, "works")
    assert [phase(p) for p in pods] == ["Succeeded"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    await wait_for(lambda: _no_runpod(h, pods[0]["metadata"]["uid"]), what="RunPod pod terminated")
    state = h.sandbox.admin.state()
    assert state["creates"] == 1


async def _annotated_terminated(h: Harness, name: str) -> bool:
    pod = await h.pod(name)
    return pod is not None and "runpod.io/terminated" in pod["metadata"].get("annotations", {})


async def _no_runpod(h: Harness, uid: str) -> bool:
    return h.runpod_pods(uid) == []
