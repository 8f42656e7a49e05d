"""Which image pull credential applies to an image: the kubelet's keyring, in Python. Pure.

The kubelet (`pkg/credentialprovider`, `keyring.go` and `secrets.go`) puts every pull secret of
a pod into ONE keyring, in the pod's order: each `auths` key is normalised (scheme dropped, a
`/v1/` or `/v2/` path meaning the bare host), the keys are sorted in reverse (more specific
paths first: `quay.io/team` before `quay.io`), and an image matches a key when the host has as
many dot-separated parts with each matching as a glob (`*.example.com`), the ports are equal and
the key's path is a prefix of the image's. Failing that, `index.docker.io` credentials apply to
Docker Hub images (`busybox`, `user/app`, `docker.io/...`). The image is normalised first as the
kubelet does (`busybox` -> `docker.io/library/busybox`, tag and digest dropped). Of several
matches the kubelet tries each in turn; RunPod takes one credential, so the first is used.

An entry's `auth` (base64 `user:password`) wins over `username`/`password`, as in the kubelet.
Entries with a token only (`identitytoken`, `registrytoken`) cannot become RunPod credentials
(RunPod takes a username and password) and are skipped.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "DOCKERCFG_KEY",
    "DOCKERCONFIGJSON_KEY",
    "PullCredential",
    "SecretProblem",
    "credential_entries",
    "find_credential",
    "normalise_image",
]

DOCKERCONFIGJSON_TYPE: Final = "kubernetes.io/dockerconfigjson"
DOCKERCONFIGJSON_KEY: Final = ".dockerconfigjson"
DOCKERCFG_TYPE: Final = "kubernetes.io/dockercfg"
DOCKERCFG_KEY: Final = ".dockercfg"
DEFAULT_REGISTRY_HOST: Final = "index.docker.io"


@dataclass(frozen=True)
class PullCredential:
    """A username/password for `registry` (the keyring key it matched), from Secret `secret`."""

    registry: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    secret: str


class SecretProblem(ValueError):
    """A pull secret that cannot be read (the message names the Secret, never its content)."""


def normalise_image(image: str) -> str:
    """The repository the kubelet looks credentials up for: `busybox:1` -> `docker.io/library/busybox`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first == first.lower()):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    return f"{domain}/{remainder}"


def _key(location: str) -> str:
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    parsed = urlsplit(value)
    path = parsed.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return parsed.netloc + path if path and path != "/" else parsed.netloc


def _decode_auth(text: str) -> tuple[str, str] | None:
    try:
        padded = text.strip() + "=" * (-len(text.strip()) % 4)
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def credential_entries(secret: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(key, username, password) of a docker-config Secret, in the file's order; [] for another
    type. Raises `SecretProblem` when the Secret's config cannot be read."""
    name = str((secret.get("metadata") or {}).get("name") or "?")
    kind = secret.get("type")
    data = secret.get("data") or {}
    if kind == DOCKERCONFIGJSON_TYPE and data.get(DOCKERCONFIGJSON_KEY):
        raw, wrapped = data[DOCKERCONFIGJSON_KEY], True
    elif kind == DOCKERCFG_TYPE and data.get(DOCKERCFG_KEY):
        raw, wrapped = data[DOCKERCFG_KEY], False
    else:
        return []
    try:
        document = json.loads(base64.b64decode(raw))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SecretProblem(f"Secret {name} does not hold a readable docker config") from None
    auths = document.get("auths") if wrapped and isinstance(document, dict) else document
    if not isinstance(auths, dict):
        raise SecretProblem(f"Secret {name} has no docker config 'auths' map")
    entries: list[tuple[str, str, str]] = []
    for location, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            decoded = _decode_auth(str(entry["auth"]))
            if decoded is None:
                raise SecretProblem(f"Secret {name}: the 'auth' of {location} is not base64 user:password")
            username, password = decoded
        if username and password:
            entries.append((_key(str(location)), username, password))
    return entries


def _split_host(netloc: str) -> tuple[list[str], str]:
    host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    return host.split("."), port


def _matches(key: str, image: str) -> bool:
    glob, target = urlsplit("https://" + key), urlsplit("https://" + image)
    glob_parts, glob_port = _split_host(glob.netloc)
    target_parts, target_port = _split_host(target.netloc)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target.path.startswith(glob.path):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(glob_parts, target_parts, strict=True))


def _default_registry_match(image: str) -> bool:
    parts = image.split("/", 1)
    if not parts[0]:
        return False
    if len(parts) == 1 or parts[0] in ("docker.io", "index.docker.io"):
        return True
    return not any(c in parts[0] for c in ".:")


def find_credential(
    image: str, secrets: Sequence[tuple[str, Sequence[tuple[str, str, str]]]]
) -> PullCredential | None:
    """The first credential the kubelet would try for `image`, from (secret name, entries) in
    the pod's order; None when no entry applies (the kubelet then pulls anonymously)."""
    repository = normalise_image(image)
    creds: dict[str, list[PullCredential]] = {}
    for secret_name, entries in secrets:
        for key, username, password in entries:
            creds.setdefault(key, []).append(PullCredential(key, username, password, secret_name))
    for key in sorted(creds, reverse=True):
        if _matches(key, repository):
            return creds[key][0]
    if _default_registry_match(repository) and DEFAULT_REGISTRY_HOST in creds:
        return creds[DEFAULT_REGISTRY_HOST][0]
    return None


def registry_of(image: str) -> str:
    """The registry host an image is pulled from (`docker.io` for Docker Hub), for messages."""
    return normalise_image(image).split("/", 1)[0]
