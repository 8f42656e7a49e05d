"""The completion wrapper and its exit marker: how a Job's exit code survives RunPod."""

from __future__ import annotations

import shlex

from binder.pods.completion import parse_exit_marker, runpod_args, wants_wrapper, wrap_command

UID = "0d4c1e52-aaaa-bbbb-cccc-000011112222"


def test_wrapper_matches_the_documented_shape() -> None:
    container = {"command": ["sh", "-c", "echo hi; exit 3"]}
    args = runpod_args(restart_policy="Never", container=container, uid=UID)
    assert args == (
        "sh -c 'sh -c '\"'\"'echo hi; exit 3'\"'\"'; rc=$?; "
        f'echo "::rpvk-exit::{UID}::$rc"; sleep infinity\''
    )


def test_wrapped_script_is_one_shell_word_that_runs_the_exact_user_argv() -> None:
    container = {"command": ["python", "-c", "print('a b')"], "args": ["--flag", "it's"]}
    args = runpod_args(restart_policy="OnFailure", container=container, uid=UID)
    tokens = shlex.split(args)
    assert tokens[:2] == ["sh", "-c"] and len(tokens) == 3
    script = tokens[2]
    user = script.split("; rc=$?")[0]
    assert shlex.split(user) == ["python", "-c", "print('a b')", "--flag", "it's"]


def test_always_pods_and_pods_without_command_are_not_wrapped() -> None:
    assert runpod_args(
        restart_policy="Always", container={"command": ["serve"], "args": ["--port", "80"]}, uid=UID
    ) == ("serve --port 80")
    assert runpod_args(restart_policy="Never", container={"args": ["train", "--epochs=1"]}, uid=UID) == (
        "train --epochs=1"
    )
    assert runpod_args(restart_policy="Never", container={}, uid=UID) == ""
    assert not wants_wrapper(restart_policy="Never", container={"args": ["x"]})
    assert wants_wrapper(restart_policy="Never", container={"command": ["x"]})
    assert not wants_wrapper(restart_policy=None, container={"command": ["x"]})


def test_marker_parses_only_for_this_pod() -> None:
    assert parse_exit_marker(f"::rpvk-exit::{UID}::3", uid=UID) == 3
    assert parse_exit_marker(f"noise ::rpvk-exit::{UID}::0 trailing", uid=UID) == 0
    assert parse_exit_marker(f"::rpvk-exit::{UID}::3", uid="someone-else") is None
    assert parse_exit_marker("::rpvk-exit::", uid=UID) is None
    assert parse_exit_marker("hello world", uid=UID) is None


def test_the_wrapper_text_itself_does_not_look_like_an_exit() -> None:
    # A log line echoing the command (e.g. `set -x`) must not fake an exit code.
    assert parse_exit_marker(wrap_command("true", uid=UID), uid=UID) is None
