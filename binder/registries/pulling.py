"""What a pod's image pull secrets mean for its RunPod create. Pure.

    runpod.io/container-registry-auth-id set   that id, the Secrets are not read (it wins)
    a listed Secret does not exist             wait, Warning FailedToRetrieveImagePullSecret
                                               (the kubelet's reason and message): on RunPod a
                                               failed pull is final, so the create waits for it
    a Secret cannot be read                    wait, Warning FailedToRetrieveImagePullSecret
    a credential applies to the image          that credential (becomes a RunPod credential)
    none applies (or no Secrets at all)        no credential, as the kubelet pulls anonymously;
                                               with Secrets, a Warning naming them and the registry

Secret names and the pod's ServiceAccount's `imagePullSecrets` (used when the pod lists none,
as the ServiceAccount admission plugin would have copied them) are gathered by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from binder.registries.keyring import (
    PullCredential,
    SecretProblem,
    credential_entries,
    find_credential,
    registry_of,
)

__all__ = ["PullDecision", "decide_pull", "pull_secret_names"]

SECRET_MISSING_REASON: Final = "FailedToRetrieveImagePullSecret"
NO_MATCH_REASON: Final = "NoImagePullCredential"


@dataclass(frozen=True)
class PullDecision:
    credential: PullCredential | None = None
    # The pod waits with this reason and message (None: go ahead).
    wait_reason: str | None = None
    wait_message: str | None = None
    # A Warning Event to record (reason, message), if any.
    event: tuple[str, str] | None = None


def pull_secret_names(spec_or_account: Mapping[str, Any]) -> list[str]:
    """Names in `imagePullSecrets` of a pod spec or a ServiceAccount, in order, once each."""
    names: list[str] = []
    for ref in spec_or_account.get("imagePullSecrets") or []:
        name = ref.get("name") if isinstance(ref, Mapping) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def decide_pull(
    image: str, names: Sequence[str], secrets: Mapping[str, Mapping[str, Any] | None]
) -> PullDecision:
    """`secrets`: each name -> the Secret as read, None when it does not exist."""
    if not names:
        return PullDecision()
    missing = [n for n in names if secrets.get(n) is None]
    if missing:
        listed = ", ".join(missing)
        message = (
            f"Unable to retrieve some image pull secrets ({listed}); attempting to pull the image may not "
            "succeed. On RunPod a failed pull is final, so the pod waits until they exist."
        )
        return PullDecision(
            wait_reason=SECRET_MISSING_REASON, wait_message=message, event=(SECRET_MISSING_REASON, message)
        )
    entries: list[tuple[str, list[tuple[str, str, str]]]] = []
    for name in names:
        secret = secrets[name]
        if secret is None:
            continue
        try:
            entries.append((name, credential_entries(secret)))
        except SecretProblem as exc:
            message = f"image pull secret unreadable: {exc}; fix it (the pod waits)"
            return PullDecision(
                wait_reason=SECRET_MISSING_REASON,
                wait_message=message,
                event=(SECRET_MISSING_REASON, message),
            )
    credential = find_credential(image, entries)
    if credential is not None:
        return PullDecision(credential=credential)
    message = (
        f"none of the image pull secrets ({', '.join(names)}) has a username/password for registry "
        f"{registry_of(image)}; pulling image {image!r} without credentials"
    )
    return PullDecision(event=(NO_MATCH_REASON, message))
