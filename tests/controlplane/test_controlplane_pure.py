"""Pure parts of the control-plane package and kit.kube: no processes, no network."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane import BinariesMissing, binaries_dir, pki
from controlplane.binaries import BIN_ENV, COMPONENTS, read_versions
from controlplane.flags import Files, Ports, apiserver_args, controller_manager_args, etcd_args
from kit.kube import (
    AlreadyExists,
    Backoff,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    TransientKubeError,
    diff_listing,
    error_from_status,
    object_key,
)

PORTS = Ports(etcd_client=1, etcd_peer=2, apiserver=3, scheduler=4, controller_manager=5)


def test_versions_pin_names_the_kubernetes_and_etcd_releases() -> None:
    versions = read_versions()
    assert versions["K8S_VERSION"].startswith("v1.")
    assert versions["ETCD_VERSION"].startswith("v3.")


def test_binaries_override_must_hold_every_component(tmp_path: Path) -> None:
    for name in COMPONENTS[:-1]:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    with pytest.raises(BinariesMissing, match=COMPONENTS[-1]):
        binaries_dir(build=False, environ={BIN_ENV: str(tmp_path)})
    (tmp_path / COMPONENTS[-1]).write_text("#!/bin/sh\n")
    (tmp_path / COMPONENTS[-1]).chmod(0o755)
    assert binaries_dir(build=False, environ={BIN_ENV: str(tmp_path)}) == tmp_path


def test_missing_cache_without_build_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(BinariesMissing, match="make control-plane"):
        binaries_dir(build=False, environ={"RUNPOD_KUBELET_CACHE": str(tmp_path)})


def test_serving_certificate_carries_sans_and_chains_to_its_ca() -> None:
    ca = pki.new_ca("test-ca")
    leaf = pki.issue(
        ca, common_name="svc", dns_names=("svc.ns.svc",), ip_addresses=("127.0.0.1",), server=True
    )
    sans = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    leaf.cert.verify_directly_issued_by(ca.cert)
    assert leaf.cert.not_valid_before_utc < datetime.datetime.now(datetime.UTC)


def test_client_certificate_names_user_in_cn_and_groups_in_o() -> None:
    ca = pki.new_ca("test-ca")
    client = pki.issue(ca, common_name="admin", organizations=("system:masters",), client=True)
    subject = client.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"


def test_written_private_keys_are_readable_only_by_the_owner(tmp_path: Path) -> None:
    cert_path, key_path = pki.write_pair(pki.new_ca("ca"), tmp_path, "ca")
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600


def test_components_listen_on_the_chosen_loopback_ports_only(tmp_path: Path) -> None:
    files = Files(tmp_path)
    etcd = etcd_args(tmp_path, files, PORTS)
    assert "--listen-client-urls=http://127.0.0.1:1" in etcd
    assert "--listen-peer-urls=http://127.0.0.1:2" in etcd
    apiserver = apiserver_args(tmp_path, files, PORTS)
    assert "--secure-port=3" in apiserver
    assert "--bind-address=127.0.0.1" in apiserver
    assert "--enable-aggregator-routing=true" in apiserver
    assert not any(
        arg.startswith(("--enable-admission-plugins", "--disable-admission-plugins")) for arg in apiserver
    )
    manager = controller_manager_args(tmp_path, files, PORTS)
    assert "--use-service-account-credentials=true" in manager
    assert f"--service-account-private-key-file={files.sa_private}" in manager


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (403, "Forbidden", Forbidden),
        (429, "TooManyRequests", TransientKubeError),
        (503, "ServiceUnavailable", TransientKubeError),
        (400, "BadRequest", KubeError),
    ],
)
def test_status_codes_map_to_the_error_callers_handle(
    status: int, reason: str, expected: type[KubeError]
) -> None:
    error = error_from_status(status, {"reason": reason, "message": "m"})
    assert type(error) is expected
    assert (error.status, error.reason, error.message) == (status, reason, "m")


def test_rate_limit_keeps_the_servers_retry_hint() -> None:
    error = error_from_status(429, {}, retry_after=7)
    assert isinstance(error, TransientKubeError)
    assert error.retry_after == 7


def test_backoff_grows_exponentially_to_its_cap_and_honours_retry_after() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(1, retry_after=3.0) == 3.0
    assert backoff.delay(1, retry_after=100.0) == 4.0


def test_object_keys_are_namespace_slash_name_or_just_name_when_cluster_scoped() -> None:
    assert object_key({"metadata": {"namespace": "ns", "name": "p"}}) == "ns/p"
    assert object_key({"metadata": {"name": "node-1"}}) == "node-1"


def _obj(name: str, rv: str) -> dict[str, object]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}


def test_relist_diff_reports_added_changed_and_vanished_objects_only() -> None:
    old = {"ns/same": _obj("same", "1"), "ns/changed": _obj("changed", "2"), "ns/gone": _obj("gone", "3")}
    new = {"ns/same": _obj("same", "1"), "ns/changed": _obj("changed", "9"), "ns/new": _obj("new", "10")}
    events = [(kind, object_key(obj)) for kind, obj in diff_listing(old, new)]
    assert sorted(events) == [("ADDED", "ns/new"), ("DELETED", "ns/gone"), ("MODIFIED", "ns/changed")]
