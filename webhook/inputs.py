"""The user's inputs at admission: `runpod.io/*` annotations and ports, validated.

Owns the annotation contract of SPEC §2 as the webhook reads it: pod-then-Job precedence (per
key, the pod wins), one check per annotation (the CUDA floor or exact set, the compute type,
the vCPU cap and CPU flavour pins among them), unknown `runpod.io/*` keys rejected with a "did
you mean", ports from `containerPort`s or the `runpod.io/ports` override, the
`runpod.io/drop-containers` list (its names are checked against the pod's containers in
`containers`). Every rejection is a `Problem` naming the annotation, the bad value, what is
allowed and where it came from.

Does not own: what the pod buys and how much (`compute`: GPU count, GPU or CPU pod, a CPU pod's
need), checks that need the catalog (GPU and CPU pins, CUDA versions offered, data-center ids,
prices: `resolving`), the node's data-center list (`resolving`), or the wire format (`reviews`).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from contract import annotations as keys
from contract.catalog import parse_cuda_version
from contract.plan import Port, parse_port
from contract.policy import (
    CLOUDS,
    COMPUTE_TYPES,
    DEFAULT_CLOUD,
    DEFAULT_CONTAINER_DISK_GB,
    DEFAULT_MAX_VCPU_PRICE,
    DEFAULT_REQUIRED_GPU_MEMORY_GB,
    GPU_RESOURCE,
    Cloud,
    ComputeType,
    parse_id_list,
)
from webhook.problems import FORBIDDEN, Denial, Problem, clip, describe_origin, quote_items

HTTP_PORTS: Final = frozenset({80, 443, 8080, 8000, 3000, 5000, 8888, 9000})
MEMORY_RANGE: Final = (1, 1024)
DISK_RANGE: Final = (1, 2000)
_MAX_ID_CHARS: Final = 256
# A container name as the API server validates it (DNS-1123 label).
_CONTAINER_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A reason that quotes part of the user's value is cut to this length.
_MAX_REASON_CHARS: Final = 120
# Prefixes this close to `runpod.io` are typos of it (`runpod.com/`, `runpd.io/`), not another
# project's annotations; a typo there would silently drop an input, so it is rejected too.
_PREFIX_TYPO_RATIO: Final = 0.8
# Up to this many unknown keys get a problem each (with a "did you mean"); more share one.
_UNKNOWN_EACH: Final = 3


@dataclass(frozen=True, slots=True)
class Inputs:
    """Validated user inputs. None = not set (the default applies downstream).

    `origins` maps each annotation the user set to where it came from ("the pod", "Job x"), so
    later checks (catalog, node policy) can say so too. Hashable, to key a resolution cache.
    """

    required_gpu_memory_gb: int = DEFAULT_REQUIRED_GPU_MEMORY_GB
    gpu_types: tuple[str, ...] | None = None
    max_gpu_price: float | None = None
    cloud: Cloud = DEFAULT_CLOUD
    datacenter_ids: tuple[str, ...] | None = None
    ports: tuple[Port, ...] | None = None
    registry_auth_id: str | None = None
    template_id: str | None = None
    container_disk_gb: int = DEFAULT_CONTAINER_DISK_GB
    # Containers and init containers RunPod may leave out (checked against the final pod).
    drop_containers: tuple[str, ...] = ()
    # None = decided by the pod's nvidia.com/gpu limits (`decide_compute`).
    compute_type: ComputeType | None = None
    min_cuda_version: str | None = None
    cuda_versions: tuple[str, ...] | None = None
    cpu_types: tuple[str, ...] | None = None
    max_vcpu_price: float | None = None
    # False: `runpod.io/ssh: disabled`, the pod gets no 22/tcp (and so no public IP from it).
    ssh: bool = True
    origins: tuple[tuple[str, str], ...] = ()
    # What the user wrote, per annotation set (for messages about it).
    raw: tuple[tuple[str, str], ...] = ()

    def origin(self, key: str) -> str:
        return dict(self.origins).get(key, "the pod")

    def raw_value(self, key: str) -> str:
        return dict(self.raw).get(key, "")


@dataclass(frozen=True, slots=True)
class Caps:
    """The node's price caps an annotation may only lower."""

    gpu: float
    vcpu: float = DEFAULT_MAX_VCPU_PRICE


def suggest(word: str, choices: Sequence[str]) -> str:
    """`"; did you mean X?"` for a near miss, else empty."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def find_unknown_keys(
    annotations: Mapping[str, str], *, origin: str, known: frozenset[str] = keys.KNOWN_RUNPOD_KEYS
) -> list[Problem]:
    """Keys under `runpod.io/` (or a near-miss prefix) that are not in `known`."""
    unknown: list[tuple[str, str, str]] = []  # key, value, did-you-mean
    for key, value in annotations.items():
        if key in known:
            continue
        prefix, slash, name = key.partition("/")
        if not slash:
            continue
        if prefix != "runpod.io" and (
            prefix == "plan.runpod.io"
            or difflib.SequenceMatcher(None, prefix, "runpod.io").ratio() < _PREFIX_TYPO_RATIO
        ):
            continue
        guess = suggest(key, keys.INPUT_KEYS) or suggest(f"runpod.io/{name}", keys.INPUT_KEYS)
        unknown.append((key, value, guess))
    allowed = "the runpod.io/ annotations " + ", ".join(k.partition("/")[2] for k in keys.INPUT_KEYS)
    if len(unknown) > _UNKNOWN_EACH:
        return [
            Problem(
                field="metadata.annotations",
                value=",".join(key for key, _, _ in unknown[:_UNKNOWN_EACH]),
                values=tuple(key for key, _, _ in unknown),
                reason=f"{len(unknown):,} unknown runpod.io/ annotations (a typo must not silently cost money)",
                allowed=allowed,
                origin=origin,
            )
        ]
    return [
        Problem(field=key, value=value, reason=f"unknown annotation{guess}", allowed=allowed, origin=origin)
        for key, value, guess in unknown
    ]


def merge_inputs(
    pod_annotations: Mapping[str, str], job_annotations: Mapping[str, str] | None, *, job_name: str | None
) -> dict[str, tuple[str, str]]:
    """Input key -> (value, origin); per key the pod wins over its Job."""
    merged: dict[str, tuple[str, str]] = {}
    for key in keys.INPUT_KEYS:
        if key in pod_annotations:
            merged[key] = (pod_annotations[key], "the pod")
        elif job_annotations is not None and key in job_annotations:
            merged[key] = (job_annotations[key], describe_origin(job_name))
    return merged


def read_inputs(
    pod_annotations: Mapping[str, str],
    *,
    job_annotations: Mapping[str, str] | None = None,
    job_name: str | None = None,
    node_max_gpu_price: float,
    node_max_vcpu_price: float = DEFAULT_MAX_VCPU_PRICE,
) -> Inputs:
    """Validate every input annotation; raise one `Denial` listing every problem found."""
    problems = find_unknown_keys(pod_annotations, origin="the pod")
    if job_annotations is not None:
        # The binder writes state on pods only: on a Job such a key is a typo (`gpu-type`).
        problems += find_unknown_keys(
            job_annotations, origin=describe_origin(job_name), known=frozenset(keys.INPUT_KEYS)
        )
    merged = merge_inputs(pod_annotations, job_annotations, job_name=job_name)
    caps = Caps(gpu=node_max_gpu_price, vcpu=node_max_vcpu_price)
    if keys.SSH in merged and merged[keys.SSH][1] != "the pod":
        # The binder reads it when it creates the RunPod pod, from the pod: a Job-level value
        # would be silently ignored.
        raw, origin = merged.pop(keys.SSH)
        problems.append(
            Problem(
                field=keys.SSH,
                value=raw,
                reason="the binder reads it from the pod, not from its Job",
                allowed="enabled or disabled, on the pod template (spec.template.metadata.annotations)",
                origin=origin,
            )
        )
    values: dict[str, Any] = {}
    for key, (raw, origin) in merged.items():
        try:
            values[key] = _READERS[key](raw.strip(), caps)
        except _Bad as bad:
            problems.append(
                Problem(
                    field=key, value=raw, reason=bad.reason, allowed=bad.allowed, origin=origin, code=bad.code
                )
            )
    if keys.MIN_CUDA_VERSION in values and keys.CUDA_VERSIONS in values:
        raw, origin = merged[keys.CUDA_VERSIONS]
        problems.append(
            Problem(
                field=keys.CUDA_VERSIONS,
                value=raw,
                reason=f"{keys.MIN_CUDA_VERSION} is set too: a floor and an exact set exclude each other",
                allowed=f"one of {keys.MIN_CUDA_VERSION} (a floor) or {keys.CUDA_VERSIONS} (an exact set)",
                origin=origin,
            )
        )
    if problems:
        raise Denial.of(problems)
    return Inputs(
        required_gpu_memory_gb=values.get(keys.REQUIRED_GPU_MEMORY, DEFAULT_REQUIRED_GPU_MEMORY_GB),
        gpu_types=values.get(keys.GPU_TYPES),
        max_gpu_price=values.get(keys.MAX_GPU_PRICE),
        cloud=values.get(keys.CLOUD_TYPE, DEFAULT_CLOUD),
        datacenter_ids=values.get(keys.DATACENTER_IDS),
        ports=values.get(keys.PORTS),
        registry_auth_id=values.get(keys.CONTAINER_REGISTRY_AUTH_ID),
        template_id=values.get(keys.TEMPLATE_ID),
        container_disk_gb=values.get(keys.CONTAINER_DISK_GB, DEFAULT_CONTAINER_DISK_GB),
        drop_containers=values.get(keys.DROP_CONTAINERS, ()),
        compute_type=values.get(keys.COMPUTE_TYPE),
        min_cuda_version=values.get(keys.MIN_CUDA_VERSION),
        cuda_versions=values.get(keys.CUDA_VERSIONS),
        cpu_types=values.get(keys.CPU_TYPES),
        max_vcpu_price=values.get(keys.MAX_VCPU_PRICE),
        ssh=values.get(keys.SSH, keys.SSH_ENABLED) != keys.SSH_DISABLED,
        origins=tuple((key, origin) for key, (_, origin) in merged.items()),
        raw=tuple((key, raw) for key, (raw, _) in merged.items()),
    )


class _Bad(Exception):
    def __init__(self, reason: str, allowed: str, code: int = 422) -> None:
        super().__init__(reason)
        self.reason, self.allowed, self.code = reason, allowed, code


def _integer(raw: str, bounds: tuple[int, int], unit: str) -> int:
    low, high = bounds
    allowed = f"an integer {unit}, {low}..{high}"
    if not raw.isascii() or not raw.isdigit():
        raise _Bad("not an integer", allowed)
    value = int(raw)
    if not low <= value <= high:
        raise _Bad("out of range", allowed)
    return value


def _memory(raw: str, _caps: Caps) -> int:
    return _integer(raw, MEMORY_RANGE, "number of GB per GPU")


def _disk(raw: str, _caps: Caps) -> int:
    return _integer(raw, DISK_RANGE, "number of GB")


def _capped_price(raw: str, cap: float, unit: str) -> float:
    allowed = f"USD per {unit}-hour, > 0 and <= the node cap {cap:g}"
    try:
        value = float(raw)
    except ValueError:
        raise _Bad("not a number", allowed) from None
    if not math.isfinite(value) or value <= 0:
        raise _Bad("must be a positive number", allowed)
    if value > cap:
        raise _Bad(f"above the node cap ${cap:g}/{unit}-hour", allowed, code=FORBIDDEN)
    return value


def _price(raw: str, caps: Caps) -> float:
    return _capped_price(raw, caps.gpu, "GPU")


def _vcpu_price(raw: str, caps: Caps) -> float:
    return _capped_price(raw, caps.vcpu, "vCPU")


def _compute(raw: str, _caps: Caps) -> ComputeType:
    for compute in COMPUTE_TYPES:
        if raw == compute:
            return compute
    hint = f"; did you mean {raw.upper()}?" if raw.upper() in COMPUTE_TYPES else ""
    raise _Bad(
        f"unknown compute type{hint}",
        f"GPU (a RunPod GPU pod) or CPU (a RunPod CPU pod, no GPU); default: GPU with a {GPU_RESOURCE} limit, else CPU",
    )


_CUDA_ALLOWED: Final = "a CUDA version as major.minor, e.g. 12.4 (a bare major such as 12 names no version)"


def _cuda_version(raw: str, _caps: Caps) -> str:
    try:
        parse_cuda_version(raw)
    except ValueError:
        raise _Bad("not a CUDA version", _CUDA_ALLOWED) from None
    return raw


def _cuda_versions(raw: str, _caps: Caps) -> tuple[str, ...]:
    allowed = f"a comma-separated list of CUDA versions, each {_CUDA_ALLOWED}"
    versions = parse_id_list(raw)
    if not versions:
        raise _Bad("empty list", allowed)
    bad = [v for v in versions if not _is_cuda_version(v)]
    if bad:
        raise _Bad(f"not a CUDA version: {quote_items(bad)}", allowed)
    return versions


def _is_cuda_version(text: str) -> bool:
    try:
        parse_cuda_version(text)
    except ValueError:
        return False
    return True


def _cloud(raw: str, _caps: Caps) -> Cloud:
    for cloud in CLOUDS:
        if raw == cloud:
            return cloud
    hint = f"; did you mean {raw.upper()}?" if raw.upper() in CLOUDS else suggest(raw.upper(), CLOUDS)
    raise _Bad(f"unknown cloud type{hint}", " or ".join(CLOUDS))


def _id_list(raw: str, what: str) -> tuple[str, ...]:
    ids = parse_id_list(raw)
    if not ids:
        raise _Bad("empty list", f"a comma-separated list of {what}")
    for item in ids:
        if len(item) > _MAX_ID_CHARS:
            raise _Bad(f"an id longer than {_MAX_ID_CHARS} characters", f"a comma-separated list of {what}")
    return ids


def _gpu_types(raw: str, _caps: Caps) -> tuple[str, ...]:
    return _id_list(raw, "RunPod GPU type ids (e.g. NVIDIA A40)")


def _cpu_types(raw: str, _caps: Caps) -> tuple[str, ...]:
    return _id_list(raw, "RunPod CPU flavour ids (e.g. cpu5c)")


def _datacenters(raw: str, _caps: Caps) -> tuple[str, ...]:
    return _id_list(raw, "RunPod data-center ids (e.g. EU-RO-1)")


def _ports(raw: str, _caps: Caps) -> tuple[Port, ...]:
    # An empty value is a deliberate "expose nothing": the override replaces detection entirely.
    allowed = "a comma-separated list of PORT/http or PORT/tcp, PORT 1..65535, each port once"
    ports: list[Port] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            port = parse_port(part)
        except ValueError as exc:
            # parse_port's message repeats the whole part: bounded, however long the part.
            raise _Bad(clip(str(exc), _MAX_REASON_CHARS), allowed) from None
        if any(p.number == port.number for p in ports):
            raise _Bad(f"port {port.number} listed twice", allowed)
        ports.append(port)
    return tuple(ports)


def _container_names(raw: str, _caps: Caps) -> tuple[str, ...]:
    allowed = "a comma-separated list of container names (lowercase DNS labels, at most 63 characters)"
    names = parse_id_list(raw)
    if not names:
        raise _Bad("empty list", allowed)
    bad = [name for name in names if not _CONTAINER_NAME.fullmatch(name)]
    if bad:
        raise _Bad(f"not a container name: {quote_items(bad)}", allowed)
    return names


def _ssh(raw: str, _caps: Caps) -> str:
    if raw not in keys.SSH_VALUES:
        raise _Bad(f"not an SSH setting{suggest(raw.lower(), keys.SSH_VALUES)}", " or ".join(keys.SSH_VALUES))
    return raw


def _identifier(raw: str, _caps: Caps) -> str:
    allowed = f"a non-empty RunPod id without spaces, at most {_MAX_ID_CHARS} characters"
    if not raw or len(raw) > _MAX_ID_CHARS or any(c.isspace() or c == "," for c in raw):
        raise _Bad("not a RunPod id", allowed)
    return raw


_READERS: Final = {
    keys.REQUIRED_GPU_MEMORY: _memory,
    keys.GPU_TYPES: _gpu_types,
    keys.MAX_GPU_PRICE: _price,
    keys.CLOUD_TYPE: _cloud,
    keys.DATACENTER_IDS: _datacenters,
    keys.PORTS: _ports,
    keys.CONTAINER_REGISTRY_AUTH_ID: _identifier,
    keys.TEMPLATE_ID: _identifier,
    keys.CONTAINER_DISK_GB: _disk,
    keys.DROP_CONTAINERS: _container_names,
    keys.COMPUTE_TYPE: _compute,
    keys.MIN_CUDA_VERSION: _cuda_version,
    keys.CUDA_VERSIONS: _cuda_versions,
    keys.CPU_TYPES: _cpu_types,
    keys.MAX_VCPU_PRICE: _vcpu_price,
    keys.SSH: _ssh,
}


def detect_ports(spec: Mapping[str, Any]) -> tuple[tuple[Port, ...], tuple[str, ...]]:
    """Ports from `containerPort`s: well-known web ports are http, the rest tcp; plus warnings.

    RunPod exposes TCP only, so UDP/SCTP ports are left out with a warning rather than silently.
    """
    ports: list[Port] = []
    warnings: list[str] = []
    for container in _list(spec.get("containers")):
        if not isinstance(container, Mapping):
            continue
        for entry in _list(container.get("ports")):
            if not isinstance(entry, Mapping):
                continue
            number = entry.get("containerPort")
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
                continue
            protocol = entry.get("protocol") or "TCP"
            if protocol != "TCP":
                warnings.append(
                    f"containerPort {number}/{protocol} not exposed: RunPod exposes TCP ports only"
                )
                continue
            if any(p.number == number for p in ports):
                continue
            ports.append(Port(number=number, protocol="http" if number in HTTP_PORTS else "tcp"))
    return tuple(ports), tuple(warnings)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
