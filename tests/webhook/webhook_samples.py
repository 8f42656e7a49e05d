"""Shared test material for the webhook: a RunPod-shaped catalog, pods and AdmissionReviews."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from contract.catalog import Catalog, build_catalog
from contract.policy import TAINT_KEY, TAINT_VALUE

DATACENTERS = ["CA-MTL-1", "EU-RO-1", "EU-SE-1", "US-KS-2", "US-TX-3"]


def _gpu(
    gpu_id: str,
    name: str,
    memory: int,
    secure: float,
    community: float,
    stock: dict[str, str],
    cuda: tuple[str, ...] = ("12.8",),
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": gpu_id,
        "name": name,
        "pool": None,
        "manufacturer": "NVIDIA",
        "memory": memory,
        "secure": secure > 0,
        "community": community > 0,
        "price": {"secure": secure, "community": community},
        "maxCount": {"secure": 8, "community": 8},
        "availability": "HIGH" if stock else "NONE",
        "dataCenters": [{"id": dc, "name": dc, "availability": band} for dc, band in stock.items()],
    }
    if cuda:
        answer["cudaVersions"] = [{"version": v, "available": bool(stock)} for v in cuda]
    return answer


def runpod_gpu_answer() -> dict[str, Any]:
    """What `GET /v2/catalog/gpus?include=AVAILABILITY&product=POD` answers (one cloud)."""
    return {
        "gpus": [
            _gpu(
                "NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, {"EU-RO-1": "HIGH", "US-TX-3": "LOW"}
            ),
            _gpu("NVIDIA L4", "L4", 24, 0.39, 0, {"US-KS-2": "HIGH"}, cuda=("12.4",)),
            _gpu(
                "NVIDIA A40", "A40", 48, 0.44, 0, {"EU-SE-1": "LOW", "US-KS-2": "HIGH"}, cuda=("12.4", "12.8")
            ),
            _gpu("NVIDIA RTX A6000", "RTX A6000", 48, 0.49, 0.33, {"EU-SE-1": "MEDIUM", "CA-MTL-1": "HIGH"}),
            _gpu(
                "NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 1.64, 1.19, {"EU-RO-1": "LOW", "US-KS-2": "MEDIUM"}
            ),
            _gpu(
                "NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, 0, {"US-KS-2": "HIGH"}, cuda=("12.8", "13.0")
            ),
            _gpu("NVIDIA H200", "H200 SXM", 141, 3.99, 0, {}),
            _gpu("unknown", "unknown", 0, 0, 0, {}),
        ]
    }


def _cpu(
    cpu_id: str, name: str, ram: float, price: float, stock: dict[str, str], top: int = 32
) -> dict[str, Any]:
    return {
        "id": cpu_id,
        "name": name,
        "group": "Gen 3",
        "vcpu": {"min": 2, "max": top},
        "ramGbPerVcpu": ram,
        "price": {"securePerVcpu": price, "serverlessPerVcpu": price},
        "availability": "HIGH" if stock else "NONE",
        "dataCenters": [{"id": dc, "name": dc, "availability": band} for dc, band in stock.items()],
    }


def runpod_cpu_answer() -> dict[str, Any]:
    """What `GET /v2/catalog/cpus?include=AVAILABILITY&product=POD` answers."""
    return {
        "cpus": [
            _cpu("cpu3c", "Compute-Optimized", 2.0, 0.03, {"EU-RO-1": "HIGH", "US-TX-3": "LOW"}),
            _cpu("cpu3g", "General Purpose", 4.0, 0.04, {"EU-RO-1": "MEDIUM", "US-KS-2": "HIGH"}),
            _cpu("cpu3m", "Memory-Optimized", 8.0, 0.06, {"US-KS-2": "LOW"}),
            _cpu("cpu5c", "Compute-Optimized", 2.0, 0.035, {"EU-SE-1": "HIGH"}, top=64),
        ]
    }


def cuda_detail(answer: dict[str, Any], where: dict[str, dict[str, dict[str, str]]]) -> dict[str, Any]:
    """Per CUDA version, `answer` narrowed as `cudaVersions=<v>` narrows it: `where[version][gpu]`
    is that GPU type's stock on machines of that version."""
    return {
        version: {
            "gpus": [
                {
                    **gpu,
                    "dataCenters": [
                        {"id": dc, "availability": band} for dc, band in stocks.get(gpu["id"], {}).items()
                    ],
                }
                for gpu in answer["gpus"]
            ]
        }
        for version, stocks in where.items()
    }


# Where each CUDA version is in stock (the rest of the stock of a type runs its other version).
CUDA_STOCK: dict[str, dict[str, dict[str, str]]] = {
    "12.4": {"NVIDIA L4": {"US-KS-2": "HIGH"}, "NVIDIA A40": {"EU-SE-1": "LOW"}},
    "12.8": {
        "NVIDIA GeForce RTX 4090": {"EU-RO-1": "HIGH", "US-TX-3": "LOW"},
        "NVIDIA A40": {"US-KS-2": "HIGH"},
        "NVIDIA RTX A6000": {"EU-SE-1": "MEDIUM", "CA-MTL-1": "HIGH"},
        "NVIDIA A100 80GB PCIe": {"EU-RO-1": "LOW", "US-KS-2": "MEDIUM"},
        "NVIDIA H100 80GB HBM3": {"US-KS-2": "HIGH"},
    },
    "13.0": {"NVIDIA H100 80GB HBM3": {"US-KS-2": "MEDIUM"}},
}


def sample_catalog() -> Catalog:
    answer = runpod_gpu_answer()
    detail = cuda_detail(answer, CUDA_STOCK)
    return build_catalog(
        gpus_by_cloud={"SECURE": answer, "COMMUNITY": answer},
        cuda_by_cloud={"SECURE": detail, "COMMUNITY": detail},
        cpus=runpod_cpu_answer(),
        datacenters={"dataCenters": [{"id": dc, "name": dc, "region": "X"} for dc in DATACENTERS]},
    )


def gpu_pod(
    *,
    annotations: dict[str, str] | None = None,
    gpus: int | None = 1,
    ports: list[int] | None = None,
    aimed: bool = True,
    owner_job: tuple[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "python:3.12"}
    if gpus is not None:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if ports:
        container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
    spec: dict[str, Any] = {"containers": [container]}
    if aimed:
        spec["nodeSelector"] = {"type": "virtual-kubelet"}
        spec["tolerations"] = [
            {"key": TAINT_KEY, "operator": "Equal", "value": TAINT_VALUE, "effect": "NoSchedule"}
        ]
    metadata: dict[str, Any] = {"name": "trainer", "namespace": "ml"}
    if annotations is not None:
        metadata["annotations"] = annotations
    if owner_job is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": owner_job[0],
                "uid": owner_job[1],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def review(
    pod: dict[str, Any] | None, *, operation: str = "CREATE", old: dict[str, Any] | None = None, uid: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "ml",
            "name": "trainer",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": pod,
            "oldObject": old,
            "dryRun": False,
        },
    }


def review_bytes(pod: dict[str, Any] | None, **kwargs: Any) -> bytes:
    return json.dumps(review(pod, **kwargs)).encode()


def apply_patch(document: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """A strict RFC 6902 add/remove/replace for the ops the webhook emits: fails where the apiserver
    would."""
    doc = json.loads(json.dumps(document))
    for op in patch:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent: Any = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "replace":
            index: Any = int(last) if isinstance(parent, list) else last
            if (index >= len(parent)) if isinstance(parent, list) else (index not in parent):
                raise AssertionError(f"replace of a missing {op['path']}")
            parent[index] = op["value"]
        else:
            raise AssertionError(f"unexpected op {op['op']}")
    return doc


def write_tls(directory: Path, *, name: str, ca: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """A CA (made once, or reused) and a leaf for localhost/127.0.0.1 with CN `name`, written as
    ca.crt, tls.crt, tls.key in `directory`. Returns the CA (cert, key) for the next rotation."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from kit.x509 import build_ca_certificate, build_leaf_certificate, new_ec_key, private_key_pem

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    if ca is None:
        ca_key = new_ec_key()
        ca_cert = build_ca_certificate(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")]),
            key=ca_key,
            not_before=now,
            not_after=now + dt.timedelta(days=1),
        )
        ca = (ca_cert, ca_key)
    ca_cert, ca_key = ca
    key = new_ec_key()
    leaf = build_leaf_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
        public_key=key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=now,
        not_after=now + dt.timedelta(days=1),
        extended_usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(private_key_pem(key))
    return ca
