"""`runpod-kubelet webhook` as a process: HTTPS only, flags, a catalog file, certificate rotation."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from webhook_samples import gpu_pod, review, runpod_gpu_answer, write_tls

_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Webhook:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tls_dir = tmp / "tls"
        self.ca = write_tls(self.tls_dir, name="first")
        catalog = tmp / "catalog.json"
        catalog.write_text(json.dumps(runpod_gpu_answer()))
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runpod_kubelet.cli",
                "webhook",
                f"--catalog-file={catalog}",
                f"--tls-cert-file={self.tls_dir / 'tls.crt'}",
                f"--tls-key-file={self.tls_dir / 'tls.key'}",
                f"--port={self.port}",
                "--host=127.0.0.1",
                "--max-gpu-price=2",
                "--datacenter-ids=EU-RO-1,US-KS-2",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=self.tls_dir / "ca.crt")
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        with self.client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"webhook exited: {self.process.communicate()[0]}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError("webhook did not become ready")

    def served_common_name(self) -> str:
        context = ssl.create_default_context(cafile=self.tls_dir / "ca.crt")
        with (
            socket.create_connection(("127.0.0.1", self.port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())

    def stop(self) -> str:
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Webhook]:
    server = Webhook(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_it_answers_reviews_over_https_with_a_catalog_file(webhook: Webhook) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", json=review(gpu_pod(), uid="u-42")).json()["response"]
        assert (answer["uid"], answer["allowed"], answer["patchType"]) == ("u-42", True, "JSONPatch")
        denied = client.post(
            "/mutate", json=review(gpu_pod(annotations={"runpod.io/max-gpu-price": "3"}))
        ).json()["response"]
        assert denied["status"]["code"] == 403
        assert "above the node cap $2/GPU-hour" in denied["status"]["message"]


def test_plain_http_is_not_served(webhook: Webhook) -> None:
    with httpx.Client() as client, pytest.raises(httpx.TransportError):
        client.get(f"http://127.0.0.1:{webhook.port}/healthz")


def test_a_rotated_certificate_is_served_without_a_restart(webhook: Webhook) -> None:
    assert webhook.served_common_name() == "CN=first"
    cert, key = webhook.tls_dir / "tls.crt", webhook.tls_dir / "tls.key"
    old_key = key.read_bytes()
    write_tls(webhook.tls_dir, name="second", ca=webhook.ca)
    # Half-way through a rotation (new certificate, old key) the previous pair keeps serving.
    new_key = key.read_bytes()
    key.write_bytes(old_key)
    assert webhook.served_common_name() == "CN=first"
    key.write_bytes(new_key)
    assert webhook.served_common_name() == "CN=second"
    with webhook.client() as client:
        assert client.get("/healthz").status_code == 200
    assert cert.exists()
    assert webhook.process.poll() is None


def test_missing_tls_flags_are_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runpod_kubelet.cli", "webhook", "--catalog-file=x.json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--tls-cert-file" in done.stderr


def test_an_unreadable_catalog_file_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    write_tls(tmp_path, name="unused")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runpod_kubelet.cli",
            "webhook",
            f"--catalog-file={bad}",
            f"--tls-cert-file={tmp_path / 'tls.crt'}",
            f"--tls-key-file={tmp_path / 'tls.key'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "must have 'gpuTypes'" in done.stderr


def test_settings_come_from_the_chart_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook.cli import load_webhook_settings

    for name, value in {
        "TLS_CERT_FILE": "/etc/tls/tls.crt",
        "TLS_KEY_FILE": "/etc/tls/tls.key",
        "PORT": "9443",
        "MAX_GPU_PRICE": "1.5",
        "DATACENTER_IDS": "EU-RO-1, US-KS-2",
        "NODE_NAME": "gpu-node",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_webhook_settings(["--max-gpu-price=0.8"])
    assert (settings.tls_cert_file, settings.tls_key_file, settings.port) == (
        "/etc/tls/tls.crt",
        "/etc/tls/tls.key",
        9443,
    )
    policy = settings.node_policy()
    assert (policy.node_name, policy.max_gpu_price, policy.allowed_datacenter_ids) == (
        "gpu-node",
        0.8,
        ("EU-RO-1", "US-KS-2"),
    )
