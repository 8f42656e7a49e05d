"""The webhook's TLS material: what is minted, when it is renewed, and that TLS really accepts it."""

from __future__ import annotations

import asyncio
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.material import (
    CA_VALIDITY,
    LEAF_VALIDITY,
    Action,
    Material,
    Renewal,
    issue,
    needs_renewal,
    plan_renewal,
    service_dns_names,
    trust_bundle,
)
from runpod_kubelet.cli import main as cli_main

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NAMES = service_dns_names(service="rk-webhook", namespace="runpod")


def fresh(now: datetime = NOW, names: tuple[str, ...] = NAMES) -> Material:
    return issue(Renewal(Action.NEW_CA, "test"), None, now=now, names=names)


def certs_in(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def test_service_dns_names_cover_every_form_the_service_is_dialled_by() -> None:
    assert NAMES == (
        "rk-webhook",
        "rk-webhook.runpod",
        "rk-webhook.runpod.svc",
        "rk-webhook.runpod.svc.cluster.local",
    )


def test_generate_writes_an_ecdsa_p256_pair_signed_by_the_ca_with_every_service_name(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    code = cli_main(
        ["certs", "generate", "--service", "rk-webhook", "--namespace", "runpod", "--out", str(out)]
    )

    assert code == 0
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    leaf.verify_directly_issued_by(ca)
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == set(NAMES)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600


async def test_a_tls_client_trusting_the_ca_accepts_the_serving_certificate_for_the_svc_name(
    tmp_path: Path,
) -> None:
    material = fresh(now=datetime.now(UTC))
    (tmp_path / "tls.crt").write_bytes(material.cert_pem)
    (tmp_path / "tls.key").write_bytes(material.key_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_ctx = ssl.create_default_context(cadata=trust_bundle(material).decode())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="rk-webhook.runpod.svc"
        )
        assert await reader.read() == b"ok"
        writer.close()
        await writer.wait_closed()


def test_missing_material_needs_a_new_ca() -> None:
    assert plan_renewal(None, now=NOW, names=NAMES).action is Action.NEW_CA


def test_fresh_material_is_reused() -> None:
    material = fresh()
    assert plan_renewal(material, now=NOW + timedelta(days=30), names=NAMES).action is Action.REUSE
    assert not needs_renewal(material, NOW + timedelta(days=30), NAMES)


def test_serving_certificate_is_renewed_before_expiry_under_the_same_ca() -> None:
    material = fresh()
    later = NOW + LEAF_VALIDITY - timedelta(days=100)

    renewal = plan_renewal(material, now=later, names=NAMES)
    renewed = issue(renewal, material, now=later, names=NAMES)

    assert renewal.action is Action.RENEW_LEAF
    assert "expires" in renewal.reason
    assert renewed.cert_pem != material.cert_pem
    # The trust bundle the apiserver holds does not change, so a leaf rotation is outage-free.
    assert trust_bundle(renewed) == trust_bundle(material)
    assert plan_renewal(renewed, now=later, names=NAMES).action is Action.REUSE


def test_an_expired_serving_certificate_is_renewed() -> None:
    material = fresh()
    assert needs_renewal(material, NOW + LEAF_VALIDITY + timedelta(days=1), NAMES)


def test_a_ca_near_expiry_is_replaced_and_the_old_ca_stays_trusted_during_rotation() -> None:
    material = fresh()
    later = NOW + CA_VALIDITY - timedelta(days=300)

    renewal = plan_renewal(material, now=later, names=NAMES)
    rotated = issue(renewal, material, now=later, names=NAMES)

    assert renewal.action is Action.NEW_CA
    bundle = certs_in(trust_bundle(rotated))
    old_ca = x509.load_pem_x509_certificate(material.ca_cert_pem)
    new_ca = x509.load_pem_x509_certificate(rotated.ca_cert_pem)
    assert bundle == [new_ca, old_ca]
    x509.load_pem_x509_certificate(rotated.cert_pem).verify_directly_issued_by(new_ca)


def test_a_retired_ca_leaves_the_bundle_once_it_has_expired() -> None:
    material = fresh()
    rotated_at = NOW + CA_VALIDITY - timedelta(days=300)
    rotated = issue(Renewal(Action.NEW_CA, "t"), material, now=rotated_at, names=NAMES)
    assert rotated.previous_ca_pem == material.ca_cert_pem
    after_old_ca_expired = NOW + CA_VALIDITY + timedelta(days=1)

    renewed = issue(Renewal(Action.RENEW_LEAF, "t"), rotated, now=after_old_ca_expired, names=NAMES)

    assert renewed.previous_ca_pem is None
    assert len(certs_in(trust_bundle(renewed))) == 1


def test_a_service_renamed_or_moved_gets_a_certificate_for_its_new_names() -> None:
    material = fresh()
    moved = service_dns_names(service="rk-webhook", namespace="elsewhere")

    renewal = plan_renewal(material, now=NOW, names=moved)

    assert renewal.action is Action.RENEW_LEAF
    assert "rk-webhook.elsewhere.svc" in renewal.reason


def test_a_serving_key_that_does_not_match_its_certificate_is_replaced() -> None:
    one, other = fresh(), fresh()
    mixed = Material(one.ca_cert_pem, one.ca_key_pem, one.cert_pem, other.key_pem)
    assert plan_renewal(mixed, now=NOW, names=NAMES).action is Action.RENEW_LEAF


def test_a_serving_certificate_from_another_ca_is_replaced() -> None:
    one, other = fresh(), fresh()
    foreign = Material(one.ca_cert_pem, one.ca_key_pem, other.cert_pem, other.key_pem)
    renewal = plan_renewal(foreign, now=NOW, names=NAMES)
    assert renewal.action is Action.RENEW_LEAF
    assert "not signed by the current CA" in renewal.reason


def test_unreadable_ca_material_is_replaced_whole() -> None:
    material = fresh()
    broken = Material(b"not pem", material.ca_key_pem, material.cert_pem, material.key_pem)
    mismatched = Material(material.ca_cert_pem, fresh().ca_key_pem, material.cert_pem, material.key_pem)
    assert plan_renewal(broken, now=NOW, names=NAMES).action is Action.NEW_CA
    assert plan_renewal(mismatched, now=NOW, names=NAMES).action is Action.NEW_CA


def test_the_serving_certificate_never_outlives_its_ca() -> None:
    material = fresh()
    near_ca_end = NOW + CA_VALIDITY - timedelta(days=10)
    renewed = issue(Renewal(Action.RENEW_LEAF, "t"), material, now=near_ca_end, names=NAMES)
    leaf = x509.load_pem_x509_certificate(renewed.cert_pem)
    ca = x509.load_pem_x509_certificate(material.ca_cert_pem)
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc


def test_service_names_longer_than_a_common_name_allows_still_get_a_certificate() -> None:
    long_names = service_dns_names(service="r" * 40, namespace="n" * 40)

    material = fresh(names=long_names)

    assert plan_renewal(material, now=NOW, names=long_names).action is Action.REUSE
