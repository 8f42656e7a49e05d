"""`runpod-kubelet certs {generate,ensure}`: the webhook's TLS material, locally or in a cluster.

- `generate --service S --namespace N --out DIR` writes `ca.crt`, `tls.crt`, `tls.key` (no
  cluster needed; for running the webhook locally).
- `ensure --namespace N --secret-name X --service S [--webhook-config-names A,B]` makes the
  Secret hold valid material (reusing it when valid, renewing before expiry) and writes the CA
  into `caBundle` of the named webhook configurations. Idempotent and safe to run twice at once;
  the chart's hook Jobs and renewal CronJob run exactly this.

Exit codes: 0 done, 1 a Kubernetes call failed (message on stderr), 2 bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from certs.ca_injection import FailurePolicy, inject_ca_bundle
from certs.material import Action, Renewal, issue, service_dns_names, trust_bundle
from certs.secret_store import ensure_material
from contract.policy import parse_id_list
from kit.kube import KubeError, load_api_client
from kit.logs import configure_logging

__all__ = ["main"]

log = logging.getLogger("certs")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runpod-kubelet certs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service", required=True, help="the webhook Service's name")
        p.add_argument(
            "--namespace",
            default=os.environ.get("POD_NAMESPACE"),
            help="the Service's namespace (default: $POD_NAMESPACE)",
        )
        p.add_argument("--cluster-domain", default="cluster.local", help="default: cluster.local")

    gen = sub.add_parser("generate", help="write ca.crt, tls.crt, tls.key to a directory")
    common(gen)
    gen.add_argument("--out", required=True, type=Path, help="directory to write into (created)")

    ens = sub.add_parser("ensure", help="keep the Secret valid and patch caBundle (in-cluster)")
    common(ens)
    ens.add_argument("--secret-name", required=True, help="Secret holding the material")
    ens.add_argument(
        "--webhook-config-names",
        default="",
        help="comma list of Mutating/ValidatingWebhookConfiguration names to patch",
    )
    ens.add_argument(
        "--allow-missing-configs",
        action="store_true",
        help="skip named configurations that do not exist yet (pre-install hook)",
    )
    ens.add_argument(
        "--failure-policy", choices=("Fail", "Ignore"), default=None, help="also set failurePolicy"
    )
    ens.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    ens.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"))
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.namespace:
        parser.error("--namespace is required (or set POD_NAMESPACE)")
    names = service_dns_names(
        service=args.service, namespace=args.namespace, cluster_domain=args.cluster_domain
    )
    if args.command == "generate":
        return _generate(out=args.out, names=names)
    configure_logging(args.log_level)
    try:
        return asyncio.run(
            _ensure(
                kubeconfig=args.kubeconfig,
                namespace=args.namespace,
                secret_name=args.secret_name,
                names=names,
                config_names=parse_id_list(args.webhook_config_names),
                allow_missing=args.allow_missing_configs,
                failure_policy=args.failure_policy,
            )
        )
    except KubeError as exc:
        print(f"runpod-kubelet certs: {exc}", file=sys.stderr)
        return 1


def _generate(*, out: Path, names: Sequence[str]) -> int:
    material = issue(Renewal(Action.NEW_CA, "generate"), None, now=datetime.now(UTC), names=names)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "ca.crt", material.ca_cert_pem, mode=0o644)
    _write(out / "tls.crt", material.cert_pem, mode=0o644)
    _write(out / "tls.key", material.key_pem, mode=0o600)
    print(f"wrote {out}/ca.crt, tls.crt, tls.key for {', '.join(names)}")
    return 0


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Create with the final mode so a private key is never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


async def _ensure(
    *,
    kubeconfig: str | None,
    namespace: str,
    secret_name: str,
    names: Sequence[str],
    config_names: Sequence[str],
    allow_missing: bool,
    failure_policy: FailurePolicy | None,
) -> int:
    # In a pod (the hook Jobs) without --kubeconfig: the service account's in-cluster config.
    async with await load_api_client(kubeconfig) as api:
        result = await ensure_material(
            api, namespace=namespace, name=secret_name, names=names, clock=lambda: datetime.now(UTC)
        )
        log.info("secret %s/%s %s: %s", namespace, secret_name, result.outcome, result.reason)
        print(f"secret {namespace}/{secret_name}: {result.outcome} ({result.reason})")
        if config_names:
            injected = await inject_ca_bundle(
                api,
                names=config_names,
                ca_bundle=trust_bundle(result.material),
                failure_policy=failure_policy,
                allow_missing=allow_missing,
            )
            for item in injected:
                log.info("%s/%s: caBundle %s", item.kind.value, item.name, item.outcome)
                print(f"{item.kind.value}/{item.name}: caBundle {item.outcome}")
    return 0
