"""The image's install steps, run without a Docker engine.

Mirrors the Dockerfile stage by stage: copy the build context as .dockerignore filters it, `pip
wheel --no-deps` it (with build isolation, as in the image), install the wheel into a fresh venv
and run the one console script. The only shortcut: dependencies are not downloaded again; the
fresh venv sees the project venv's site-packages through a path entry (whose .pth files,
including the editable install's, are not processed), and the wheel is installed on top of it,
so every one of our modules is imported from the wheel.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("webhook", "binder", "certs", "sandbox")


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_build_context(into: Path) -> None:
    patterns = dockerignore_patterns()

    def ignored(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(REPO)
        out: set[str] = set()
        for name in names:
            path = (relative / name).as_posix()
            for pattern in patterns:
                anywhere = pattern.removeprefix("**/")
                if fnmatch.fnmatch(path, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatch(name, anywhere)
                ):
                    out.add(name)
        return out

    shutil.copytree(REPO, into, ignore=ignored)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image")
    context, wheels, venv = root / "src", root / "wheels", root / "venv"
    copy_build_context(context)
    # FROM ... AS build: RUN pip wheel --no-deps --wheel-dir /wheels .
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=context,
        check=True,
        capture_output=True,
    )
    # FROM ... AS install: RUN python -m venv /opt/runpod-kubelet && pip install /wheels/*.whl
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (purelib / "_project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next(wheels.glob("runpod_kubelet-*.whl"))
    subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--quiet", "--no-deps", "--ignore-installed", "--no-compile", str(wheel),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment and a neutral cwd: nothing may come from the source tree.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(venv), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(list(args), cwd=venv, env=env, capture_output=True, text=True, timeout=120)


def test_the_console_script_from_the_wheel_prints_every_subcommand(installed: Path) -> None:
    result = run(installed, str(installed / "bin" / "runpod-kubelet"), "--help")

    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_every_package_is_imported_from_the_wheel_not_the_source_tree(installed: Path) -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {(*SUBCOMMANDS, 'contract', 'kit', 'runpod_kubelet')!r}:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    result = run(installed, str(installed / "bin" / "python"), "-c", code)

    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert files
    assert all(f.startswith(str(installed)) for f in files), files


def test_certs_runs_from_the_installed_image(installed: Path, tmp_path: Path) -> None:
    result = run(
        installed,
        str(installed / "bin" / "runpod-kubelet"),
        "certs", "generate", "--service", "svc", "--namespace", "ns", "--out", str(tmp_path),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_the_dockerfile_runs_as_a_non_root_user_with_the_console_script_as_entrypoint() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "USER 10001:10001" in final_stage
    assert 'ENTRYPOINT ["runpod-kubelet"]' in final_stage
