"""The kubelet API's serving certificate: self-signed names, the CSR a kubelet sends, rotation."""

from __future__ import annotations

import base64
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from binder.kubelet_api.tls import (
    SERVING_SIGNER,
    ServingContext,
    csr_manifest,
    csr_state,
    renewal_delay,
    self_signed_pair,
    serving_csr,
    serving_names,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_serving_names_cover_node_name_address_and_localhost() -> None:
    assert serving_names(node_name="virtual-runpod", node_address="10.1.2.3") == (
        ["virtual-runpod", "localhost"],
        ["10.1.2.3", "127.0.0.1"],
    )
    # A DNS address is a DNS name; duplicates collapse.
    assert serving_names(node_name="n", node_address="127.0.0.1") == (["n", "localhost"], ["127.0.0.1"])
    assert serving_names(node_name="n", node_address="binder.example")[0] == [
        "n",
        "binder.example",
        "localhost",
    ]


def test_the_self_signed_certificate_is_ecdsa_p256_for_the_node() -> None:
    pair = self_signed_pair(node_name="virtual-runpod", node_address="10.1.2.3", now=NOW)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["virtual-runpod", "localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3", "127.0.0.1"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_the_csr_is_what_the_kubelet_serving_signer_accepts() -> None:
    csr_pem, key_pem = serving_csr(node_name="virtual-runpod", node_address="10.1.2.3")
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:virtual-runpod"
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:nodes"
    ]
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert sans.get_values_for_type(x509.DNSName) == ["virtual-runpod"]
    assert b"PRIVATE KEY" in key_pem
    manifest = csr_manifest(node_name="virtual-runpod", csr_pem=csr_pem)
    assert manifest["spec"]["signerName"] == SERVING_SIGNER == "kubernetes.io/kubelet-serving"
    assert manifest["spec"]["usages"] == ["digital signature", "server auth"]
    assert base64.b64decode(manifest["spec"]["request"]) == csr_pem


def test_csr_state_reads_pending_issued_and_denied() -> None:
    assert csr_state({}).phase == "pending"
    approved_only = {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    assert csr_state(approved_only).phase == "pending"
    issued = {
        "status": {"conditions": [{"type": "Approved"}], "certificate": base64.b64encode(b"PEM").decode()}
    }
    assert csr_state(issued).phase == "issued" and csr_state(issued).certificate_pem == b"PEM"
    denied = {"status": {"conditions": [{"type": "Denied", "status": "True", "message": "no thanks"}]}}
    assert (csr_state(denied).phase, csr_state(denied).message) == ("denied", "no thanks")


def test_renewal_comes_at_eighty_percent_of_the_lifetime() -> None:
    start = NOW - timedelta(days=10)
    assert renewal_delay(not_before=start, not_after=start + timedelta(days=100), now=NOW) == 70 * 86400
    assert renewal_delay(not_before=start, not_after=start + timedelta(days=5), now=NOW) == 0


def test_the_context_asks_for_client_certificates_only_with_a_client_ca(tmp_path: Path) -> None:
    ca_file = tmp_path / "client-ca.crt"
    ca_file.write_bytes(self_signed_pair(node_name="ca", node_address="127.0.0.1", now=NOW).cert_pem)
    with_ca = ServingContext(client_ca_file=str(ca_file))
    without = ServingContext(client_ca_file=None)
    try:
        assert with_ca.context.verify_mode == ssl.CERT_OPTIONAL
        assert without.context.verify_mode == ssl.CERT_NONE
        assert with_ca.context.minimum_version >= ssl.TLSVersion.TLSv1_2
    finally:
        with_ca.close()
        without.close()


def test_installing_a_certificate_leaves_no_key_on_disk() -> None:
    serving = ServingContext(client_ca_file=None)
    try:
        serving.install(self_signed_pair(node_name="n", node_address="127.0.0.1", now=NOW))
        assert serving.current is not None
        assert list(serving._dir.iterdir()) == []
    finally:
        serving.close()
