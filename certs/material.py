"""The webhook's TLS material as data, and the pure decisions about it.

Owns: generating an ECDSA P-256 CA and a serving certificate signed by it, reading material
back from PEM, the service DNS names a serving certificate must cover, and the renewal
decision (`plan_renewal` / `needs_renewal`). Every function takes the clock as an argument and
does no I/O; key generation is the only source of randomness.

Does not own: where the material is stored (`certs.secret_store`) or who trusts it
(`certs.ca_injection`).

Rotation without an outage: a serving certificate is renewed under the same CA, so the
`caBundle` the apiserver holds stays valid throughout. Only when the CA itself nears expiry (or
is unreadable) is a new CA minted; the old CA then stays in the trust bundle (`previous_ca_pem`)
until it expires, so webhook pods still serving the old leaf keep working while the Secret
volume catches up.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.x509 import build_ca_certificate, build_leaf_certificate, new_ec_key, private_key_pem

__all__ = [
    "CA_VALIDITY",
    "LEAF_VALIDITY",
    "Action",
    "Material",
    "MaterialError",
    "Renewal",
    "issue",
    "needs_renewal",
    "plan_renewal",
    "service_dns_names",
    "trust_bundle",
]

CA_VALIDITY: Final = timedelta(days=3650)
LEAF_VALIDITY: Final = timedelta(days=365)
# Renew once less than this fraction of the lifetime remains (cert-manager's 2/3 rule).
RENEW_REMAINING_FRACTION: Final = 1 / 3
# Backdate notBefore so a peer whose clock runs a little behind still accepts a fresh cert.
CLOCK_SKEW: Final = timedelta(minutes=5)
CA_COMMON_NAME: Final = "runpod-kubelet webhook CA"
DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"


class MaterialError(ValueError):
    """PEM that cannot be read as the material it claims to be; the message says which part."""


@dataclass(frozen=True)
class Material:
    """PEM-encoded CA and serving pair. `previous_ca_pem` is a retired CA still trusted."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    previous_ca_pem: bytes | None = None


class Action(enum.Enum):
    REUSE = "reuse"
    RENEW_LEAF = "renew-leaf"
    NEW_CA = "new-ca"


@dataclass(frozen=True)
class Renewal:
    action: Action
    reason: str


def service_dns_names(
    *, service: str, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> tuple[str, ...]:
    """Every name a client may dial the Service by; the apiserver uses `<svc>.<ns>.svc`."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )


def trust_bundle(material: Material) -> bytes:
    """What goes into `caBundle`: the current CA, then the retired one while it lives."""
    bundle = material.ca_cert_pem
    if material.previous_ca_pem:
        bundle = bundle.rstrip(b"\n") + b"\n" + material.previous_ca_pem
    return bundle


def plan_renewal(material: Material | None, *, now: datetime, names: Sequence[str]) -> Renewal:
    """Decide whether `material` can keep serving `names` at `now`, and if not, what to mint."""
    if material is None:
        return Renewal(Action.NEW_CA, "no material yet")
    try:
        ca_cert = _load_cert(material.ca_cert_pem, "CA certificate")
        ca_key = _load_key(material.ca_key_pem, "CA key")
    except MaterialError as exc:
        return Renewal(Action.NEW_CA, str(exc))
    if not _is_ca(ca_cert):
        return Renewal(Action.NEW_CA, "CA certificate is not a CA")
    if not _same_public_key(ca_cert, ca_key):
        return Renewal(Action.NEW_CA, "CA key does not match the CA certificate")
    if _due(ca_cert, now):
        return Renewal(Action.NEW_CA, f"CA expires {_not_after(ca_cert).isoformat()}")
    try:
        leaf = _load_cert(material.cert_pem, "serving certificate")
        leaf_key = _load_key(material.key_pem, "serving key")
    except MaterialError as exc:
        return Renewal(Action.RENEW_LEAF, str(exc))
    if not _same_public_key(leaf, leaf_key):
        return Renewal(Action.RENEW_LEAF, "serving key does not match the serving certificate")
    if not _signed_by(leaf, ca_cert):
        return Renewal(Action.RENEW_LEAF, "serving certificate is not signed by the current CA")
    missing = sorted(set(names) - set(_dns_names(leaf)))
    if missing:
        return Renewal(Action.RENEW_LEAF, f"serving certificate lacks SANs {', '.join(missing)}")
    if _not_before(leaf) > now + CLOCK_SKEW:
        return Renewal(Action.RENEW_LEAF, "serving certificate is not valid yet")
    if _due(leaf, now):
        return Renewal(Action.RENEW_LEAF, f"serving certificate expires {_not_after(leaf).isoformat()}")
    return Renewal(Action.REUSE, f"valid until {_not_after(leaf).isoformat()}")


def needs_renewal(material: Material | None, now: datetime, names: Sequence[str]) -> bool:
    return plan_renewal(material, now=now, names=names).action is not Action.REUSE


def issue(renewal: Renewal, current: Material | None, *, now: datetime, names: Sequence[str]) -> Material:
    """Mint what `renewal` calls for. REUSE returns `current` unchanged."""
    if renewal.action is Action.REUSE and current is not None:
        return current
    if renewal.action is Action.RENEW_LEAF and current is not None:
        ca_cert = _load_cert(current.ca_cert_pem, "CA certificate")
        ca_key = _load_key(current.ca_key_pem, "CA key")
        cert_pem, key_pem = _make_leaf(ca_cert=ca_cert, ca_key=ca_key, names=names, now=now)
        return Material(
            ca_cert_pem=current.ca_cert_pem,
            ca_key_pem=current.ca_key_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
            previous_ca_pem=_still_valid(current.previous_ca_pem, now),
        )
    ca_cert, ca_key = _make_ca(now=now)
    cert_pem, key_pem = _make_leaf(ca_cert=ca_cert, ca_key=ca_key, names=names, now=now)
    return Material(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_key_pem=private_key_pem(ca_key),
        cert_pem=cert_pem,
        key_pem=key_pem,
        previous_ca_pem=_still_valid(current.ca_cert_pem, now) if current is not None else None,
    )


# --- building -------------------------------------------------------------------------------


def _make_ca(*, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    cert = build_ca_certificate(
        subject=name, key=key, not_before=now - CLOCK_SKEW, not_after=now + CA_VALIDITY
    )
    return cert, key


def _make_leaf(
    *, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: Sequence[str], now: datetime
) -> tuple[bytes, bytes]:
    if not names:
        raise MaterialError("a serving certificate needs at least one DNS name")
    key = new_ec_key()
    # Go ignores the CN since 1.15; it is set only so people can read the certificate, and an
    # X.509 CN holds at most 64 characters while DNS names (the SANs) may be longer.
    readable = [n for n in names if len(n) <= 64] or [names[0][:64]]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, readable[min(2, len(readable) - 1)])])
    cert = build_leaf_certificate(
        subject=subject,
        public_key=key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=now - CLOCK_SKEW,
        not_after=min(now + LEAF_VALIDITY, _not_after(ca_cert)),
        extended_usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns_names=names,
    )
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


# --- reading --------------------------------------------------------------------------------


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise MaterialError(f"{what} is not a PEM certificate") from exc


def _load_key(pem: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise MaterialError(f"{what} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MaterialError(f"{what} is not an ECDSA P-256 key")
    return key


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    encoding, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(encoding, fmt) == key.public_key().public_bytes(encoding, fmt)


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def _not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def _due(cert: x509.Certificate, now: datetime) -> bool:
    lifetime = _not_after(cert) - _not_before(cert)
    return _not_after(cert) - now < lifetime * RENEW_REMAINING_FRACTION


def _still_valid(pem: bytes | None, now: datetime) -> bytes | None:
    if not pem:
        return None
    try:
        cert = _load_cert(pem, "previous CA")
    except MaterialError:
        return None
    return pem if _not_after(cert) > now else None
