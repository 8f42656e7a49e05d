"""`runpod-kubelet sandbox` serves the emulator as a process, over HTTP or HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.cli import main


@contextmanager
def sandbox_process(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    command = [sys.executable, "-m", "runpod_kubelet.cli", "sandbox", "--port", "0", *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("sandbox listening on "), first + (proc.stderr.read() if proc.stderr else "")
        yield first.removeprefix("sandbox listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_serves_with_the_key_from_the_environment() -> None:
    with sandbox_process(env={"RUNPOD_API_KEY": "env-key"}) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/v2/pods", headers={"Authorization": "Bearer env-key"}).json() == {"pods": []}
        assert httpx.get(f"{url}/v2/pods").status_code == 401


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with sandbox_process("--api-key", "k1", "--tls-cert-file", str(cert), "--tls-key-file", str(key)) as url:
        assert url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(
            f"{url}/v2/catalog/datacenters", headers={"Authorization": "Bearer k1"}, verify=trust
        )
        assert answer.status_code == 200 and answer.json()["dataCenters"]


def test_refuses_to_start_without_a_key_or_with_half_tls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    assert main(["--port", "0"]) == 2
    assert "RUNPOD_API_KEY" in capsys.readouterr().err
    assert main(["--api-key", "k", "--tls-cert-file", "x.crt"]) == 2


def _running_pod(url: str) -> dict[str, object]:
    headers = {"Authorization": "Bearer k1"}
    body = {
        "name": "p",
        "image": "runpod/base:1",
        "gpu": {"id": "NVIDIA A40", "count": 1},
        "ports": ["22/tcp"],
    }
    created = httpx.post(f"{url}/v2/pods", json=body, headers=headers).json()
    for _ in range(100):
        pod: dict[str, object] = httpx.get(f"{url}/v2/pods/{created['id']}", headers=headers).json()
        if pod["status"] == "RUNNING":
            return pod
        time.sleep(0.1)
    raise AssertionError("the pod never ran")


def test_ssh_direct_names_the_advertised_host_and_no_ssh_serves_none() -> None:
    with sandbox_process(
        "--api-key", "k1", "--ssh-host", "127.0.0.1", "--ssh-advertise-host", "192.0.2.9"
    ) as url:
        advertised = _running_pod(url)
        state = httpx.get(f"{url}/_sandbox/state").json()["pods"][0]["sshd"]
    with sandbox_process("--api-key", "k1", "--no-ssh") as url:
        unserved = _running_pod(url)
        unserved_state = httpx.get(f"{url}/_sandbox/state").json()["pods"][0]["sshd"]

    assert advertised["ssh"]["direct"]["host"] == "192.0.2.9"  # type: ignore[index]
    assert state["serving"] is True and state["port"] == advertised["ssh"]["direct"]["port"]  # type: ignore[index]
    assert unserved_state is None and unserved["ssh"]["direct"]["host"] != "192.0.2.9"  # type: ignore[index]
