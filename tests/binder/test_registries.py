"""Image pull secrets as RunPod registry credentials: matching, naming, decisions. Pure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binder.registries.credentials import due_for_deletion
from binder.registries.keyring import credential_entries, find_credential, normalise_image
from binder.registries.naming import credential_name, credential_prefix, is_ours
from binder.registries.pulling import NO_MATCH_REASON, SECRET_MISSING_REASON, decide_pull, pull_secret_names


def _secret(name: str, auths: dict[str, Any], *, legacy: bool = False) -> dict[str, Any]:
    document = auths if legacy else {"auths": auths}
    key = ".dockercfg" if legacy else ".dockerconfigjson"
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/dockercfg" if legacy else "kubernetes.io/dockerconfigjson",
        "data": {key: base64.b64encode(json.dumps(document).encode()).decode()},
    }


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox"),
        ("user/app@sha256:abc", "docker.io/user/app"),
        ("index.docker.io/user/app:1", "docker.io/user/app"),
        ("registry.example.com:5000/team/app:2", "registry.example.com:5000/team/app"),
        ("localhost/app", "localhost/app"),
        ("ghcr.io/acme/trainer:1", "ghcr.io/acme/trainer"),
    ],
)
def test_images_are_normalised_as_the_kubelet_looks_credentials_up(image: str, repository: str) -> None:
    assert normalise_image(image) == repository


def _find(image: str, *secrets: dict[str, Any]) -> tuple[str, str, str] | None:
    found = find_credential(image, [(s["metadata"]["name"], credential_entries(s)) for s in secrets])
    return None if found is None else (found.registry, found.username, found.secret)


def test_docker_hub_aliases_match_docker_hub_images() -> None:
    hub = _secret("hub", {"https://index.docker.io/v1/": _auth("me", "pw")})
    assert _find("busybox", hub) == ("index.docker.io", "me", "hub")
    assert _find("docker.io/me/private:1", hub) == ("index.docker.io", "me", "hub")
    short = _secret("short", {"docker.io": {"username": "me2", "password": "pw"}})
    assert _find("me/private", short) == ("docker.io", "me2", "short")
    assert _find("ghcr.io/me/private", hub, short) is None


def test_hosts_ports_paths_and_globs_match_like_the_kubelet() -> None:
    config = _secret(
        "many",
        {
            "registry.example.com": _auth("host", "a"),
            "registry.example.com/team": _auth("team", "b"),
            "registry.example.com:5000": _auth("port", "c"),
            "*.corp.example": _auth("glob", "d"),
        },
    )
    assert _find("registry.example.com/team/app:1", config) == ("registry.example.com/team", "team", "many")
    assert _find("registry.example.com/other/app", config) == ("registry.example.com", "host", "many")
    assert _find("registry.example.com:5000/app", config) == ("registry.example.com:5000", "port", "many")
    assert _find("eu.corp.example/app", config) == ("*.corp.example", "glob", "many")
    assert _find("a.eu.corp.example/app", config) is None  # a glob part is one label


def test_the_first_secret_wins_for_the_same_registry_and_legacy_dockercfg_is_read() -> None:
    first = _secret("first", {"ghcr.io": _auth("one", "a")})
    second = _secret("second", {"ghcr.io": _auth("two", "b")}, legacy=True)
    assert _find("ghcr.io/acme/x", first, second) == ("ghcr.io", "one", "first")
    assert _find("ghcr.io/acme/x", second) == ("ghcr.io", "two", "second")


def test_token_only_entries_are_not_credentials() -> None:
    tokens = _secret("tokens", {"ghcr.io": {"identitytoken": "t"}})
    assert credential_entries(tokens) == []
    assert credential_entries({"type": "Opaque", "data": {}}) == []


def test_names_are_stable_per_credential_new_on_rotation_and_tell_our_cluster() -> None:
    name = credential_name(cluster_id="c1", registry="ghcr.io", username="u", password="p")
    assert name == credential_name(cluster_id="c1", registry="ghcr.io", username="u", password="p")
    assert name != credential_name(cluster_id="c1", registry="ghcr.io", username="u", password="p2")
    assert name != credential_name(cluster_id="c2", registry="ghcr.io", username="u", password="p")
    assert name.startswith(credential_prefix("c1"))
    assert is_ours(name, "c1") and not is_ours(name, "c2") and not is_ours("rpvk-foreign", "c1")


def test_pull_decisions_wait_for_missing_secrets_and_go_ahead_without_a_match() -> None:
    hub = _secret("hub", {"docker.io": _auth("me", "pw")})
    assert decide_pull("busybox", [], {}).credential is None
    missing = decide_pull("busybox", ["hub", "gone"], {"hub": hub, "gone": None})
    assert missing.wait_reason == SECRET_MISSING_REASON and missing.event is not None
    assert "(gone)" in missing.event[1] and "pw" not in missing.event[1]
    matched = decide_pull("me/app", ["hub"], {"hub": hub})
    assert matched.credential is not None and matched.wait_reason is None and matched.event is None
    other = decide_pull("ghcr.io/acme/app", ["hub"], {"hub": hub})
    assert other.credential is None and other.wait_reason is None
    assert other.event is not None and other.event[0] == NO_MATCH_REASON and "ghcr.io" in other.event[1]
    assert pull_secret_names({"imagePullSecrets": [{"name": "a"}, {"name": "a"}, {"name": "b"}]}) == [
        "a",
        "b",
    ]


def test_only_credentials_unused_for_the_grace_are_deleted() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    grace = timedelta(seconds=30)
    ours = {"rpvk-x-a": "a", "rpvk-x-b": "b", "rpvk-x-c": "c"}
    due, waiting = due_for_deletion(ours, in_use={"a"}, unused_since={}, now=now, grace=grace)
    assert due == [] and set(waiting) == {"b", "c"}
    later = now + grace
    due, waiting = due_for_deletion(ours, in_use={"a", "c"}, unused_since=waiting, now=later, grace=grace)
    assert due == ["b"] and waiting == {}
