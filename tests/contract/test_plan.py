"""The plan survives the trip through annotations, and a broken plan says which key is wrong."""

from __future__ import annotations

import pytest

from contract.plan import (
    PLAN_CANDIDATES,
    PLAN_CLOUD,
    PLAN_GPU_COUNT,
    PLAN_PORTS,
    PLAN_VERSION,
    Candidate,
    Plan,
    PlanError,
    parse_port,
    plan_from_annotations,
    plan_to_annotations,
)


def _plan(**overrides: object) -> Plan:
    fields: dict[str, object] = {
        "candidates": (
            Candidate(gpu_type_id="NVIDIA A40", datacenter_id="EU-RO-1", usd_per_hour=0.88, stock="HIGH"),
            Candidate(gpu_type_id="NVIDIA L40", datacenter_id=None, usd_per_hour=1.64),
        ),
        "gpu_count": 2,
        "cloud": "SECURE",
        "datacenter_ids": ("EU-RO-1", "US-KS-2"),
        "ports": (parse_port("8888/http"), parse_port("22/tcp")),
        "container_disk_gb": 50,
        "max_gpu_price": 0.9,
        "registry_auth_id": "reg-1",
        "template_id": None,
        "catalog_revision": "3f2a9c1b7d00",
    }
    fields.update(overrides)
    return Plan.model_validate(fields)


def test_a_plan_round_trips_through_its_annotations() -> None:
    plan = _plan()
    assert plan_from_annotations(plan_to_annotations(plan)) == plan


def test_plan_annotations_are_readable_by_a_person() -> None:
    annotations = plan_to_annotations(_plan())
    assert annotations[PLAN_CLOUD] == "SECURE"
    assert annotations[PLAN_GPU_COUNT] == "2"
    assert annotations[PLAN_PORTS] == "8888/http,22/tcp"
    assert '"gpu":"NVIDIA A40"' in annotations[PLAN_CANDIDATES]
    assert "plan.runpod.io/template-id" not in annotations  # unset optional keys are omitted


def test_a_pod_without_a_plan_is_named_as_such() -> None:
    with pytest.raises(PlanError, match="no plan"):
        plan_from_annotations({})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (PLAN_VERSION, "9", "not supported"),
        (PLAN_CANDIDATES, "not json", "not JSON"),
        (PLAN_CANDIDATES, "[]", "non-empty"),
        (PLAN_CLOUD, "ALL", "allowed: SECURE, COMMUNITY"),
        (PLAN_GPU_COUNT, "two", "not an integer"),
        (PLAN_GPU_COUNT, "0", "gpu_count"),
        (PLAN_PORTS, "80/udp", "PORT/http or PORT/tcp"),
    ],
)
def test_a_malformed_plan_names_the_offending_key(key: str, value: str, message: str) -> None:
    annotations = plan_to_annotations(_plan())
    annotations[key] = value
    with pytest.raises(PlanError, match=message):
        plan_from_annotations(annotations)


@pytest.mark.parametrize("text", ["80", "80/udp", "http/80", "0/tcp", "70000/tcp", "-1/tcp", "8o/http"])
def test_ports_outside_port_slash_protocol_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"PORT/http or PORT/tcp|1\.\.65535"):
        parse_port(text)


def test_the_drop_list_round_trips_and_is_omitted_when_empty() -> None:
    from contract.plan import PLAN_DROP_CONTAINERS, plan_drop_containers

    plan = _plan(drop_containers=("istio-proxy", "setup"))
    annotations = plan_to_annotations(plan)
    assert annotations[PLAN_DROP_CONTAINERS] == "istio-proxy,setup"
    assert plan_from_annotations(annotations) == plan
    assert plan_drop_containers(annotations) == ("istio-proxy", "setup")
    assert PLAN_DROP_CONTAINERS not in plan_to_annotations(_plan())
    assert plan_drop_containers({}) == ()
