"""Requests checked exactly as RunPod checks them: schema first (422), then rules (400).

The schemas are RunPod's own, taken from the bundled copy of the official OpenAPI document
(`data/runpod-v2.json`, OpenAPI 3.1 = JSON Schema 2020-12), so unknown keys at any level,
types, minimums, patterns and enums fail the way they fail live. Error strings follow the live
format (notes §11): `$: additional properties 'gpuCount' not allowed`, `$: missing property
'name'`, `$.gpu.count: must be >= 1`.

Query parameters are checked against the same document (`validate_query`): each operation's
declared parameters by their schema (booleans, integers with bounds, enums, patterns, RFC 3339
`date-time`, comma-separated `form` arrays whose every entry is checked, an empty entry
included, `maxItems`), a malformed value answering 422 `Request validation failed.` with one
`query.<name>: ...` line per problem, as RunPod's gateway answers a malformed parameter (and as
the document says of `countryCodes`, `cudaVersions` and `minCudaVersion`: "a malformed entry is
a 422"). Parameters the document does not declare are ignored, as live. Combinations of valid
values that RunPod refuses (`product` without `include`, ...) are rules: 400, in the handlers.

Cross-field rules the schema cannot express are plain functions returning the 400 detail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final

from jsonschema import Draft202012Validator, ValidationError

from sandbox.problems import VALIDATION_DETAIL, ApiError

__all__ = [
    "check_create_rules",
    "check_update_rules",
    "openapi_document",
    "parse_rfc3339",
    "validate_body",
    "validate_query",
]

_QUOTED: Final = re.compile(r"'([^']*)'")


@cache
def openapi_document() -> dict[str, Any]:
    """The bundled official OpenAPI document (read once)."""
    text = resources.files("sandbox.data").joinpath("runpod-v2.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


_DROP: Final = frozenset({"description", "examples", "example", "default", "x-enum-varnames", "format"})


def _flatten(schema: Any) -> Any:
    """Inline `$ref`s and merge object `allOf`s; `unevaluatedProperties: false` becomes
    `additionalProperties: false` over the merged properties.

    Same verdicts as the original for RunPod's request schemas (no recursion, no conflicting
    branches), but an unknown key is reported once, by name, and validation is ~10x cheaper:
    creates stay cheap when the binder benchmark sends a thousand of them.
    """
    if isinstance(schema, list):
        return [_flatten(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target: Any = openapi_document()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _flatten({"allOf": [target], **extra}) if extra else _flatten(target)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _flatten(sub) for name, sub in value.items()}
        elif key == "allOf":
            for member in (_flatten(m) for m in value):
                for mkey, mvalue in member.items():
                    if mkey == "properties":
                        out.setdefault("properties", {}).update(mvalue)
                    elif mkey == "required":
                        out["required"] = sorted(set(out.get("required", [])) | set(mvalue))
                    else:
                        out.setdefault(mkey, mvalue)
        else:
            out[key] = _flatten(value)
    if out.pop("unevaluatedProperties", None) is False:
        out["additionalProperties"] = False
    return out


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    return Draft202012Validator(_flatten({"$ref": f"#/components/schemas/{schema_name}"}))


def _path(error: ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _messages(error: ValidationError) -> Iterable[str]:
    where = _path(error)
    kind = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    if kind in ("additionalProperties", "unevaluatedProperties"):
        names = _QUOTED.findall(error.message.split("(", 1)[-1]) if "(" in error.message else []
        if not names and isinstance(instance, dict):
            names = sorted(instance)
        yield f"{where}: additional properties {', '.join(repr(n) for n in names)} not allowed"
    elif kind == "required":
        missing = [k for k in expected if k not in instance]
        for name in missing:
            yield f"{where}: missing property '{name}'"
    elif kind == "type":
        want = expected
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        yield f"{where}: got {_type_name(instance)}, want {want_text}"
    elif kind == "minimum":
        yield f"{where}: must be >= {expected}"
    elif kind == "maximum":
        yield f"{where}: must be <= {expected}"
    elif kind == "minLength":
        yield f"{where}: length must be >= {expected}, but got {len(instance)}"
    elif kind == "maxItems":
        yield f"{where}: maxItems: got {len(instance)}, want {expected}"
    elif kind == "pattern":
        yield f"{where}: '{instance}' does not match pattern '{expected}'"
    elif kind == "enum":
        allowed = ", ".join(repr(v) for v in expected)
        yield f"{where}: value must be one of {allowed}"
    else:
        yield f"{where}: {error.message}"


def validate_body(schema_name: str, body: object) -> None:
    """Raise 422 with one `errors[]` entry per violation of `components/schemas/<schema_name>`."""
    errors = sorted(_validator(schema_name).iter_errors(body), key=lambda e: list(e.absolute_path))
    messages: list[str] = []
    for error in errors:
        for message in _messages(error):
            if message not in messages:
                messages.append(message)
    if messages:
        raise ApiError(422, VALIDATION_DETAIL, errors=messages)


# -- query parameters -----------------------------------------------------------------------------

_RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Go's strconv.ParseBool, which RunPod's gateway (Go) uses for boolean parameters.
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INTEGER: Final = re.compile(r"^[+-]?\d+$")


def parse_rfc3339(text: str) -> float:
    """An RFC 3339 date-time (`2026-06-01T12:02:03Z`, `...03.7+02:00`) as epoch seconds. Raises
    ValueError for anything else, ISO 8601 forms RFC 3339 leaves out included (a date alone, no
    offset, a space for `T`, `20260601T120203Z`)."""
    if not _RFC3339.match(text):
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    normal = text[:10] + "T" + text[11:]
    normal = normal[:-1] + "+00:00" if normal[-1] in "Zz" else normal
    return datetime.fromisoformat(normal).timestamp()


def _resolve(node: Any) -> Any:
    """A `$ref` (parameter or schema) followed to what it names, once or more."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = openapi_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@cache
def _query_parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
    """The query parameters the document declares for one operation: name -> schema."""
    item = openapi_document()["paths"][path]
    declared = [*item.get("parameters", []), *item[method.lower()].get("parameters", [])]
    out: dict[str, dict[str, Any]] = {}
    for parameter in (_resolve(p) for p in declared):
        if parameter.get("in") == "query":
            out[parameter["name"]] = _resolve(parameter.get("schema", {}))
    return out


def validate_query(path: str, method: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The declared query parameters present in `params`, read by their schemas (booleans as
    bool, integers as int, arrays as lists of strings); 422 listing every malformed value.

    `path` is the document's path template (`/v2/pods/{id}/logs`)."""
    errors: list[str] = []
    values: dict[str, Any] = {}
    for name, schema in _query_parameters(path, method).items():
        if name in params:
            values[name] = _read_parameter(f"query.{name}", params[name], schema, errors)
    if errors:
        raise ApiError(422, VALIDATION_DETAIL, errors=errors)
    return values


def _read_parameter(where: str, raw: str, schema: Mapping[str, Any], errors: list[str]) -> Any:
    if schema.get("type") != "array":
        return _read_scalar(where, raw, schema, errors)
    items = raw.split(",")
    most = schema.get("maxItems")
    if most is not None and len(items) > most:
        errors.append(f"{where}: maxItems: got {len(items)}, want {most}")
    item_schema = _resolve(schema.get("items", {}))
    out: list[Any] = []
    for item in items:
        if not item.strip():
            errors.append(f"{where}: empty entry in the comma-separated list '{raw}'")
            continue
        out.append(_read_scalar(where, item.strip(), item_schema, errors))
    return out


def _read_scalar(where: str, raw: str, schema: Mapping[str, Any], errors: list[str]) -> Any:
    kind = schema.get("type")
    if kind == "boolean":
        if raw in _TRUE or raw in _FALSE:
            return raw in _TRUE
        errors.append(f"{where}: got string '{raw}', want boolean")
        return None
    if kind == "integer":
        if not _INTEGER.match(raw):
            errors.append(f"{where}: got string '{raw}', want integer")
            return None
        value = int(raw)
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: must be <= {schema['maximum']}")
        return value
    if "enum" in schema and raw not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        errors.append(f"{where}: value must be one of {allowed}, got '{raw}'")
    if "pattern" in schema and not re.search(schema["pattern"], raw):
        errors.append(f"{where}: '{raw}' does not match pattern '{schema['pattern']}'")
    if schema.get("format") == "date-time":
        try:
            parse_rfc3339(raw)
        except ValueError:
            errors.append(f"{where}: '{raw}' is not a valid RFC 3339 date-time")
    return raw


# -- cross-field rules ------------------------------------------------------------------------------


def _cuda_rules(gpu: Mapping[str, Any]) -> str | None:
    if gpu.get("allowedCudaVersions") and "minCudaVersion" in gpu:
        return "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive"
    return None


def _mount_rules(mounts: Mapping[str, Any] | None) -> str | None:
    if mounts and "persistent" in mounts and "network" in mounts:
        return "mounts.persistent and mounts.network are mutually exclusive"
    return None


def _cpu_rules(body: Mapping[str, Any]) -> str | None:
    """A CPU pod: a power-of-two vCPU count, the SECURE cloud, no persistent mount, no global
    networking (it needs an NVIDIA GPU). The flavour's own vCPU range is the account's check."""
    count = body["cpu"]["vcpuCount"]
    if count & (count - 1):
        return f"cpu.vcpuCount {count} is not a power of two"
    if (body.get("mounts") or {}).get("persistent") is not None:
        return "mounts.persistent is not supported on CPU pods"
    if body.get("cloud", "SECURE") != "SECURE":
        return "CPU pods are offered in the SECURE cloud only"
    if body.get("globalNetworking"):
        return "global networking requires an NVIDIA GPU"
    return None


def check_create_rules(body: Mapping[str, Any]) -> None:
    """Cross-field rules of `CreatePodRequest` (400); call after `validate_body`."""
    has_gpu, has_cpu = "gpu" in body, "cpu" in body
    if has_gpu == has_cpu:
        raise ApiError(400, "exactly one of gpu or cpu must be set")
    problem = _mount_rules(body.get("mounts")) or (_cuda_rules(body["gpu"]) if has_gpu else _cpu_rules(body))
    if problem:
        raise ApiError(400, problem)


def check_update_rules(body: Mapping[str, Any], *, current_mounts: Mapping[str, Any]) -> None:
    """Cross-field rules of `UpdatePodRequest` (400): mount kind and volume are fixed at create."""
    mounts = body.get("mounts")
    if not mounts:
        return
    problem = _mount_rules(mounts)
    if problem:
        raise ApiError(400, problem)
    if "network" in mounts and not mounts["network"]:
        raise ApiError(400, "clearing mounts is not supported")
    for kind in ("persistent", "network"):
        if kind in mounts and kind not in current_mounts:
            raise ApiError(400, f"mount kind {kind!r} was not present at create")
    if (
        "network" in mounts
        and current_mounts.get("network")
        and mounts["network"][0]["volumeId"] != current_mounts["network"][0]["volumeId"]
    ):
        raise ApiError(400, "the volumeId of a network mount cannot change")
