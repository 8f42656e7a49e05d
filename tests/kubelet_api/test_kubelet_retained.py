"""`kubectl logs` of a finished pod from retained lines: the same options as live logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from binder.kubelet_api.options import LogOptions, LogRequestError, parse_log_options
from binder.kubelet_api.shaping import Shown, render_retained
from binder.kubelet_api.targets import resolve_target
from contract.annotations import POD_ID, TERMINATED

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
LINES = [Shown(ts=T0 + timedelta(seconds=n), text=f"step {n}") for n in range(5)]
NODE = "runpod"


def answer(**query: str) -> bytes:
    options = parse_log_options(query, now=T0 + timedelta(seconds=10))
    return render_retained(LINES, options=options)


def test_all_retained_lines_are_shown_in_order() -> None:
    assert answer() == b"step 0\nstep 1\nstep 2\nstep 3\nstep 4\n"


def test_tail_lines_shows_the_last_n_and_zero_shows_nothing() -> None:
    assert answer(tailLines="2") == b"step 3\nstep 4\n"
    assert answer(tailLines="9") == answer()
    assert answer(tailLines="0") == b""


def test_since_applies_before_the_tail() -> None:
    # sinceSeconds=7 at T0+10 s: lines from T0+3 s on.
    assert answer(sinceSeconds="7") == b"step 3\nstep 4\n"
    assert answer(sinceTime="2026-06-01T12:00:02Z", tailLines="1") == b"step 4\n"


def test_timestamps_and_limit_bytes_shape_retained_lines_as_live_ones() -> None:
    assert answer(tailLines="1", timestamps="true") == b"2026-06-01T12:00:04.000000000Z step 4\n"
    assert answer(limitBytes="10") == b"step 0\nste"


def test_follow_on_retained_lines_returns_them_and_ends() -> None:
    assert render_retained(LINES[-1:], options=LogOptions(follow=True)) == b"step 4\n"


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "train", "namespace": "ml", "uid": "u-1", "annotations": annotations},
        "spec": {"nodeName": NODE, "containers": [{"name": "main"}]},
    }


def test_a_terminated_pod_is_a_retained_target_only_when_the_caller_accepts_it() -> None:
    pod = _pod({POD_ID: "rp1", TERMINATED: "true"})
    target = resolve_target(
        pod, namespace="ml", name="train", container="main", node_name=NODE, accept_terminated=True
    )
    assert target.terminated and target.pod_uid == "u-1" and target.runpod_pod_id == "rp1"
    with pytest.raises(LogRequestError, match="no longer available"):
        resolve_target(pod, namespace="ml", name="train", container="main", node_name=NODE)
    live = resolve_target(
        _pod({POD_ID: "rp1"}),
        namespace="ml",
        name="train",
        container="main",
        node_name=NODE,
        accept_terminated=True,
    )
    assert not live.terminated
