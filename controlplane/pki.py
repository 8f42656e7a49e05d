"""The throw-away PKI of a local control plane, made with `cryptography`.

Owns key and certificate generation only: a CA, leaf certificates signed by it, and PEM
encoding. Every key is ECDSA P-256 (kube-apiserver, etcd clients and service-account tokens all
accept it, and generating one takes microseconds where RSA takes tens of milliseconds, which
keeps control-plane start-up fast). `notBefore` is backdated so clocks a little apart still
agree. Which files the control plane needs, and where they go, is decided in `running`.

Tests use `new_ca` and `issue` too, e.g. for a webhook serving certificate whose SAN is
`<service>.<namespace>.svc`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.x509 import build_ca_certificate, build_leaf_certificate, new_ec_key, private_key_pem

__all__ = ["KeyPair", "issue", "load_pair", "new_ca", "new_key", "private_pem", "public_pem", "write_pair"]

_BACKDATE: Final = datetime.timedelta(minutes=5)
_VALIDITY: Final = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_pem(self.key)


new_key = new_ec_key


private_pem = private_key_pem


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_ca(common_name: str) -> KeyPair:
    """A self-signed CA allowed to sign leaf certificates (path length 0)."""
    key = new_key()
    now = _now()
    cert = build_ca_certificate(
        subject=_name(common_name), key=key, not_before=now - _BACKDATE, not_after=now + _VALIDITY
    )
    return KeyPair(cert=cert, key=key)


def issue(
    ca: KeyPair,
    *,
    common_name: str,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
    client: bool = False,
) -> KeyPair:
    """A leaf certificate signed by `ca`.

    `server` adds the serverAuth usage (Go verifies SANs only, never the CN, so serving
    certificates need `dns_names`/`ip_addresses`); `client` adds clientAuth, and for client
    certificates the apiserver reads the user from the CN and the groups from `organizations`.
    """
    key = new_key()
    now = _now()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = build_leaf_certificate(
        subject=_name(common_name, organizations),
        public_key=key.public_key(),
        ca_cert=ca.cert,
        ca_key=ca.key,
        not_before=now - _BACKDATE,
        not_after=now + _VALIDITY,
        extended_usages=usages,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )
    return KeyPair(cert=cert, key=key)


def write_pair(pair: KeyPair, directory: Path, stem: str) -> tuple[Path, Path]:
    """Writes `<stem>.crt` and `<stem>.key` (mode 0600) and returns their paths."""
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(pair.cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_bytes(pair.key_pem)
    return cert_path, key_path


def load_pair(cert_file: Path, key_file: Path) -> KeyPair:
    """Reads a pair back (e.g. the cluster CA, to sign a node's certificates)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_file} is not an EC key")
    return KeyPair(cert=cert, key=key)
