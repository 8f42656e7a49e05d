"""The release workflow's own shell steps, run here as GitHub runs them, with the real helm.

.github/workflows/release.yml derives the image and chart names from the tag, packages the
chart and checks that it installs exactly the image the run pushes. Those steps are plain bash;
these tests execute them (`bash --noprofile --norc -eo pipefail`, as `shell: bash` does) on a
copy of the chart, with GitHub's variables and step outputs wired as the runner would, and look
inside the package helm wrote. The registry steps (docker/*-action, `helm push`) cannot run
here; for them the tests check the wiring: what is pushed, in which order, pinned to what.
`make lint` runs actionlint with shellcheck on the same file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import CHART, REPO, fetch_helm

WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
STEP_OUTPUT = re.compile(r"^\$\{\{ *steps\.([\w-]+)\.outputs\.([\w-]+) *\}\}$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load_workflow(path: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def release_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = load_workflow(RELEASE)["jobs"]["publish"]["steps"]
    return steps


def step_by_id(step_id: str) -> dict[str, Any]:
    return next(step for step in release_steps() if step.get("id") == step_id)


def step_using(action: str) -> dict[str, Any]:
    return next(step for step in release_steps() if step.get("uses", "").startswith(f"{action}@"))


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    outputs: dict[str, str]


class Runner:
    """Runs `run:` steps in `workspace` with GitHub's variables for one tag push."""

    def __init__(self, *, workspace: Path, helm: Path, tag: str, owner: str) -> None:
        self.workspace = workspace
        self.helm = helm
        self.github = {"GITHUB_REF_NAME": tag, "GITHUB_REPOSITORY_OWNER": owner, "GITHUB_ACTOR": owner}
        self.outputs: dict[str, dict[str, str]] = {}

    def run(self, step_id: str) -> Run:
        step = step_by_id(step_id)
        home = self.workspace / ".home"
        home.mkdir(exist_ok=True)
        output_file = self.workspace / f".output-{step_id}"
        output_file.write_text("")
        script = self.workspace / f".step-{step_id}.sh"
        script.write_text(step["run"])
        env = {
            "PATH": f"{self.helm.parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "GITHUB_OUTPUT": str(output_file),
            **self.github,
            **{name: self._resolve(value) for name, value in (step.get("env") or {}).items()},
        }
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if line)
        if done.returncode == 0:
            self.outputs[step_id] = outputs
        return Run(done.returncode, done.stdout + done.stderr, outputs)

    def _resolve(self, value: str) -> str:
        match = STEP_OUTPUT.match(value)
        if match is None:
            raise AssertionError(f"this harness only wires step outputs into env, not {value!r}")
        return self.outputs[match.group(1)][match.group(2)]


@pytest.fixture(scope="module")
def helm() -> Path:
    return fetch_helm()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(CHART, tmp_path / "charts" / CHART.name)
    return tmp_path


def packaged(package: Path) -> tuple[dict[str, Any], str]:
    """(Chart.yaml, values.yaml text) from inside a chart archive."""
    with tarfile.open(package) as tar:

        def read(member: str) -> str:
            extracted = tar.extractfile(f"{CHART.name}/{member}")
            assert extracted is not None
            return extracted.read().decode()

        return yaml.safe_load(read("Chart.yaml")), read("values.yaml")


def rendered_images(helm: Path, package: Path) -> set[str]:
    manifests = subprocess.run(
        [str(helm), "template", "rk", str(package)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return set(re.findall(r"^\s*image: *\"?([^\"\s]+)", manifests, flags=re.MULTILINE))


def upstream_owner() -> str:
    home = yaml.safe_load((CHART / "Chart.yaml").read_text())["home"]
    match = re.fullmatch(r"https://github\.com/([^/]+)/[^/]+", home)
    assert match, home
    return match.group(1)


def default_repository() -> str:
    repository: str = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    return repository


def test_a_release_of_the_charts_home_repository_packages_the_chart_unchanged_but_for_its_version(
    workspace: Path, helm: Path
) -> None:
    runner = Runner(workspace=workspace, helm=helm, tag="v1.2.3", owner=upstream_owner())
    names = runner.run("names")
    assert names.returncode == 0, names.stdout
    chart = runner.run("chart")
    assert chart.returncode == 0, chart.stdout

    metadata, values = packaged(workspace / chart.outputs["package"])
    assert (metadata["version"], metadata["appVersion"]) == ("1.2.3", "1.2.3")
    # The image this release pushes is the one the chart in the repository defaults to.
    assert values == (CHART / "values.yaml").read_text()
    default = yaml.safe_load(values)["image"]
    assert names.outputs["image"] == default["repository"]
    assert default["tag"] == ""
    assert rendered_images(helm, workspace / chart.outputs["package"]) == {f"{default['repository']}:1.2.3"}


def test_a_forks_release_points_its_chart_at_the_image_the_fork_pushes(workspace: Path, helm: Path) -> None:
    runner = Runner(workspace=workspace, helm=helm, tag="v2.0.0-rc.1", owner="Some-Fork")
    names = runner.run("names")
    assert names.outputs == {
        "version": "2.0.0-rc.1",
        "image": "ghcr.io/some-fork/runpod-kubelet",
        "charts": "oci://ghcr.io/some-fork/charts",
    }
    chart = runner.run("chart")
    assert chart.returncode == 0, chart.stdout

    package = workspace / chart.outputs["package"]
    metadata, values = packaged(package)
    assert (metadata["version"], metadata["appVersion"]) == ("2.0.0-rc.1", "2.0.0-rc.1")
    original = (CHART / "values.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(original, values.splitlines(), strict=True) if a != b]
    assert changed == [
        (f"  repository: {default_repository()}", "  repository: ghcr.io/some-fork/runpod-kubelet")
    ]
    assert rendered_images(helm, package) == {"ghcr.io/some-fork/runpod-kubelet:2.0.0-rc.1"}


@pytest.mark.parametrize("tag", ["v1.2.3.4", "vnext.big.thing", "v1.2.3+build.5"])
def test_a_tag_the_trigger_accepts_but_that_is_no_semver_version_stops_the_release(
    workspace: Path, helm: Path, tag: str
) -> None:
    (pattern,) = load_workflow(RELEASE)["on"]["push"]["tags"]
    assert fnmatch.fnmatchcase(tag, pattern)
    names = Runner(workspace=workspace, helm=helm, tag=tag, owner="someone").run("names")
    assert names.returncode != 0
    assert f"::error::tag '{tag}'" in names.stdout
    assert names.outputs == {}


def test_a_chart_whose_default_image_is_not_the_pushed_one_is_not_released(
    workspace: Path, helm: Path
) -> None:
    values = workspace / "charts" / CHART.name / "values.yaml"
    values.write_text(values.read_text().replace('  tag: ""', '  tag: "latest"', 1))
    runner = Runner(workspace=workspace, helm=helm, tag="v1.2.3", owner="someone")
    runner.run("names")
    chart = runner.run("chart")
    assert chart.returncode != 0
    assert "default image is 'ghcr.io/someone/runpod-kubelet:latest'" in chart.stdout
    assert "package" not in chart.outputs


def test_the_image_is_tagged_with_the_charts_app_version_and_pushed_before_the_chart() -> None:
    meta = step_using("docker/metadata-action")
    assert meta["with"]["images"] == "${{ steps.names.outputs.image }}"
    # The first tag is metadata-action's `version` output; the next step compares it with the
    # appVersion the chart step sets, so a changed pattern fails the release, not the install.
    assert meta["with"]["tags"].split()[0] == "type=semver,pattern={{version}}"
    build = step_using("docker/build-push-action")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert (build["with"]["push"], build["with"]["tags"]) == (True, "${{ steps.meta.outputs.tags }}")

    steps = release_steps()
    order = [steps.index(step_by_id("chart")), steps.index(build)]
    order += [i for i, step in enumerate(steps) if "helm push" in step.get("run", "")]
    assert order == sorted(order) and len(order) == 3


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_a_workflow_pins_every_action_to_a_commit_and_grants_no_more_than_it_needs(path: Path) -> None:
    workflow = load_workflow(path)
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and [u for u in uses if not PINNED.match(u)] == []
    expected = {"contents": "read", "packages": "write"} if path == RELEASE else {"contents": "read"}
    assert workflow["permissions"] == expected
    assert all("permissions" not in job for job in workflow["jobs"].values())
