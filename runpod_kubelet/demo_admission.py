"""The webhook's decision applied client-side, for clusters whose apiserver cannot call us.

An external apiserver (kind, minikube, a real cluster) cannot reach a webhook listening on this
machine's loopback, so on such a cluster the demo installs no webhook configuration. Instead it
runs the very functions the webhook runs (`webhook.admission.mutate` and `validate`) on the
manifest before `kubectl apply`: a bad pod is refused with the same message, and a Job's pod
template receives the same plan annotations the webhook would have written on each of its pods
(the Job controller then copies them onto every pod it creates).

Also used by the tests of `examples/`: every example must be admitted by exactly this function
against the sandbox's catalog.

Owns: turning a manifest (Pod or Job) into an admission request, applying the resulting
JSONPatch, and carrying a Job template's result back into the Job. No I/O.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from contract.catalog import Catalog
from contract.policy import NodePolicy
from webhook.admission import mutate, validate
from webhook.reviews import AdmissionRequest, Verdict

__all__ = ["Admitted", "Refused", "admit_manifest", "apply_json_patch"]

_CLIENT_SIDE_UID: Final = "client-side"


class Refused(Exception):
    """The webhook's function refused the object; `message` is what kubectl would print."""

    def __init__(self, message: str, *, code: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Admitted:
    """The manifest with the plan written in, and the warnings kubectl would have printed."""

    manifest: dict[str, Any]
    warnings: tuple[str, ...]
    # The admitted pod (for a Job: a pod made from its template) with its annotations.
    pod: dict[str, Any]


def apply_json_patch(document: Mapping[str, Any], ops: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The subset of RFC 6902 the webhook emits (`add`, `remove`, `replace` on object members
    and list indices). Returns a new document."""
    result: dict[str, Any] = copy.deepcopy(dict(document))
    for op in ops:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in str(op["path"]).split("/")[1:]]
        if not tokens:
            raise ValueError(f"patch op on the whole document is not supported: {op}")
        parent: Any = result
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "remove":
                del parent[index]
            elif kind == "replace":
                parent[index] = op["value"]
            else:
                raise ValueError(f"unsupported patch op {kind!r}")
        elif kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        else:
            raise ValueError(f"unsupported patch op {kind!r}")
    return result


def admit_manifest(
    manifest: Mapping[str, Any], *, namespace: str, catalog: Catalog, policy: NodePolicy
) -> Admitted:
    """A Pod or Job manifest as the webhooks would leave it; raises `Refused`.

    A Job is admitted through a pod made from its template, owned by the Job, with the Job's
    own annotations as the fallback (as the webhook's Job cache provides them).
    """
    kind = manifest.get("kind")
    if kind == "Pod":
        pod = copy.deepcopy(dict(manifest))
        admitted_pod, warnings = _admit_pod(
            pod, namespace=namespace, catalog=catalog, policy=policy, job=None
        )
        return Admitted(manifest=admitted_pod, warnings=warnings, pod=admitted_pod)
    if kind == "Job":
        job = copy.deepcopy(dict(manifest))
        template = job.setdefault("spec", {}).setdefault("template", {})
        job_name = str((job.get("metadata") or {}).get("name") or "job")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **copy.deepcopy(template.get("metadata") or {}),
                "name": f"{job_name}-client-side",
                "namespace": namespace,
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": _CLIENT_SIDE_UID}
                ],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        job_annotations = dict((job.get("metadata") or {}).get("annotations") or {})
        admitted_pod, warnings = _admit_pod(
            pod, namespace=namespace, catalog=catalog, policy=policy, job=job_annotations
        )
        metadata = dict(template.get("metadata") or {})
        metadata["annotations"] = dict((admitted_pod.get("metadata") or {}).get("annotations") or {})
        template["metadata"] = metadata
        template["spec"] = admitted_pod["spec"]
        return Admitted(manifest=job, warnings=warnings, pod=admitted_pod)
    raise ValueError(f"only Pod and Job manifests are admitted here, not {kind!r}")


def _admit_pod(
    pod: dict[str, Any],
    *,
    namespace: str,
    catalog: Catalog,
    policy: NodePolicy,
    job: Mapping[str, str] | None,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    name = str((pod.get("metadata") or {}).get("name") or "")
    request = AdmissionRequest(
        uid=_CLIENT_SIDE_UID,
        operation="CREATE",
        namespace=namespace,
        name=name,
        kind="Pod",
        sub_resource="",
        object=pod,
        old_object=None,
    )
    verdict = mutate(
        request,
        catalog=catalog,
        policy=policy,
        jobs=(lambda _ns, _name, _uid: job) if job is not None else None,
    )
    _raise_if_refused(verdict)
    patched = apply_json_patch(pod, verdict.patch)
    checked = validate(dataclasses.replace(request, object=patched), policy=policy)
    _raise_if_refused(checked)
    return patched, verdict.warnings


def _raise_if_refused(verdict: Verdict) -> None:
    if not verdict.allowed:
        raise Refused(verdict.message or "denied", code=verdict.code)
