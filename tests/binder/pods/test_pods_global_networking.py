"""A Running pod gets a real address: global networking is asked for where RunPod offers it."""

from __future__ import annotations

from pods_support import make_plan

from binder.pods.decisions import build_create_request, wants_global_networking
from contract.catalog import build_catalog
from contract.plan import Candidate
from contract.policy import NodePolicy
from runpod_api.models import Pod

CATALOG = build_catalog(
    gpus_by_cloud={
        "SECURE": {
            "gpus": [
                {
                    "id": "NVIDIA A40",
                    "name": "A40",
                    "memory": 48,
                    "manufacturer": "NVIDIA",
                    "price": {"secure": 0.4},
                },
                {
                    "id": "AMD MI300X",
                    "name": "MI300X",
                    "memory": 192,
                    "manufacturer": "AMD",
                    "price": {"secure": 2.5},
                },
            ]
        }
    },
    datacenters={
        "dataCenters": [{"id": "EU-RO-1", "globalNetwork": True}, {"id": "AP-JP-1", "globalNetwork": False}]
    },
)


def candidate(gpu: str, dc: str | None) -> Candidate:
    return Candidate(gpu=gpu, dc=dc, usdPerHour=0.4)


def test_global_networking_is_asked_for_nvidia_gpus_in_data_centers_that_have_it() -> None:
    assert wants_global_networking(candidate("NVIDIA A40", "EU-RO-1"), CATALOG)
    assert not wants_global_networking(candidate("NVIDIA A40", "AP-JP-1"), CATALOG)
    assert not wants_global_networking(candidate("AMD MI300X", "EU-RO-1"), CATALOG)
    # Unknown placement, or no catalog yet: never, since RunPod refuses it where it is missing.
    assert not wants_global_networking(candidate("NVIDIA A40", None), CATALOG)
    assert not wants_global_networking(candidate("NVIDIA A40", "EU-RO-1"), None)


def test_the_create_body_carries_it_only_when_asked() -> None:
    kwargs = dict(name="n", plan=make_plan(), candidate=candidate("NVIDIA A40", "EU-RO-1"),
                  policy=NodePolicy(node_name="n"), image="busybox", args="", env={}, markers={})  # fmt: skip
    assert build_create_request(**kwargs, global_networking=True).body()["globalNetworking"] is True  # type: ignore[arg-type]
    assert "globalNetworking" not in build_create_request(**kwargs).body()  # type: ignore[arg-type]


def test_the_pod_ip_is_the_public_ip_else_the_global_networking_address() -> None:
    private = Pod.model_validate({"id": "a", "globalNetworking": {"enabled": True, "ip": "10.65.1.42"}})
    assert private.pod_ip == "10.65.1.42"
    public = Pod.model_validate(
        {"id": "b", "globalNetworking": {"enabled": True, "ip": "10.65.1.43"},
         "runtime": {"ports": [{"private": 22, "public": 40022, "type": "tcp", "ip": "203.0.113.9"}]}}
    )  # fmt: skip
    assert public.pod_ip == "203.0.113.9"
    assert Pod.model_validate({"id": "c", "globalNetworking": {"enabled": False}}).pod_ip is None
