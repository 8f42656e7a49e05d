"""One container per RunPod pod at admission: extra containers refused (mutate fails fast, validate
judges the final pod), `runpod.io/drop-containers` lets named ones be left out, volumes warned."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from webhook_samples import apply_patch, gpu_pod, review_bytes, sample_catalog

from contract.plan import plan_from_annotations
from contract.policy import NodePolicy
from webhook.admission import mutate, validate
from webhook.reviews import Verdict, parse_review

CATALOG = sample_catalog()
POLICY = NodePolicy(max_gpu_price=2.0)
DROP = "runpod.io/drop-containers"


def pod_with(
    *extra: str, init: tuple[str, ...] = (), annotations: dict[str, str] | None = None, **kw: Any
) -> dict[str, Any]:
    pod = gpu_pod(annotations=annotations, **kw)
    pod["spec"]["containers"] += [{"name": name, "image": f"{name}:1"} for name in extra]
    if init:
        pod["spec"]["initContainers"] = [{"name": name, "image": f"{name}:1"} for name in init]
    return pod


def _mutate(pod: dict[str, Any], jobs: dict[tuple[str, str], dict[str, str]] | None = None) -> Verdict:
    def lookup(namespace: str, name: str, uid: str) -> dict[str, str] | None:
        return (jobs or {}).get((name, uid))

    return mutate(parse_review(review_bytes(pod)), catalog=CATALOG, policy=POLICY, jobs=lookup)


def _validate(pod: dict[str, Any]) -> Verdict:
    return validate(parse_review(review_bytes(pod)), policy=POLICY)


def _planned(pod: dict[str, Any]) -> dict[str, Any]:
    verdict = _mutate(pod)
    assert verdict.allowed, verdict.message
    return apply_patch(pod, list(verdict.patch))


def inject(pod: dict[str, Any], name: str = "istio-proxy", *, first: bool = False) -> dict[str, Any]:
    """What a sidecar injector running after our mutating webhook does to the pod."""
    injected = copy.deepcopy(pod)
    sidecar = {"name": name, "image": "istio/proxyv2:1.24"}
    containers = injected["spec"]["containers"]
    injected["spec"]["containers"] = [sidecar, *containers] if first else [*containers, sidecar]
    return injected


def test_a_three_container_pod_is_refused_naming_them_and_what_to_do() -> None:
    verdict = _mutate(pod_with("sidecar", "logger"))
    assert not verdict.allowed and verdict.code == 422
    assert verdict.message == (
        "spec.containers: a RunPod pod runs exactly one container, and this pod has 3 containers "
        "(main, sidecar, logger): main would run; sidecar, logger would not. Fold their work into "
        "main's image, remove them, or let RunPod leave them out: "
        'runpod.io/drop-containers: "sidecar,logger".'
    )


def test_init_containers_are_refused_too() -> None:
    verdict = _mutate(pod_with(init=("migrate",)))
    assert not verdict.allowed
    assert "this pod has 1 container (main) and 1 init container (migrate)" in (verdict.message or "")
    assert 'runpod.io/drop-containers: "migrate"' in (verdict.message or "")


def test_named_containers_may_be_dropped_and_the_plan_carries_the_list() -> None:
    pod = pod_with("sidecar", init=("migrate",), annotations={DROP: "sidecar, migrate"})
    planned = _planned(pod)
    plan = plan_from_annotations(planned["metadata"]["annotations"])
    assert plan.drop_containers == ("sidecar", "migrate")
    assert planned["metadata"]["annotations"]["plan.runpod.io/drop-containers"] == "sidecar,migrate"
    assert _validate(planned).allowed


def test_a_jobs_drop_list_reaches_the_plan_of_its_pods() -> None:
    pod = pod_with("sidecar", owner_job=("train", "u1"))
    verdict = _mutate(pod, jobs={("train", "u1"): {DROP: "sidecar"}})
    planned = apply_patch(pod, list(verdict.patch))
    assert plan_from_annotations(planned["metadata"]["annotations"]).drop_containers == ("sidecar",)
    assert _validate(planned).allowed


def test_a_sidecar_injected_after_our_webhook_is_refused_by_validate() -> None:
    final = inject(_planned(gpu_pod()))
    verdict = _validate(final)
    assert not verdict.allowed and verdict.code == 422
    message = verdict.message or ""
    assert "this pod has 2 containers (main, istio-proxy): main would run; istio-proxy would not" in message
    assert 'runpod.io/drop-containers: "istio-proxy"' in message
    assert "Containers added by other admission webhooks (sidecar injectors) count too" in message


def test_a_sidecar_named_ahead_of_its_injection_is_accepted_wherever_it_lands() -> None:
    planned = _planned(gpu_pod(annotations={DROP: "istio-proxy"}))  # not in the pod yet: fine here
    assert _validate(inject(planned)).allowed
    assert _validate(inject(planned, first=True)).allowed


def test_validate_refuses_names_that_are_no_container_of_the_final_pod() -> None:
    planned = _planned(gpu_pod(annotations={DROP: "istio-proxy"}))  # the injector never came
    verdict = _validate(planned)
    assert not verdict.allowed
    assert verdict.message == (
        'runpod.io/drop-containers="istio-proxy" on the pod (or its Job): names no container or init '
        "container of the pod; allowed: names of the pod's containers and init containers: main"
    )


def test_a_drop_list_naming_every_container_is_refused_at_once() -> None:
    verdict = _mutate(pod_with("b", annotations={DROP: "main,b"}))
    assert not verdict.allowed
    assert (
        'runpod.io/drop-containers="main", "b" on the pod: names every container of the pod, but one must run'
        in (verdict.message or "")
    )


@pytest.mark.parametrize("value", ["", " , ", "Sidecar", "side_car", "a" * 64])
def test_a_drop_list_of_bad_names_is_refused(value: str) -> None:
    verdict = _mutate(gpu_pod(annotations={DROP: value}))
    assert not verdict.allowed
    assert (verdict.message or "").startswith("runpod.io/drop-containers=")
    assert "allowed: a comma-separated list of container names" in (verdict.message or "")


def test_the_unknown_key_check_knows_the_annotation_and_suggests_it() -> None:
    assert _mutate(gpu_pod(annotations={DROP: "main-x"})).allowed  # names a container not (yet) there
    verdict = _mutate(gpu_pod(annotations={"runpod.io/drop-container": "x"}))
    assert "did you mean runpod.io/drop-containers?" in (verdict.message or "")


def test_the_drop_list_cannot_change_after_creation() -> None:
    old = _planned(pod_with("sidecar", annotations={DROP: "sidecar"}))
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][DROP] = "sidecar,other"
    verdict = validate(parse_review(review_bytes(new, operation="UPDATE", old=old)), policy=POLICY)
    assert not verdict.allowed
    assert "runpod.io/drop-containers: cannot change after the pod is created" in (verdict.message or "")


def test_a_defaulted_gpu_limit_lands_on_the_container_that_runs() -> None:
    pod = gpu_pod(gpus=None, annotations={DROP: "istio-proxy", "runpod.io/compute-type": "GPU"})
    pod["spec"]["containers"].insert(0, {"name": "istio-proxy", "image": "istio/proxyv2:1.24"})
    planned = _planned(pod)
    assert "resources" not in planned["spec"]["containers"][0]
    assert planned["spec"]["containers"][1]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert _validate(planned).allowed


def test_a_dropped_container_asking_for_gpus_is_warned_about() -> None:
    pod = pod_with("helper", annotations={DROP: "helper"})
    pod["spec"]["containers"][1]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    verdict = _mutate(pod)
    assert verdict.allowed
    assert (
        "container helper is left out, but its nvidia.com/gpu limit still counts toward the RunPod pod's GPUs"
        in verdict.warnings
    )


def test_volumes_get_a_warning_naming_them_but_not_the_service_account_token() -> None:
    pod = gpu_pod()
    pod["spec"]["volumes"] = [
        {"name": "weights", "persistentVolumeClaim": {"claimName": "llama"}},
        {"name": "config", "configMap": {"name": "app"}},
        {
            "name": "kube-api-access-x7k2p",
            "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
        },
    ]
    verdict = _mutate(pod)
    assert verdict.allowed
    assert verdict.warnings == (
        "volume weights (persistentVolumeClaim) is not mounted on RunPod: volumes are not supported yet",
        "volume config (configMap) is not mounted on RunPod: volumes are not supported yet",
    )


def test_many_volumes_share_one_warning() -> None:
    pod = gpu_pod()
    # emptyDir is a directory on RunPod's container disk (`volumes`); a configMap is not mounted.
    pod["spec"]["volumes"] = [{"name": f"v{i}", "configMap": {"name": "c"}} for i in range(40)]
    assert _mutate(pod).warnings == (
        "volumes v0 (configMap), v1 (configMap), v2 (configMap) and 37 more are not mounted on RunPod: not supported yet",
    )


def test_a_hundred_injected_sidecars_are_refused_in_a_bounded_message() -> None:
    final = _planned(gpu_pod())
    for i in range(100):
        final = inject(final, f"sidecar-{i}")
    message = _validate(final).message or ""
    assert len(message) < 800
    assert "101 containers (main, sidecar-0, sidecar-1, sidecar-2, sidecar-3 and 96 more)" in message
