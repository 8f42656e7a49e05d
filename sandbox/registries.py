"""Registry credentials (`/v2/registries`) and the private registries whose images need them.

RunPod stores a credential as `{name, username, password}` and never shows the secret again:
list and get answer `{id, name}` only, and so does `GET /_sandbox/state`. A pod names one by id
in its `registry` field; deleting a credential a pod still uses is refused (400, as RunPod
documents). The scenario's `privateRegistries` (or `PUT /_sandbox/private-registries`) name
registry hosts whose images pull only with a matching credential: without one the pod goes to
ERROR with the `system` log line a failed pull prints, like any other unpullable image.

Not owned here: the pod state machine (`account`), request schemas (`validation`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandbox.problems import ApiError
from sandbox.scenario import PrivateRegistry
from sandbox.validation import validate_body

__all__ = ["RegistryBook", "image_registry", "pull_denied_line"]

REGISTRY_NOT_FOUND: Final = "registry not found"
IN_USE: Final = "Registry credential is in use by a pod and cannot be deleted"
_ALPHABET: Final = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Credential:
    id: str
    name: str
    username: str
    password: str


def image_registry(image: str) -> str:
    """The registry host of an image reference, as docker reads it (`docker.io` by default)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return "docker.io" if first == "index.docker.io" else first
    return "docker.io"


def pull_denied_line(image: str) -> str:
    """The `system` line a pull refused for lack of credentials prints."""
    return f"error pulling image {image}: pull access denied or repository not found"


class RegistryBook:
    def __init__(self, *, rng: random.Random, private: Iterable[PrivateRegistry] = ()) -> None:
        self._rng = rng
        self.credentials: dict[str, Credential] = {}
        self.private: dict[str, PrivateRegistry] = {}
        self.set_private(private)

    def set_private(self, registries: Iterable[PrivateRegistry]) -> None:
        self.private = {r.host: r for r in registries}

    def _new_id(self) -> str:
        while True:
            new = "".join(self._rng.choice(_ALPHABET) for _ in range(8))
            if new not in self.credentials:
                return new

    # -- /v2/registries ------------------------------------------------------------------------
    def create(self, body: object) -> dict[str, Any]:
        validate_body("CreateRegistryRequest", body)
        if not isinstance(body, dict):
            raise ApiError(422, "Request validation failed.", errors=["$: got non-object, want object"])
        credential = Credential(self._new_id(), body["name"], body["username"], body["password"])
        self.credentials[credential.id] = credential
        return _render(credential)

    def listing(self) -> list[dict[str, Any]]:
        return [_render(c) for c in self.credentials.values()]

    def get(self, registry_id: str) -> dict[str, Any]:
        return _render(self._find(registry_id))

    def delete(self, registry_id: str, *, in_use: bool) -> None:
        self._find(registry_id)
        if in_use:
            raise ApiError(400, IN_USE)
        del self.credentials[registry_id]

    def _find(self, registry_id: str) -> Credential:
        found = self.credentials.get(registry_id)
        if found is None:
            raise ApiError(404, REGISTRY_NOT_FOUND)
        return found

    # -- pods ----------------------------------------------------------------------------------
    def check_create(self, body: Mapping[str, Any]) -> None:
        """A create naming a credential that does not exist is refused (404)."""
        registry = body.get("registry")
        if registry is not None:
            self._find(registry)

    def pull_fails(self, image: str, registry_id: str | None) -> bool:
        """Does pulling `image` with credential `registry_id` fail for lack of access?"""
        private = self.private.get(image_registry(image))
        if private is None:
            return False
        credential = self.credentials.get(registry_id or "")
        return credential is None or (credential.username, credential.password) != (
            private.username,
            private.password,
        )

    def state(self, used_by: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """Every credential with the pods using it; never a username or password."""
        return [_render(c) | {"usedBy": used_by.get(c.id, [])} for c in self.credentials.values()]


def _render(credential: Credential) -> dict[str, Any]:
    return {"id": credential.id, "name": credential.name}
