"""Which container of a pod RunPod runs, and which it leaves out (`runpod.io/drop-containers`)."""

from __future__ import annotations

from typing import Any

import pytest

from contract.containers import ContainerSplit, container_names, running_container, split_containers


def spec(*names: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": n, "image": f"img-{n}"} for n in names]}
    if init:
        body["initContainers"] = [{"name": n} for n in init]
    return body


def test_a_one_container_pod_runs_that_container_and_drops_nothing() -> None:
    split = split_containers(spec("main"), ())
    assert split == ContainerSplit(
        app=("main",),
        init=(),
        runs="main",
        runs_index=0,
        dropped=(),
        dropped_init=(),
        extra=(),
        extra_init=(),
        unknown=(),
        not_run=(),
        not_run_init=(),
    )
    assert split.acceptable


def test_without_a_drop_list_the_first_container_runs_and_the_others_are_extra() -> None:
    split = split_containers(spec("main", "sidecar", "logger", init=("setup",)), ())
    assert (split.runs, split.extra, split.extra_init) == ("main", ("sidecar", "logger"), ("setup",))
    assert split.not_run == ("sidecar", "logger") and split.not_run_init == ("setup",)
    assert not split.acceptable


def test_a_drop_list_naming_every_other_container_is_acceptable() -> None:
    split = split_containers(spec("main", "sidecar", init=("setup",)), ("sidecar", "setup"))
    assert (split.runs, split.dropped, split.dropped_init) == ("main", ("sidecar",), ("setup",))
    assert split.acceptable


def test_dropping_the_first_container_runs_the_next_one() -> None:
    # Some injectors put their sidecar first.
    split = split_containers(spec("istio-proxy", "main"), ("istio-proxy",))
    assert (split.runs, split.runs_index, split.not_run) == ("main", 1, ("istio-proxy",))
    pod = {"spec": spec("istio-proxy", "main")}
    assert running_container(pod, ("istio-proxy",))["image"] == "img-main"


def test_dropping_every_container_leaves_none_to_run() -> None:
    split = split_containers(spec("a", "b"), ("a", "b"))
    assert split.runs is None and split.runs_index is None and not split.acceptable
    assert running_container({"spec": spec("a", "b")}, ("a", "b")) == {}


def test_names_that_are_no_container_are_reported_once_each() -> None:
    split = split_containers(spec("main"), ("ghost", "main-x", "ghost"))
    assert split.unknown == ("ghost", "main-x")
    assert not split.acceptable


@pytest.mark.parametrize(
    ("containers", "expected"),
    [(None, ()), ("nope", ()), ([{"name": "a"}, {}, "junk"], ("a", "", ""))],
)
def test_container_names_tolerate_odd_shapes(containers: object, expected: tuple[str, ...]) -> None:
    assert container_names(containers) == expected


def test_a_pod_without_containers_runs_nothing() -> None:
    assert running_container({}, ()) == {}
    assert split_containers({}, ()).runs is None
