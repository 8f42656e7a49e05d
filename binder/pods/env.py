"""Env resolution: the Kubernetes container env, turned into the flat map RunPod's `env` takes.

Pure. The I/O edge (`creating`) first asks `referenced_objects` which Secrets and ConfigMaps to
read, reads them (a missing object is passed as None), then calls `resolve_env`. Semantics follow
the kubelet:

- `envFrom` entries in order (with `prefix`), then `env` entries, later names overriding earlier;
- `value` with `$(VAR)` expansion against the names defined so far (`$$` escapes), unknown
  references left as written;
- `valueFrom`: `secretKeyRef`, `configMapKeyRef` (`optional` honoured: a missing optional ref
  leaves the variable out), `fieldRef` (downward API: metadata.name/namespace/uid,
  metadata.labels['k'], metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
  status.podIP/hostIP/podIPs/hostIPs) and `resourceFieldRef` (limits/requests cpu, memory,
  ephemeral-storage with `divisor`);
- `envFrom` keys that are not valid variable names are skipped and reported.

RunPod facts that differ from a kubelet: the pod has no IP before RunPod places it, so
`status.podIP`/`hostIP` resolve to "" at create time (as they do for a kubelet before sandbox
creation); service-link variables (`*_SERVICE_HOST`) are not injected (cluster services are not
reachable from RunPod anyway).

A required ref that is missing yields `missing`: the pod waits with the kubelet's waiting reason
`CreateContainerConfigError` (message `config_error`, in the kubelet's words) and an Event per
ref with Virtual Kubelet's reasons (`ref_event`: `MandatorySecretNotFound`,
`MandatoryConfigMapNotFound`, `Mandatory*KeyNotFound`), then is retried. An optional ref that
is absent yields `absent_optional`: the variable is left out, the pod proceeds, and the same
Events say so with `OptionalSecretNotFound` / `OptionalConfigMapNotFound` (`Optional*KeyNotFound`
for a key). Values never appear in `repr`, logs or Events.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

_ENV_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEYED: Final = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_EXPAND: Final = re.compile(r"\$\$|\$\(([^)]*)\)")
_QUANTITY: Final = re.compile(
    r"^([+-]?[0-9.]+)(e[+-]?[0-9]+|E[+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX: Final[Mapping[str, Decimal]] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}

RefKind = Literal["Secret", "ConfigMap"]


class MissingRef(BaseModel):
    """A Secret/ConfigMap (or one key of an existing one) that does not exist.

    `key` is set only when the object exists but lacks the key; `variable` names the env var
    of a `secretKeyRef`/`configMapKeyRef` (None for `envFrom`)."""

    model_config = ConfigDict(frozen=True)

    kind: RefKind
    name: str
    key: str | None = None
    variable: str | None = None

    def describe(self) -> str:
        where = f'{self.kind} "{self.name}"'
        return f'key "{self.key}" of {where}' if self.key else where


class EnvSources(BaseModel):
    """The referenced objects as read from the API: name -> data, None when the object is absent."""

    model_config = ConfigDict(frozen=True)

    secrets: Mapping[str, Mapping[str, str] | None] = Field(default_factory=dict, repr=False)
    config_maps: Mapping[str, Mapping[str, str] | None] = Field(default_factory=dict, repr=False)


class EnvResolution(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Never shown: the values are the user's secrets.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    # Required refs that are absent: the container cannot be created yet.
    missing: tuple[MissingRef, ...] = ()
    # Optional refs that are absent: their variables are left out, the pod proceeds.
    absent_optional: tuple[MissingRef, ...] = ()
    # Things skipped on purpose, for a Warning Event (names only, never values).
    warnings: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing


def referenced_objects(container: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(Secret names, ConfigMap names) the container's env refers to."""
    secrets: set[str] = set()
    config_maps: set[str] = set()
    for source in container.get("envFrom") or ():
        if ref := source.get("secretRef"):
            secrets.add(ref.get("name", ""))
        if ref := source.get("configMapRef"):
            config_maps.add(ref.get("name", ""))
    for var in container.get("env") or ():
        value_from = var.get("valueFrom") or {}
        if ref := value_from.get("secretKeyRef"):
            secrets.add(ref.get("name", ""))
        if ref := value_from.get("configMapKeyRef"):
            config_maps.add(ref.get("name", ""))
    return frozenset(secrets), frozenset(config_maps)


def decode_secret_data(secret: Mapping[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    """A Secret's `data` (base64) as text; keys that are not UTF-8 text are left out and named."""
    decoded: dict[str, str] = {}
    skipped: list[str] = []
    for key, raw in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            skipped.append(key)
    return decoded, tuple(skipped)


def resolve_env(
    *, pod: Mapping[str, Any], container: Mapping[str, Any], sources: EnvSources
) -> EnvResolution:
    env: dict[str, str] = {}
    missing: list[MissingRef] = []
    optional: list[MissingRef] = []
    warnings: list[str] = []

    for source in container.get("envFrom") or ():
        prefix = source.get("prefix") or ""
        kind: RefKind
        if ref := source.get("secretRef"):
            kind, data = "Secret", sources.secrets.get(ref.get("name", ""))
        elif ref := source.get("configMapRef"):
            kind, data = "ConfigMap", sources.config_maps.get(ref.get("name", ""))
        else:
            continue
        if data is None:
            absent = MissingRef(kind=kind, name=ref.get("name", ""))
            (optional if ref.get("optional", False) else missing).append(absent)
            continue
        for key in sorted(data):
            name = prefix + key
            if not _ENV_NAME.match(name):
                warnings.append(
                    f'{kind} "{ref.get("name", "")}" key "{key}" is not a valid variable name; skipped'
                )
                continue
            env[name] = data[key]

    for var in container.get("env") or ():
        name = var.get("name", "")
        if "valueFrom" not in var:
            env[name] = _expand(var.get("value") or "", env)
            continue
        value_from = var["valueFrom"] or {}
        value: str | None
        if ref := value_from.get("secretKeyRef"):
            value = _keyed(ref, "Secret", sources.secrets, name, missing, optional)
        elif ref := value_from.get("configMapKeyRef"):
            value = _keyed(ref, "ConfigMap", sources.config_maps, name, missing, optional)
        elif ref := value_from.get("fieldRef"):
            value = _field(pod, ref.get("fieldPath", ""))
            if value is None:
                warnings.append(
                    f"env {name}: fieldRef {ref.get('fieldPath', '')!r} is not supported; skipped"
                )
        elif ref := value_from.get("resourceFieldRef"):
            value = _resource(container, ref)
            if value is None:
                warnings.append(
                    f"env {name}: resourceFieldRef {ref.get('resource', '')!r} has no value; skipped"
                )
        else:
            value = None
            warnings.append(f"env {name}: unsupported valueFrom; skipped")
        if value is not None:
            env[name] = value

    skipped = tuple(dict.fromkeys(optional))
    if missing:
        return EnvResolution(
            missing=tuple(dict.fromkeys(missing)), absent_optional=skipped, warnings=tuple(warnings)
        )
    return EnvResolution(env=env, absent_optional=skipped, warnings=tuple(warnings))


def ref_event(ref: MissingRef, *, optional: bool) -> tuple[str, str]:
    """(Event reason, message) for an absent ref, as Virtual Kubelet providers record them:
    `MandatorySecretNotFound`, `MandatoryConfigMapKeyNotFound`, `OptionalSecretNotFound`, ...
    Names only, never values."""
    noun = "secret" if ref.kind == "Secret" else "configmap"
    reason = ("Optional" if optional else "Mandatory") + ref.kind + ("KeyNotFound" if ref.key else "NotFound")
    message = (
        f'key "{ref.key}" does not exist in {noun} "{ref.name}"'
        if ref.key
        else f'{noun} "{ref.name}" not found'
    )
    if optional and ref.variable:
        message = f'skipping optional envvar "{ref.variable}": {message}'
    return reason, message


def config_error(missing: Sequence[MissingRef], *, namespace: str) -> str:
    """The message of the `CreateContainerConfigError` waiting state, in the kubelet's words."""

    def one(ref: MissingRef) -> str:
        if ref.key:
            return f"couldn't find key {ref.key} in {ref.kind} {namespace}/{ref.name}"
        return f'{"secret" if ref.kind == "Secret" else "configmap"} "{ref.name}" not found'

    return "; ".join(one(ref) for ref in missing)


def _keyed(
    ref: Mapping[str, Any],
    kind: RefKind,
    objects: Mapping[str, Mapping[str, str] | None],
    variable: str,
    missing: list[MissingRef],
    optional: list[MissingRef],
) -> str | None:
    name, key = ref.get("name", ""), ref.get("key", "")
    data = objects.get(name)
    if data is not None and key in data:
        return data[key]
    absent = MissingRef(kind=kind, name=name, key=key if data is not None else None, variable=variable)
    (optional if ref.get("optional", False) else missing).append(absent)
    return None


def _expand(value: str, defined: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined.get(name, match.group(0))

    return _EXPAND.sub(replace, value)


def _field(pod: Mapping[str, Any], path: str) -> str | None:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple: dict[str, Any] = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(ip.get("ip", "") for ip in status.get("podIPs") or ()),
        "status.hostIPs": ",".join(ip.get("ip", "") for ip in status.get("hostIPs") or ()),
    }
    if path in simple:
        return str(simple[path] or "")
    if match := _FIELD_KEYED.match(path):
        family, key = match.groups()
        return str((metadata.get(family) or {}).get(key, ""))
    return None


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity (`500m`, `2Gi`, `1e3`) as a Decimal. ValueError if malformed."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a quantity") from exc
    if suffix[:1] in ("e", "E") and suffix not in _SUFFIX:
        return base * (Decimal(10) ** int(suffix[1:]))
    return base * _SUFFIX[suffix]


def _resource(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str | None:
    resource: str = ref.get("resource", "")
    section, _, name = resource.partition(".")
    if section not in ("limits", "requests") or not name:
        return None
    resources = container.get("resources") or {}
    raw = (resources.get(section) or {}).get(name)
    if raw is None and section == "requests":
        # Requests default to limits, as the API server defaults them.
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        return None
    try:
        value = parse_quantity(str(raw))
        divisor = parse_quantity(str(ref.get("divisor") or "1"))
    except ValueError:
        return None
    if divisor <= 0:
        return None
    return str(math.ceil(value / divisor))
