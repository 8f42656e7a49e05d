"""Env resolution: Kubernetes env semantics flattened into RunPod's env map."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from binder.pods.env import (
    EnvSources,
    MissingRef,
    config_error,
    decode_secret_data,
    parse_quantity,
    ref_event,
    referenced_objects,
    resolve_env,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "web",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "demo"},
        "annotations": {"team": "ml"},
    },
    "spec": {"nodeName": "virtual-runpod", "serviceAccountName": "default"},
    "status": {},
}


def test_literals_expand_earlier_variables_and_keep_unknown_references() -> None:
    container = {
        "env": [
            {"name": "A", "value": "one"},
            {"name": "B", "value": "$(A)-two-$(MISSING)-$$(A)"},
        ]
    }
    result = resolve_env(pod=POD, container=container, sources=EnvSources())
    assert result.env == {"A": "one", "B": "one-two-$(MISSING)-$(A)"}


def test_secret_and_configmap_refs_resolve_and_env_overrides_env_from() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "PASSWORD", "value": "literal wins"},
        ],
    }
    sources = EnvSources(
        secrets={"creds": {"TOKEN": "s3cret", "PASSWORD": "from-secret"}},
        config_maps={"cfg": {"mode": "fast", "bad key": "x"}},
    )
    result = resolve_env(pod=POD, container=container, sources=sources)
    assert result.complete
    assert result.env == {
        "CFG_mode": "fast",
        "TOKEN": "s3cret",
        "PASSWORD": "literal wins",
        "MODE": "fast",
    }
    assert any("bad key" in w for w in result.warnings)


def test_missing_required_refs_are_reported_by_name_without_values() -> None:
    container = {
        "envFrom": [{"secretRef": {"name": "absent"}}],
        "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg-absent", "key": "k"}}},
        ],
    }
    sources = EnvSources(
        secrets={"creds": {"TOKEN": "s3cret"}, "absent": None}, config_maps={"cfg-absent": None}
    )
    result = resolve_env(pod=POD, container=container, sources=sources)
    assert not result.complete
    assert result.env == {}
    described = [m.describe() for m in result.missing]
    assert described == ['Secret "absent"', 'key "nokey" of Secret "creds"', 'ConfigMap "cfg-absent"']
    assert "s3cret" not in repr(result)


def test_optional_refs_that_are_missing_leave_the_variable_out() -> None:
    container = {
        "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey", "optional": True}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}},
            {"name": "KEEP", "value": "1"},
        ],
    }
    sources = EnvSources(secrets={"creds": {}, "absent": None}, config_maps={"gone": None})
    result = resolve_env(pod=POD, container=container, sources=sources)
    assert result.complete
    assert result.env == {"KEEP": "1"}
    assert [ref_event(ref, optional=True) for ref in result.absent_optional] == [
        ("OptionalSecretNotFound", 'secret "absent" not found'),
        (
            "OptionalSecretKeyNotFound",
            'skipping optional envvar "T": key "nokey" does not exist in secret "creds"',
        ),
        ("OptionalConfigMapNotFound", 'skipping optional envvar "C": configmap "gone" not found'),
    ]


@pytest.mark.parametrize(
    ("ref", "optional", "reason", "message"),
    [
        (MissingRef(kind="Secret", name="s"), False, "MandatorySecretNotFound", 'secret "s" not found'),
        (
            MissingRef(kind="ConfigMap", name="c"),
            False,
            "MandatoryConfigMapNotFound",
            'configmap "c" not found',
        ),
        (
            MissingRef(kind="Secret", name="s", key="k", variable="V"),
            False,
            "MandatorySecretKeyNotFound",
            'key "k" does not exist in secret "s"',
        ),
        (
            MissingRef(kind="ConfigMap", name="c", key="k", variable="V"),
            False,
            "MandatoryConfigMapKeyNotFound",
            'key "k" does not exist in configmap "c"',
        ),
        (MissingRef(kind="Secret", name="s"), True, "OptionalSecretNotFound", 'secret "s" not found'),
        (
            MissingRef(kind="ConfigMap", name="c"),
            True,
            "OptionalConfigMapNotFound",
            'configmap "c" not found',
        ),
        (
            MissingRef(kind="Secret", name="s", variable="V"),
            True,
            "OptionalSecretNotFound",
            'skipping optional envvar "V": secret "s" not found',
        ),
        (
            MissingRef(kind="ConfigMap", name="c", key="k", variable="V"),
            True,
            "OptionalConfigMapKeyNotFound",
            'skipping optional envvar "V": key "k" does not exist in configmap "c"',
        ),
    ],
)
def test_absent_refs_get_virtual_kubelets_event_reasons(
    ref: MissingRef, optional: bool, reason: str, message: str
) -> None:
    assert ref_event(ref, optional=optional) == (reason, message)


def test_the_waiting_message_says_what_is_missing_as_a_kubelet_does() -> None:
    missing = (
        MissingRef(kind="Secret", name="creds"),
        MissingRef(kind="ConfigMap", name="cfg", key="mode", variable="MODE"),
    )
    assert config_error(missing, namespace="ns1") == (
        'secret "creds" not found; couldn\'t find key mode in ConfigMap ns1/cfg'
    )


def test_downward_api_field_refs() -> None:
    paths = {
        "N": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "TEAM": "metadata.annotations['team']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "IP": "status.podIP",
    }
    container = {"env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()]}
    result = resolve_env(pod=POD, container=container, sources=EnvSources())
    assert result.env == {
        "N": "web",
        "NS": "ns1",
        "UID": "u-1",
        "APP": "demo",
        "TEAM": "ml",
        "NODE": "virtual-runpod",
        "SA": "default",
        "IP": "",
    }


def test_resource_field_refs_use_divisor_and_round_up() -> None:
    container = {
        "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
        "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}},
            },
            {"name": "NONE", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage"}}},
        ],
    }
    result = resolve_env(pod=POD, container=container, sources=EnvSources())
    assert result.env == {"CPU": "2", "MEM_MI": "1024"}
    assert any("NONE" in w for w in result.warnings)


def test_referenced_objects_lists_every_secret_and_configmap() -> None:
    container = {
        "envFrom": [{"secretRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}],
        "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "d", "key": "k"}}},
            {"name": "Z", "value": "v"},
        ],
    }
    assert referenced_objects(container) == (frozenset({"a", "c"}), frozenset({"b", "d"}))


def test_secret_data_is_decoded_and_binary_keys_are_skipped() -> None:
    secret = {
        "data": {
            "text": base64.b64encode(b"line1\nline2").decode(),
            "binary": base64.b64encode(b"\xff\xfe").decode(),
        }
    }
    decoded, skipped = decode_secret_data(secret)
    assert decoded == {"text": "line1\nline2"}
    assert skipped == ("binary",)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("2Gi", str(2 * 2**30)), ("1e3", "1000"), ("3", "3"), ("1k", "1000")],
)
def test_quantities_parse(text: str, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value) or float(parse_quantity(text)) == float(value)


def test_malformed_quantity_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("lots")
