"""User inputs are validated with messages that say what, why, what is allowed and from where."""

from __future__ import annotations

import pytest

from contract.plan import Port
from webhook.compute import count_gpus
from webhook.inputs import detect_ports, read_inputs
from webhook.problems import Denial


def _denied(annotations: dict[str, str], **kwargs: object) -> Denial:
    with pytest.raises(Denial) as info:
        read_inputs(annotations, node_max_gpu_price=kwargs.pop("cap", 2.0), **kwargs)  # type: ignore[arg-type]
    return info.value


def test_no_annotations_give_the_documented_defaults() -> None:
    inputs = read_inputs({}, node_max_gpu_price=0.5)
    assert inputs.required_gpu_memory_gb == 16
    assert inputs.cloud == "SECURE"
    assert inputs.container_disk_gb == 50
    assert inputs.max_gpu_price is None
    assert inputs.gpu_types is None and inputs.datacenter_ids is None and inputs.ports is None
    assert inputs.registry_auth_id is None and inputs.template_id is None


def test_every_annotation_is_read_when_valid() -> None:
    inputs = read_inputs(
        {
            "runpod.io/required-gpu-memory": " 80 ",
            "runpod.io/gpu-types": "NVIDIA A40, NVIDIA L4",
            "runpod.io/max-gpu-price": "1.25",
            "runpod.io/cloud-type": "COMMUNITY",
            "runpod.io/datacenter-ids": "EU-RO-1,US-KS-2,EU-RO-1",
            "runpod.io/ports": "8888/http, 22/tcp",
            "runpod.io/container-registry-auth-id": "cred-123",
            "runpod.io/templateId": "tpl-9",
            "runpod.io/container-disk-gb": "200",
            "example.com/unrelated": "kept out of it",
        },
        node_max_gpu_price=2.0,
    )
    assert inputs.required_gpu_memory_gb == 80
    assert inputs.gpu_types == ("NVIDIA A40", "NVIDIA L4")
    assert inputs.max_gpu_price == 1.25
    assert inputs.cloud == "COMMUNITY"
    assert inputs.datacenter_ids == ("EU-RO-1", "US-KS-2")
    assert inputs.ports == (Port(number=8888, protocol="http"), Port(number=22, protocol="tcp"))
    assert inputs.registry_auth_id == "cred-123"
    assert inputs.template_id == "tpl-9"
    assert inputs.container_disk_gb == 200


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "runpod.io/required-gpu-memory",
            "80GB",
            "not an integer; allowed: an integer number of GB per GPU, 1..1024",
        ),
        ("runpod.io/required-gpu-memory", "0", "out of range"),
        ("runpod.io/required-gpu-memory", "1025", "out of range"),
        ("runpod.io/required-gpu-memory", "-4", "not an integer"),
        ("runpod.io/container-disk-gb", "2001", "out of range; allowed: an integer number of GB, 1..2000"),
        ("runpod.io/container-disk-gb", "ten", "not an integer"),
        ("runpod.io/max-gpu-price", "$1", "not a number"),
        ("runpod.io/max-gpu-price", "0", "must be a positive number"),
        ("runpod.io/max-gpu-price", "nan", "must be a positive number"),
        ("runpod.io/max-gpu-price", "inf", "must be a positive number"),
        (
            "runpod.io/cloud-type",
            "secure",
            "unknown cloud type; did you mean SECURE?; allowed: SECURE or COMMUNITY",
        ),
        ("runpod.io/cloud-type", "SPOT", "allowed: SECURE or COMMUNITY"),
        ("runpod.io/datacenter-ids", " , ", "empty list"),
        ("runpod.io/gpu-types", "", "empty list"),
        ("runpod.io/ports", "8888", "is not PORT/http or PORT/tcp"),
        ("runpod.io/ports", "8888/udp", "is not PORT/http or PORT/tcp"),
        ("runpod.io/ports", "70000/tcp", "port must be 1..65535"),
        ("runpod.io/ports", "22/tcp,22/http", "port 22 listed twice"),
        ("runpod.io/templateId", "my template", "not a RunPod id"),
        ("runpod.io/container-registry-auth-id", " ", "not a RunPod id"),
        ("runpod.io/ssh", "off", "not an SSH setting; allowed: enabled or disabled"),
        (
            "runpod.io/ssh",
            "Disabled",
            "not an SSH setting; did you mean disabled?; allowed: enabled or disabled",
        ),
    ],
)
def test_a_bad_value_is_rejected_naming_annotation_value_and_what_is_allowed(
    key: str, value: str, expected: str
) -> None:
    denial = _denied({key: value})
    assert denial.code == 422
    assert denial.message.startswith(f'{key}="{value}" on the pod: ')
    assert expected in denial.message
    assert "allowed: " in denial.message


def test_a_price_above_the_node_cap_is_forbidden_not_invalid() -> None:
    denial = _denied({"runpod.io/max-gpu-price": "3"}, cap=0.5)
    assert denial.code == 403
    assert 'runpod.io/max-gpu-price="3" on the pod: above the node cap $0.5/GPU-hour' in denial.message


def test_a_price_equal_to_the_node_cap_is_accepted() -> None:
    assert read_inputs({"runpod.io/max-gpu-price": "0.5"}, node_max_gpu_price=0.5).max_gpu_price == 0.5


def test_an_unknown_runpod_key_is_rejected_with_a_did_you_mean() -> None:
    denial = _denied({"runpod.io/gpu-memory": "80"})
    assert (
        'runpod.io/gpu-memory="80" on the pod: unknown annotation; did you mean runpod.io/required-gpu-memory?'
        in (denial.message)
    )
    assert "required-gpu-memory, gpu-types" in denial.message


def test_a_typo_in_the_prefix_is_caught_too() -> None:
    denial = _denied({"runpod.com/gpu-types": "NVIDIA A40"})
    assert "did you mean runpod.io/gpu-types?" in denial.message


def test_other_projects_annotations_and_state_keys_are_not_inputs() -> None:
    inputs = read_inputs(
        {"example.com/runpod": "x", "prometheus.io/scrape": "true", "plan.runpod.io/version": "1"},
        node_max_gpu_price=0.5,
    )
    assert inputs.required_gpu_memory_gb == 16


def test_all_problems_are_reported_at_once() -> None:
    denial = _denied(
        {"runpod.io/cloud-type": "AWS", "runpod.io/container-disk-gb": "0", "runpod.io/foo": "1"}
    )
    assert denial.message.count("; allowed: ") == 3


def test_the_pod_wins_over_its_job_per_key() -> None:
    inputs = read_inputs(
        {"runpod.io/required-gpu-memory": "24"},
        job_annotations={"runpod.io/required-gpu-memory": "80", "runpod.io/cloud-type": "COMMUNITY"},
        job_name="train",
        node_max_gpu_price=0.5,
    )
    assert inputs.required_gpu_memory_gb == 24
    assert inputs.cloud == "COMMUNITY"
    assert inputs.origin("runpod.io/cloud-type") == "Job train"
    assert inputs.origin("runpod.io/required-gpu-memory") == "the pod"


def test_a_bad_value_from_the_job_says_it_came_from_the_job() -> None:
    denial = _denied({}, job_annotations={"runpod.io/container-disk-gb": "huge"}, job_name="train")
    assert denial.message.startswith('runpod.io/container-disk-gb="huge" on Job train: not an integer')


def test_a_bad_job_value_hidden_by_the_pod_does_not_matter() -> None:
    inputs = read_inputs(
        {"runpod.io/cloud-type": "SECURE"},
        job_annotations={"runpod.io/cloud-type": "nope"},
        job_name="train",
        node_max_gpu_price=0.5,
    )
    assert inputs.cloud == "SECURE"


def test_an_unknown_key_on_the_job_is_rejected_naming_the_job() -> None:
    denial = _denied({}, job_annotations={"runpod.io/gpu-type": "NVIDIA A40"}, job_name="train")
    assert (
        'runpod.io/gpu-type="NVIDIA A40" on Job train: unknown annotation; did you mean runpod.io/gpu-types?'
        in (denial.message)
    )


def test_an_empty_ports_override_exposes_nothing() -> None:
    assert read_inputs({"runpod.io/ports": ""}, node_max_gpu_price=0.5).ports == ()


def _containers(*limits: dict[str, object], init: list[dict[str, object]] | None = None) -> dict[str, object]:
    spec: dict[str, object] = {
        "containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(limits)]
    }
    if init is not None:
        spec["initContainers"] = [{"name": f"i{i}", "resources": r} for i, r in enumerate(init)]
    return spec


def test_gpu_count_sums_container_limits() -> None:
    spec = _containers({"limits": {"nvidia.com/gpu": "2"}}, {"limits": {"nvidia.com/gpu": 1}}, {})
    assert count_gpus(spec).count == 3
    assert not count_gpus(spec).defaulted


def test_gpu_count_covers_a_larger_init_container() -> None:
    spec = _containers({"limits": {"nvidia.com/gpu": "1"}}, init=[{"limits": {"nvidia.com/gpu": "4"}}])
    assert count_gpus(spec).count == 4


def test_no_gpu_limit_defaults_to_one() -> None:
    result = count_gpus(_containers({"limits": {"cpu": "2"}}))
    assert (result.count, result.defaulted) == (1, True)


def test_requests_must_equal_limits() -> None:
    with pytest.raises(Denial) as info:
        count_gpus(_containers({"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "1"}}))
    assert (
        'spec.containers[0].resources.requests["nvidia.com/gpu"]="1" on the pod: differs from the limit 2'
        in (info.value.message)
    )


def test_equal_requests_and_limits_are_fine() -> None:
    spec = _containers({"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}})
    assert count_gpus(spec).count == 2


def test_a_gpu_request_without_a_limit_is_rejected() -> None:
    with pytest.raises(Denial, match="a GPU request needs a limit"):
        count_gpus(_containers({"requests": {"nvidia.com/gpu": "1"}}))


@pytest.mark.parametrize("bad", ["1.5", "one", "500m", "-1"])
def test_a_fractional_or_garbled_gpu_quantity_is_rejected(bad: str) -> None:
    with pytest.raises(Denial, match="not a whole number"):
        count_gpus(_containers({"limits": {"nvidia.com/gpu": bad}}))


def test_an_explicit_zero_gpu_total_is_rejected() -> None:
    with pytest.raises(Denial, match="needs at least one GPU"):
        count_gpus(_containers({"limits": {"nvidia.com/gpu": "0"}}))


def test_ports_are_detected_from_container_ports() -> None:
    spec = {
        "containers": [
            {"name": "a", "ports": [{"containerPort": 8888}, {"containerPort": 22, "protocol": "TCP"}]},
            {"name": "b", "ports": [{"containerPort": 80}, {"containerPort": 8888}, {"containerPort": 6006}]},
        ]
    }
    ports, warnings = detect_ports(spec)
    assert [str(p) for p in ports] == ["8888/http", "22/tcp", "80/http", "6006/tcp"]
    assert warnings == ()


@pytest.mark.parametrize("number", [80, 443, 8080, 8000, 3000, 5000, 8888, 9000])
def test_well_known_web_ports_are_http(number: int) -> None:
    ports, _ = detect_ports({"containers": [{"name": "a", "ports": [{"containerPort": number}]}]})
    assert ports == (Port(number=number, protocol="http"),)


def test_udp_ports_are_left_out_with_a_warning() -> None:
    ports, warnings = detect_ports(
        {"containers": [{"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}
    )
    assert ports == ()
    assert warnings == ("containerPort 53/UDP not exposed: RunPod exposes TCP ports only",)


@pytest.mark.parametrize("value", ["enabled", "disabled", " disabled "])
def test_the_ssh_opt_out_is_an_input_of_the_pod(value: str) -> None:
    read_inputs({"runpod.io/ssh": value}, node_max_gpu_price=0.5)


def test_the_ssh_opt_out_on_a_job_is_refused_because_the_binder_reads_the_pod() -> None:
    denial = _denied({}, job_annotations={"runpod.io/ssh": "disabled"}, job_name="train")

    assert denial.message == (
        'runpod.io/ssh="disabled" on Job train: the binder reads it from the pod, not from its Job; '
        "allowed: enabled or disabled, on the pod template (spec.template.metadata.annotations)"
    )
    read_inputs(
        {"runpod.io/ssh": "disabled"},
        job_annotations={"runpod.io/ssh": "disabled"},
        job_name="t",
        node_max_gpu_price=1,
    )
