"""The container interpreter runs the shell the binder's completion wrapper relies on."""

from __future__ import annotations

import shlex

import pytest

from sandbox.interpreter import LineSplitter, run_script, run_shell


async def run(script: str, env: dict[str, str] | None = None) -> tuple[int, list[str], list[float]]:
    lines: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    splitter = LineSplitter(lines.append)
    code = await run_script(script, env=env or {}, write=splitter.write, sleep=sleep)
    splitter.flush()
    return code, lines, slept


def completion_wrapper(user_script: str, uid: str) -> str:
    """The shape the binder uses: run the workload in a subshell, print its code, then idle."""
    inner = f'sh -c {shlex.quote(user_script)}; rc=$?; echo "::rpvk-exit::{uid}::$rc"; sleep infinity'
    return f"sh -c {shlex.quote(inner)}"


async def test_completion_wrapper_reports_the_workload_exit_code_then_idles() -> None:
    code, lines, slept = await run(completion_wrapper("echo hi; exit 3", "uid-1"))
    assert lines == ["hi", "::rpvk-exit::uid-1::3"]
    assert slept == [float("inf")]
    assert code == 0


async def test_the_binder_wrapper_string_from_the_interface_parses() -> None:
    args = """sh -c 'sh -c '"'"'echo hi; exit 3'"'"'; rc=$?; echo "::rpvk-exit::u1::$rc"; sleep infinity'"""
    _, lines, _ = await run(args)
    assert lines == ["hi", "::rpvk-exit::u1::3"]


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 3", 3), ("sleep 2; exit 0", 0), ("true", 0), ("false", 1), ("exit 300", 44), ("nosuchcmd", 127)],
)
async def test_exit_codes(script: str, code: int) -> None:
    assert (await run(script))[0] == code


async def test_exit_in_a_nested_shell_ends_only_that_shell() -> None:
    code, lines, _ = await run("bash -lc 'exit 7'; echo after=$?; /bin/sh -c 'echo inner; exit 0'; echo $?")
    assert (code, lines) == (0, ["after=7", "inner", "0"])


async def test_and_or_lists_and_errexit() -> None:
    _, lines, _ = await run("false && echo no; false || echo yes; true && echo ok || echo never")
    assert lines == ["yes", "ok"]
    _, lines, _ = await run("sh -ec 'echo a; false; echo unreachable'; echo rc=$?")
    assert lines == ["a", "rc=1"]


async def test_quotes_expansion_and_pod_env() -> None:
    script = "X=1; echo \"$X ${RPVK_OWNER} ${UNSET:-dflt}\" '$X' \\$X; printf '%s-%d\\n' a 5 b 6"
    _, lines, _ = await run(script, env={"RPVK_OWNER": "c1/ns/web"})
    assert lines == ["1 c1/ns/web dflt $X $X", "a-5", "b-6"]


async def test_echo_without_newline_and_unknown_commands() -> None:
    _, lines, _ = await run("echo -n 'part '; echo done; python train.py --epochs 3")
    assert lines == ["part done", "sh: python: not found"]


async def test_sleep_arguments_and_syntax_errors() -> None:
    code, _, slept = await run("sleep 2; sleep 1.5m; sleep infinity")
    assert slept == [2.0, 90.0, float("inf")] and code == 0
    code, lines, _ = await run("echo 'unterminated")
    assert code == 2 and lines == ["sh: syntax error: unterminated quoted string"]


class Piped:
    """Standard input from a string, handed out in small chunks as a channel would."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def read(self) -> str:
        chunk, self.text = self.text[:3], self.text[3:]
        return chunk

    async def readline(self) -> str:
        line, newline, self.text = self.text.partition("\n")
        return line + newline


async def run_io(
    script: str | None, stdin: str = "", terminal: tuple[int, int] | None = None
) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []

    async def sleep(seconds: float) -> None:
        return None

    size = (lambda: terminal) if terminal is not None else None
    io = {
        "write": out.append,
        "write_err": err.append,
        "sleep": sleep,
        "stdin": Piped(stdin),
        "terminal": size,
    }
    if script is None:
        code = await run_shell(env={"HOSTNAME": "box"}, **io)  # type: ignore[arg-type]
    else:
        code = await run_script(script, env={"HOSTNAME": "box"}, **io)  # type: ignore[arg-type]
    return code, "".join(out), "".join(err)


async def test_cat_copies_stdin_and_error_messages_go_to_stderr() -> None:
    assert await run_io("cat; nosuch; cat /etc/passwd", stdin="a\nbc") == (
        1,
        "a\nbc",
        "sh: nosuch: not found\ncat: /etc/passwd: No such file or directory\n",
    )


async def test_a_shell_without_a_script_reads_it_from_stdin_and_prompts_only_on_a_terminal() -> None:
    script = "echo one\nread A B\nx y z\necho $B-$A\nexit 9\necho never\n"
    assert await run_io("sh", stdin=script) == (9, "one\ny z-x\n", "")
    assert await run_io(None, stdin="hostname\n", terminal=(80, 24)) == (0, "box\n", "# # ")


async def test_the_terminal_size_is_what_stty_and_tput_report() -> None:
    assert await run_io("stty size; tput cols; tput lines", terminal=(132, 43)) == (
        0,
        "43 132\n132\n43\n",
        "",
    )
    assert await run_io("stty size") == (1, "", "stty: 'standard input': Inappropriate ioctl for device\n")
    assert (await run_io("tput cols"))[1] == "80\n"
