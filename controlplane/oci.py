"""A one-layer image as a docker-archive tarball, written without any image tool.

For the node's pause image: one static binary as the entrypoint, FROM scratch. The archive is
what `docker save` writes (manifest.json + config + layer) and what `ctr images import` reads.
Deterministic: the same files give the same bytes (fixed mtimes, sorted, no user names).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["write_image_archive"]


def _tar_bytes(members: Mapping[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data, mode = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_image_archive(
    path: Path, *, reference: str, files: Mapping[str, tuple[bytes, int]], entrypoint: Sequence[str]
) -> None:
    """Writes `reference` (e.g. `localhost/pause:3.10`) with `files` ({path: (bytes, mode)})."""
    layer = _tar_bytes(files)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": list(entrypoint)},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "controlplane.oci"}],
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}]
    ).encode()
    archive = _tar_bytes(
        {
            "manifest.json": (manifest, 0o644),
            config_name: (config, 0o644),
            f"{layer_digest}/layer.tar": (layer, 0o644),
        }
    )
    partial = path.with_suffix(".partial")
    partial.write_bytes(archive)
    partial.rename(path)
