"""Image pull secrets as RunPod registry credentials.

- `keyring`: which credential of a pod's `kubernetes.io/dockerconfigjson` / `dockercfg` Secrets
  applies to its image, matched as the kubelet's keyring matches (pure).
- `naming`: the deterministic RunPod name of a credential, so one credential is made once and
  found again after restarts and failover (pure).
- `credentials`: `RegistryCredentials`, which ensures a credential exists (list, match by name,
  create only if absent) and sweeps the ones no live pod uses any more (the I/O edge).

Credentials (usernames, passwords) never reach logs, Events or annotations; only the RunPod id
does (`runpod.io/registry-auth-id`).
"""

from __future__ import annotations
