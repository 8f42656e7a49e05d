"""`make bench`'s webhook benchmark still runs end to end and reports every path it promises.

Tiny sizes: this checks the harness (TLS, the real control plane, the no-op webhooks, the plan
check on every created pod), never the numbers, which are only meaningful from `make bench`.
"""

from __future__ import annotations

import shutil

import pytest

from benchmarks import webhook_bench

pytestmark = pytest.mark.cluster


def test_webhook_bench_reports_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    # Missed targets (certain at these sizes) are printed; the exit status says it measured.
    assert webhook_bench.main(["--requests", "40", "--rounds", "1", "--pods", "3"]) == 0
    out = capsys.readouterr().out
    for row in ("floor (fixed review)", "webhook /mutate"):
        assert row in out
    assert "errors 0 == 0" in out
    rows = [
        "without webhook configurations",
        "no-op FastAPI, by URL",
        "no-op FastAPI, by Service",
        "no-op answering our patch",
        "runpod-kubelet, mutate only",
        "runpod-kubelet webhook",
        "runpod-kubelet, UPDATEs too",
        "no admission on UPDATE",
        "admission policy only (as shipped)",
        "policy + validating webhook on UPDATE",
    ]
    if shutil.which("go"):
        rows.append("no-op in Go, by URL")
    for row in rows:
        assert row in out, f"{row!r} missing from:\n{out}"
    assert "target: p99 overhead" in out
    assert "our server (ours vs the no-op answering our patch)" in out
    assert "validate on CREATE (ours vs ours without the validating webhook)" in out
    assert "binder state-annotation write (merge PATCH of runpod.io/pod-id): 3 per path" in out
    assert "the webhook on UPDATE adds p99" in out
    if shutil.which("go"):
        assert "<= the Go no-op pair's" in out
    assert "webhook bench: " in out
