"""The kubelet API's TLS: its serving certificate and how client certificates are checked.

Owns three ways to a serving certificate, in order of preference:
- files given by the operator (`kubelet_tls_cert_file`/`kubelet_tls_key_file`), loaded as is;
- a certificate issued by the cluster through a CSR with signer
  `kubernetes.io/kubelet-serving` (CN `system:node:<node>`, O `system:nodes`, SANs node IP and
  name, usages digital signature + server auth), as a real kubelet with serving-cert rotation
  does; an administrator (or an approver controller) must approve it. Until it is issued the
  server uses the self-signed one, and it is renewed at 80 % of its lifetime;
- self-signed (ECDSA P-256, SANs node name, node address, localhost and 127.0.0.1).

The apiserver only verifies a kubelet's serving certificate when started with
`--kubelet-certificate-authority`; without it (the default, and our local control plane) the
self-signed one serves `kubectl logs`. With it, only the CSR way works.

Client certificates: the context asks for one without requiring it (CERT_OPTIONAL) and, when a
client CA is configured, OpenSSL refuses any certificate that CA did not sign; the handler then
reads the verified subject (`auth.identity_from_certificate`). Callers without a certificate
authenticate with a bearer token. Without a client CA no certificate is asked for at all.

Pure: names, certificate and CSR building, CSR status reading, renewal timing. I/O:
`ServingContext` (files in a private directory, loaded into the live SSL context: new
handshakes use the new certificate, no restart) and `request_serving_certificate`.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio.client import ApiClient

from kit.kube import get_json, post_json
from kit.x509 import new_ec_key, private_key_pem

__all__ = [
    "SERVING_SIGNER",
    "CsrError",
    "CsrImpossible",
    "CsrState",
    "ServingContext",
    "ServingPair",
    "csr_manifest",
    "csr_state",
    "renewal_delay",
    "request_serving_certificate",
    "self_signed_pair",
    "serving_csr",
    "serving_names",
]

log = logging.getLogger(__name__)

SERVING_SIGNER: Final = "kubernetes.io/kubelet-serving"
SELF_SIGNED_VALIDITY: Final = timedelta(days=365)
# Clocks a little apart must still agree the certificate is valid.
BACKDATE: Final = timedelta(minutes=5)
RENEW_AT: Final = 0.8
MAX_CN: Final = 64
CSR_POLL: Final = 1.0
_CSR_PATH: Final = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


class CsrError(RuntimeError):
    """The CSR was denied or failed, or was not issued in time."""


class CsrImpossible(CsrError):
    """This node cannot ask for a serving certificate at all (asking again will not help)."""


@dataclass(frozen=True, slots=True)
class ServingPair:
    cert_pem: bytes
    key_pem: bytes
    not_before: datetime
    not_after: datetime


def serving_names(*, node_name: str, node_address: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the serving certificate must name."""
    dns: list[str] = []
    ips: list[str] = []
    for candidate in (node_name, node_address, "localhost", "127.0.0.1"):
        if not candidate:
            continue
        try:
            address = str(ipaddress.ip_address(candidate))
        except ValueError:
            if candidate not in dns:
                dns.append(candidate)
        else:
            if address not in ips:
                ips.append(address)
    return dns, ips


def _alt_names(dns: list[str], ips: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return x509.SubjectAlternativeName(names)


def self_signed_pair(*, node_name: str, node_address: str, now: datetime) -> ServingPair:
    key = new_ec_key()
    dns, ips = serving_names(node_name=node_name, node_address=node_address)
    # A CN holds at most 64 characters, a node name up to 253; clients check SANs, not the CN.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name[: MAX_CN - 12]}@kubelet-api")])
    not_before, not_after = now - BACKDATE, now + SELF_SIGNED_VALIDITY
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_alt_names(dns, ips), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServingPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_key_pem(key),
        not_before=not_before,
        not_after=not_after,
    )


def serving_csr(*, node_name: str, node_address: str) -> tuple[bytes, bytes]:
    """(CSR PEM, key PEM) as a kubelet asks for its serving certificate."""
    common_name = f"system:node:{node_name}"
    if len(common_name) > MAX_CN:
        raise CsrError(
            f"node name {node_name!r} is too long for a serving CSR (CN {common_name!r} > {MAX_CN})"
        )
    key = new_ec_key()
    dns, ips = serving_names(node_name=node_name, node_address=node_address)
    # The signer wants node names and addresses, not localhost.
    dns = [d for d in dns if d != "localhost"]
    ips = [i for i in ips if i != "127.0.0.1" or node_address == "127.0.0.1"]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(_alt_names(dns, ips), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def csr_manifest(*, node_name: str, csr_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": f"{node_name}-kubelet-serving-"},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": SERVING_SIGNER,
            # ECDSA key: no key encipherment (the signer accepts exactly this set for non-RSA keys).
            "usages": ["digital signature", "server auth"],
        },
    }


CsrPhase = Literal["pending", "issued", "denied", "failed"]


@dataclass(frozen=True, slots=True)
class CsrState:
    phase: CsrPhase
    certificate_pem: bytes = b""
    message: str = ""


def csr_state(csr: Mapping[str, Any]) -> CsrState:
    """Where a CSR object (raw dict) stands."""
    status: Mapping[str, Any] = csr.get("status") or {}
    for condition in status.get("conditions") or []:
        kind = condition.get("type")
        if kind in ("Denied", "Failed") and condition.get("status", "True") == "True":
            text = condition.get("message") or condition.get("reason") or kind
            return CsrState("denied" if kind == "Denied" else "failed", message=str(text))
    certificate = status.get("certificate")
    if certificate:
        return CsrState("issued", certificate_pem=base64.b64decode(certificate))
    return CsrState("pending")


def certificate_validity(cert_pem: bytes) -> tuple[datetime, datetime]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def renewal_delay(*, not_before: datetime, not_after: datetime, now: datetime) -> float:
    """Seconds until the certificate should be replaced (at 80 % of its lifetime)."""
    renew_at = not_before + (not_after - not_before) * RENEW_AT
    return max(0.0, (renew_at - now).total_seconds())


class ServingContext:
    """The server's SSL context and the serving certificate loaded into it.

    Files live in a private temporary directory (the ssl module loads keys only from files);
    `close()` removes it.
    """

    def __init__(self, *, client_ca_file: str | None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_ca_file:
            context.load_verify_locations(cafile=client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        else:
            context.verify_mode = ssl.CERT_NONE
        self.context = context
        self._dir = Path(tempfile.mkdtemp(prefix="rpvk-kubelet-api-"))
        self._generation = 0
        self.current: ServingPair | None = None

    def load_files(self, *, cert_file: str, key_file: str) -> None:
        self.context.load_cert_chain(certfile=cert_file, keyfile=key_file)
        pem = Path(cert_file).read_bytes()
        not_before, not_after = certificate_validity(pem)
        self.current = ServingPair(cert_pem=pem, key_pem=b"", not_before=not_before, not_after=not_after)

    def install(self, pair: ServingPair) -> None:
        self._generation += 1
        cert_path = self._dir / f"serving-{self._generation}.crt"
        key_path = self._dir / f"serving-{self._generation}.key"
        cert_path.write_bytes(pair.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pair.key_pem)
        self.context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
        # The context holds the material now; the key does not stay on disk.
        cert_path.unlink(missing_ok=True)
        key_path.unlink(missing_ok=True)
        self.current = pair

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


async def request_serving_certificate(
    api: ApiClient,
    *,
    node_name: str,
    node_address: str,
    wait_limit: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ServingPair:
    """Create a kubelet-serving CSR and wait (≤ `wait_limit` s) until it is approved and signed.

    Raises `CsrError` (denied, failed, too slow) or `kit.kube.KubeError` (the API refused)."""
    csr_pem, key_pem = serving_csr(node_name=node_name, node_address=node_address)
    created = await post_json(api, _CSR_PATH, csr_manifest(node_name=node_name, csr_pem=csr_pem))
    name = str(created["metadata"]["name"])
    log.info(
        "requested a kubelet serving certificate: approve it with `kubectl certificate approve %s`", name
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_limit
    while True:
        state = csr_state(await get_json(api, f"{_CSR_PATH}/{name}"))
        if state.phase == "issued":
            not_before, not_after = certificate_validity(state.certificate_pem)
            log.info("kubelet serving certificate %s issued, valid until %s", name, not_after.isoformat())
            return ServingPair(
                cert_pem=state.certificate_pem, key_pem=key_pem, not_before=not_before, not_after=not_after
            )
        if state.phase in ("denied", "failed"):
            raise CsrError(f"CSR {name} {state.phase}: {state.message}")
        if loop.time() >= deadline:
            raise CsrError(f"CSR {name} not approved and issued within {wait_limit:g} s")
        await sleep(CSR_POLL)


def utc_now() -> datetime:
    return datetime.now(UTC)
