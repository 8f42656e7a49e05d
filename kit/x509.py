"""The pieces of ECDSA P-256 certificate minting every part of the project shares.

Three places mint certificates: the webhook's CA and serving pair (`certs.material`), the
kubelet API's self-signed pair and CSR (`binder.kubelet_api.tls`), and the local control
plane's PKI (`controlplane.pki`); test and benchmark helpers mint throw-away pairs. They differ
in names, lifetimes and extended usages; what they share lives here, so a CA, a leaf or a key
is built one way only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CA_KEY_USAGE",
    "LEAF_KEY_USAGE",
    "build_ca_certificate",
    "build_leaf_certificate",
    "new_ec_key",
    "private_key_pem",
]


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    # ECDSA keys sign; they never encipher keys (that is an RSA-only usage).
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


CA_KEY_USAGE: Final = _key_usage(signs_certificates=True)
LEAF_KEY_USAGE: Final = _key_usage(signs_certificates=False)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, the form Go, uvicorn and Python's ssl all load."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def build_ca_certificate(
    *, subject: x509.Name, key: ec.EllipticCurvePrivateKey, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_leaf_certificate(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    extended_usages: Sequence[x509.ObjectIdentifier] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
) -> x509.Certificate:
    """An end-entity certificate signed by the CA. Go verifies SANs only, never the CN, so a
    serving certificate needs `dns_names` or `ip_addresses`."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(LEAF_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if extended_usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_usages)), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())
