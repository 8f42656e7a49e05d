"""Why RunPod says ERROR: the pod's `system` log lines, read once, turned into a kubelet's reason.

RunPod's pod object has no reason field (notes §4.1, §4.3); when a pod turns `ERROR` the only
clue is the `system` log source (host lifecycle: image pull, container create), e.g.
`error pulling image ghcr.io/acme/private:1: pull access denied or repository not found`. So
when the sync loop first sees a pod in `ERROR` it reads that pod's last system lines ONCE
(`read_system_tail`: one `GET /v2/pods/{id}/logs?source=system&tail=20` request, held at most a
few seconds) and `diagnose_error` maps them to what a kubelet would say:

    an image-pull line      ErrImagePull (container waiting, the line as message; Event
                            `Failed`: "Failed to pull image ...", as a kubelet records it)
    any other line          ProviderError, the last line quoted in the message
    no line at all          ProviderError, "RunPod exposes no exit code or reason" (as before)

This is the one RunPod call beyond the one list per sync tick, justified by being once per pod
and only on its way to Failed (the pod is terminated right after). `diagnose_error` is pure;
`read_system_tail` is the I/O edge and never raises (no lines = no diagnosis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from runpod_api.errors import RunPodError

log = logging.getLogger(__name__)

ERR_IMAGE_PULL: Final = "ErrImagePull"
PROVIDER_ERROR: Final = "ProviderError"
SYSTEM_TAIL: Final = 20
_MAX_LINE_CHARS: Final = 400
# Lowercase fragments of the lines registries and container runtimes print when a pull fails.
_PULL_FAILURES: Final = (
    "error pulling image",
    "failed to pull",
    "pull access denied",
    "manifest unknown",
    "repository does not exist",
    "errimagepull",
    "imagepullbackoff",
)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a kubelet would say about a pod RunPod reports ERROR."""

    reason: str  # ErrImagePull | ProviderError
    message: str  # for the container state and the pod's status
    event_reason: str
    event_message: str

    @property
    def image_pull(self) -> bool:
        return self.reason == ERR_IMAGE_PULL


@dataclass(frozen=True, slots=True)
class ReadTimings:
    """Seconds. The stream sends nothing until a line exists and never ends (notes §5)."""

    first_line: float = 4.0
    idle_gap: float = 0.75
    total: float = 8.0


def diagnose_error(lines: Sequence[str], *, image: str) -> Diagnosis | None:
    """The kubelet's reason for an ERROR pod from its last `system` lines (oldest first)."""
    seen = [_clip(line.strip()) for line in lines if line.strip()]
    if not seen:
        return None
    for line in reversed(seen):
        if any(fragment in line.lower() for fragment in _PULL_FAILURES):
            return Diagnosis(
                reason=ERR_IMAGE_PULL,
                message=f"RunPod: {line}",
                event_reason="Failed",
                event_message=f'Failed to pull image "{_clip(image)}": {line} (RunPod system log)',
            )
    message = f"RunPod reports the pod ERROR; its last system log line: {seen[-1]}"
    return Diagnosis(
        reason=PROVIDER_ERROR, message=message, event_reason=PROVIDER_ERROR, event_message=message
    )


class SystemLogSource(Protocol):
    """The part of `runpod_api.client.RunPodClient` this module uses."""

    def stream_logs(
        self, pod_id: str, *, tail: int | None = None, source: str | None = None
    ) -> AsyncGenerator[Any, None]: ...


async def read_system_tail(
    runpod: SystemLogSource, pod_id: str, *, tail: int = SYSTEM_TAIL, timings: ReadTimings = ReadTimings()
) -> list[str]:
    """The pod's last `tail` system lines: one log request, closed after the backfill (the first
    line within `first_line` s, then `idle_gap` s of silence, `total` s at most). Never raises."""
    lines: list[str] = []
    stream = runpod.stream_logs(pod_id, tail=tail, source="system")
    deadline = time.monotonic() + timings.total
    try:
        async with contextlib.aclosing(stream):
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, timings.idle_gap if lines else timings.first_line)
                try:
                    event = await asyncio.wait_for(anext(stream), timeout=wait)
                except (TimeoutError, StopAsyncIteration):
                    break
                if getattr(event, "source", "system") == "system":
                    lines.append(str(getattr(event, "line", "")))
    except RunPodError as exc:
        log.info(
            "system log of RunPod pod %s unreadable (%s); no reason for its ERROR", pod_id, type(exc).__name__
        )
    return lines[-tail:]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LINE_CHARS else text[: _MAX_LINE_CHARS - 3] + "..."
