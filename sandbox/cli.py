"""`runpod-kubelet sandbox`: serve the RunPod emulator on a port until interrupted.

    runpod-kubelet sandbox --port 8089 --api-key dev-key [--seed 7] [--scenario faults.json]
                           [--host 127.0.0.1] [--tls-cert-file F --tls-key-file F]
                           [--ssh-host 127.0.0.1] [--ssh-advertise-host ADDR] [--no-ssh]

The key comes from `--api-key`, else `RUNPOD_API_KEY`. With `--port 0` a free port is chosen.
Once listening, one line goes to stdout: `sandbox listening on <url>` (scripts read the URL
from it). Admin endpoints: `<url>/_sandbox` (loopback clients only).

Running pods that expose 22/tcp serve SSH (`sandbox.sshd`), each on a port of its own at
`--ssh-host`, reported in `ssh.direct` as `--ssh-advertise-host` (in a cluster: the sandbox
pod's IP, so that the binder can reach it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kit.logs import configure_logging
from sandbox.account import Account
from sandbox.app import free_socket, make_server
from sandbox.scenario import load_scenario
from sandbox.sshd import SshdSettings

__all__ = ["SandboxSettings", "main"]


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="runpod-kubelet sandbox",
        populate_by_name=True,
        env_prefix="SANDBOX_",
        extra="ignore",
    )

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8089, ge=0, le=65535, description="port to listen on; 0 = any free port")
    api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("api-key", "api_key", "RUNPOD_API_KEY"),
        description="the bearer key clients must send (else RUNPOD_API_KEY)",
    )
    seed: int = Field(default=0, description="seed of pod ids, IPs and ports (same seed, same run)")
    scenario: Path | None = Field(
        default=None, description="JSON scenario: timings, quotas, stock, faults, pods"
    )
    tls_cert_file: Path | None = Field(default=None, description="serve HTTPS with this certificate")
    tls_key_file: Path | None = Field(default=None, description="key of --tls-cert-file")
    log_level: str = Field(default="info", description="debug, info, warn or error")
    ssh: bool = Field(default=True, description="serve SSH for running pods that expose 22/tcp")
    ssh_host: str = Field(default="127.0.0.1", description="address the pods' sshd listen on")
    ssh_advertise_host: str | None = Field(
        default=None,
        description="address reported in ssh.direct.host; default: --ssh-host (127.0.0.1 for a wildcard)",
    )


def main(argv: list[str]) -> int:
    try:
        settings = SandboxSettings(_cli_parse_args=argv)
    except ValidationError as exc:
        print(f"runpod-kubelet sandbox: {exc}", file=sys.stderr)
        return 2
    if not settings.api_key:
        print("runpod-kubelet sandbox: no API key: pass --api-key or set RUNPOD_API_KEY", file=sys.stderr)
        return 2
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        print("runpod-kubelet sandbox: --tls-cert-file and --tls-key-file go together", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, secrets=(settings.api_key,))
    try:
        scenario = load_scenario(settings.scenario)
    except (OSError, ValueError) as exc:
        print(f"runpod-kubelet sandbox: cannot read scenario {settings.scenario}: {exc}", file=sys.stderr)
        return 2
    sshd = SshdSettings(bind_host=settings.ssh_host, advertise_host=settings.ssh_advertise_host)
    account = Account(
        api_keys=[settings.api_key],
        scenario=scenario,
        seed=settings.seed,
        sshd=sshd if settings.ssh else None,
    )
    try:
        sock = free_socket(settings.host, settings.port)
    except OSError as exc:
        print(
            f"runpod-kubelet sandbox: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    tls = {}
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}
    level = {"warn": "warning"}.get(settings.log_level.lower(), settings.log_level.lower())
    server = make_server(account, log_level=level, **tls)
    scheme = "https" if tls else "http"
    host, port = sock.getsockname()[:2]
    # The socket already listens, so the URL is usable the moment this line is read.
    print(f"sandbox listening on {scheme}://{host}:{port}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
