"""Running a process as a ServiceAccount of a local control plane, as a chart's pod would.

In a cluster the binder runs as its ServiceAccount, and the chart's ValidatingAdmissionPolicy
lets only that username change binder state annotations. The demo and the tests run the binder
the same way, from a kubeconfig carrying a TokenRequest token for a ServiceAccount, so that
"who is the binder" means the same everywhere and an admin's `kubectl annotate` is a user's.

Owns: the ServiceAccount (applied, so one made by a chart's manifests is reused), optionally a
ClusterRoleBinding to a ClusterRole (its name is returned so the caller removes it; namespaced
objects go with their namespace), the token and the kubeconfig file. The token lives as long as
a throw-away control plane may run (a `--keep` demo left overnight included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from controlplane.running import ControlPlane

__all__ = ["ServiceAccountIdentity", "service_account_kubeconfig", "service_account_username"]

_TOKEN_LIFETIME: Final = "720h"


@dataclass(frozen=True)
class ServiceAccountIdentity:
    username: str  # as the apiserver sees it: request.userInfo.username
    kubeconfig: Path
    cluster_role_binding: str | None  # cluster-scoped: the caller deletes it


def service_account_username(namespace: str, account: str) -> str:
    return f"system:serviceaccount:{namespace}:{account}"


def service_account_kubeconfig(
    plane: ControlPlane, *, namespace: str, account: str, into: Path, cluster_role: str | None = None
) -> ServiceAccountIdentity:
    """A kubeconfig for ServiceAccount `namespace/account` (created unless it exists), written to
    `into/<account>.kubeconfig`; with `cluster_role`, that role is bound to it cluster-wide."""
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": namespace},
            }
        ),
    )
    binding = None
    if cluster_role is not None:
        binding = f"{account}-{namespace}"[:253]
        plane.kubectl(
            "create",
            "clusterrolebinding",
            binding,
            f"--clusterrole={cluster_role}",
            f"--serviceaccount={namespace}:{account}",
        )
    token = plane.kubectl("create", "token", account, "-n", namespace, f"--duration={_TOKEN_LIFETIME}")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": account, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": account}}],
        "current-context": "local",
    }
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"{account}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ServiceAccountIdentity(
        username=service_account_username(namespace, account), kubeconfig=path, cluster_role_binding=binding
    )
