"""The project's image, built from the Dockerfile by `tools/image/build` (cached by content).

`built_image()` runs the script (it returns at once when nothing that goes into the image
changed) and returns the reference and the docker-archive to import into a node. Building is
the script's business; this module only runs it and reads its two output lines.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["BuiltImage", "ImageBuildFailed", "built_image"]

_SCRIPT: Final = Path(__file__).resolve().parent.parent / "tools" / "image" / "build"


class ImageBuildFailed(RuntimeError):
    """tools/image/build exited non-zero; its progress went to this process's stderr."""


@dataclass(frozen=True)
class BuiltImage:
    reference: str  # localhost/runpod-kubelet:<content hash>
    archive: Path

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def built_image() -> BuiltImage:
    result = subprocess.run([str(_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or len(lines) < 2:
        raise ImageBuildFailed(f"{_SCRIPT} failed with exit code {result.returncode}")
    return BuiltImage(reference=lines[-2], archive=Path(lines[-1]))
