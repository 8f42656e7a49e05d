"""The tiny shell a sandbox container "runs": just enough `sh` to exercise workloads in tests.

A RunPod v2 pod has only `args` (one string handed to the image entrypoint). The sandbox treats
that string as a shell script and interprets it here:

- words: single quotes (literal), double quotes (`$` expansion, `\\"` `\\$` `\\\\` escapes),
  backslash escapes, `#` comments; no field splitting, globbing or command substitution;
- statements separated by `;`, newlines, `&&` and `||` (`|` and `&` behave like `;`: no pipes
  or background jobs exist here);
- expansion of `$VAR`, `${VAR}`, `${VAR:-default}`, `$?`, `$$`, `$#`, `$@`, `$*`, `$0`..`$9`;
- builtins `echo` (`-n`, `-e`), `printf` (`%s %d %i %%`, `\\n \\t \\\\`), `sleep N|infinity`,
  `exit N`, `true`, `false`, `:`, `export`, `unset`, `set -e`, `cd`, `exec CMD`, `env`, and
  `sh|bash|dash [-opts] -c SCRIPT [arg0 args...]` which runs SCRIPT as a subshell: its `exit`
  ends only that subshell and its code becomes `$?`;
- builtins that read standard input or the terminal (for the emulated sshd, `sandbox.sshd`):
  `cat` (stdin to stdout; files do not exist), `read VAR`, `stty size` (rows and columns of the
  terminal, as the last window change left them; other `stty` settings are accepted and
  ignored), `tput cols|lines`, `hostname`; `sh` without `-c` reads its script from stdin line
  by line, with a `# ` prompt when there is a terminal (`run_shell`: a session without a
  command, as `kubectl exec -it POD -- sh` or `kubectl attach` get);
- anything else prints `sh: <cmd>: not found` and sets `$?` to 127.

Output goes to `write` (stdout) and `write_err` (stderr: error messages; the same as `write`
unless the caller separates them). Standard input is a `Stdin` (none by default: reads see
end of input at once), the terminal a `TerminalSize` callable (none by default).

What it does not own: restarting the container when the script ends, log storage and
timestamps (the caller's `write` receives raw text; `LineSplitter` turns it into lines).
`sleep` is injected so tests and the engine control time; `sleep infinity` awaits forever
(until the task running the container is cancelled).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = ["NO_INPUT", "LineSplitter", "ShellSyntaxError", "Stdin", "TerminalSize", "run_script", "run_shell"]

Write = Callable[[str], None]
Sleep = Callable[[float], Awaitable[None]]
# (columns, rows) of the terminal now.
TerminalSize = Callable[[], tuple[int, int]]


class Stdin(Protocol):
    """A command's standard input. Both may block until input arrives; "" means end of input."""

    async def read(self) -> str:
        """Whatever input is available next (at least one character), or "" at the end."""
        ...

    async def readline(self) -> str:
        """The next line with its "\n" (the last one may lack it), or "" at the end."""
        ...


class _NoInput:
    async def read(self) -> str:
        return ""

    async def readline(self) -> str:
        return ""


NO_INPUT: Final[Stdin] = _NoInput()
PROMPT: Final = "# "

# A word is a sequence of segments; a segment is text plus whether `$` expands in it.
Segment = tuple[str, bool]
Word = tuple[Segment, ...]

_OPERATORS: Final = ("&&", "||", ";", "\n", "|", "&")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "zsh"})
_SLEEP_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
EXIT_NOT_FOUND: Final = 127
EXIT_SYNTAX: Final = 2


class ShellSyntaxError(ValueError):
    """The script cannot be parsed (e.g. an unterminated quote)."""


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class _Command:
    words: tuple[Word, ...]


@dataclass(frozen=True)
class _AndOr:
    # (operator joining this command to the previous one: "" for the first, "&&" or "||")
    parts: tuple[tuple[str, _Command], ...]


def _lex(script: str) -> list[Word | str]:
    """Split a script into words (tuples of segments) and operator strings."""
    tokens: list[Word | str] = []
    segments: list[Segment] = []
    in_word = False
    i, n = 0, len(script)

    def end_word() -> None:
        nonlocal segments, in_word
        if in_word:
            tokens.append(tuple(segments))
        segments, in_word = [], False

    while i < n:
        ch = script[i]
        if ch in " \t\r":
            end_word()
            i += 1
        elif ch == "#" and not in_word:
            while i < n and script[i] != "\n":
                i += 1
        elif ch == "\\":
            if i + 1 < n and script[i + 1] == "\n":  # line continuation
                i += 2
                continue
            in_word = True
            segments.append((script[i + 1 : i + 2], False))
            i += 2
        elif ch == "'":
            end = script.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            in_word = True
            segments.append((script[i + 1 : end], False))
            i = end + 1
        elif ch == '"':
            in_word = True
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ShellSyntaxError("unterminated quoted string")
                c = script[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and script[i + 1] in '"\\$`\n':
                    if buf:
                        segments.append(("".join(buf), True))
                        buf = []
                    if script[i + 1] != "\n":
                        segments.append((script[i + 1], False))
                    i += 2
                    continue
                buf.append(c)
                i += 1
            # An empty "" still makes a word; keep a (possibly empty) expandable segment.
            segments.append(("".join(buf), True))
        else:
            op = next((o for o in _OPERATORS if script.startswith(o, i)), None)
            if op is not None:
                end_word()
                tokens.append(op)
                i += len(op)
                continue
            in_word = True
            j = i
            while j < n and script[j] not in " \t\r\n\\'\";&|#":
                j += 1
            # `#` inside a word (a#b) is literal.
            while j < n and script[j] == "#":
                j += 1
                while j < n and script[j] not in " \t\r\n\\'\";&|#":
                    j += 1
            segments.append((script[i:j], True))
            i = j
    end_word()
    return tokens


def _parse(script: str) -> list[_AndOr]:
    statements: list[_AndOr] = []
    parts: list[tuple[str, _Command]] = []
    words: list[Word] = []
    pending_op = ""
    for token in _lex(script):
        if isinstance(token, tuple):
            words.append(token)
            continue
        if token in ("&&", "||"):
            if not words:
                raise ShellSyntaxError(f"unexpected {token!r}")
            parts.append((pending_op, _Command(tuple(words))))
            words, pending_op = [], token
            continue
        # ; newline | & end an and-or list
        if words:
            parts.append((pending_op, _Command(tuple(words))))
            words = []
        elif pending_op:
            if token == "\n":  # `a &&` newline `b` continues the list
                continue
            raise ShellSyntaxError(f"unexpected {token!r}")
        if parts:
            statements.append(_AndOr(tuple(parts)))
        parts, pending_op = [], ""
    if words:
        parts.append((pending_op, _Command(tuple(words))))
    elif pending_op:
        raise ShellSyntaxError(f"unexpected end of script after {pending_op!r}")
    if parts:
        statements.append(_AndOr(tuple(parts)))
    return statements


@dataclass
class _Shell:
    write: Write
    sleep: Sleep
    vars: dict[str, str]
    positional: list[str] = field(default_factory=lambda: ["sh"])
    status: int = 0
    errexit: bool = False
    write_err: Write | None = None
    stdin: Stdin = NO_INPUT
    terminal: TerminalSize | None = None

    def error(self, text: str) -> None:
        (self.write_err or self.write)(text)

    def expand_text(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch != "$" or i + 1 >= n:
                out.append(ch)
                i += 1
                continue
            nxt = text[i + 1]
            if nxt == "{":
                end = text.find("}", i + 2)
                if end < 0:
                    out.append(ch)
                    i += 1
                    continue
                inner = text[i + 2 : end]
                name, sep, default = inner.partition(":-")
                value = self.lookup(name)
                out.append(value if value or not sep else default)
                i = end + 1
            elif nxt in "?$#@*" or nxt.isdigit():
                out.append(self.lookup(nxt))
                i += 2
            else:
                match = _NAME.match(text, i + 1)
                if match is None:
                    out.append(ch)
                    i += 1
                else:
                    out.append(self.lookup(match.group()))
                    i = match.end()
        return "".join(out)

    def lookup(self, name: str) -> str:
        if name == "?":
            return str(self.status)
        if name == "$":
            return "1"
        if name == "#":
            return str(len(self.positional) - 1)
        if name in ("@", "*"):
            return " ".join(self.positional[1:])
        if name.isdigit():
            index = int(name)
            return self.positional[index] if index < len(self.positional) else ""
        return self.vars.get(name, "")

    def expand_word(self, word: Word) -> str:
        return "".join(self.expand_text(text) if expand else text for text, expand in word)

    async def run(self, statements: Sequence[_AndOr]) -> int:
        for statement in statements:
            last = len(statement.parts) - 1
            for index, (op, command) in enumerate(statement.parts):
                if (op == "&&" and self.status != 0) or (op == "||" and self.status == 0):
                    continue
                self.status = await self.execute(command)
                if self.errexit and self.status != 0 and index == last:
                    raise _Exit(self.status)
        return self.status

    async def execute(self, command: _Command) -> int:
        words = list(command.words)
        assignments: dict[str, str] = {}
        while words:
            first = words[0]
            match = _ASSIGNMENT.match(first[0][0]) if first and first[0][1] else None
            if match is None:
                break
            rest: Word = ((first[0][0][match.end() :], True), *first[1:])
            assignments[match.group(1)] = self.expand_word(rest)
            words.pop(0)
        if not words:
            self.vars.update(assignments)
            return 0
        argv = [self.expand_word(w) for w in words]
        saved = dict(self.vars)
        self.vars.update(assignments)
        try:
            return await self.call(argv)
        finally:
            if assignments:
                # `VAR=x cmd` sets VAR for cmd only.
                for key in assignments:
                    if key in saved:
                        self.vars[key] = saved[key]
                    else:
                        self.vars.pop(key, None)

    async def call(self, argv: list[str]) -> int:
        name, args = argv[0], argv[1:]
        base = name.rsplit("/", 1)[-1] if name.startswith("/") else name
        if base in _SHELLS:
            return await self.subshell(base, args)
        builtin = _BUILTINS.get(name if not name.startswith("/") else base)
        if builtin is None:
            self.error(f"sh: {name}: not found\n")
            return EXIT_NOT_FOUND
        return await builtin(self, args)

    async def subshell(self, shell: str, args: list[str]) -> int:
        script: str | None = None
        errexit = False
        rest = list(args)
        while rest and rest[0].startswith("-") and rest[0] not in ("-", "--"):
            flags = rest.pop(0)[1:]
            errexit = errexit or "e" in flags
            if "c" in flags:
                if not rest:
                    self.error(f"{shell}: -c: option requires an argument\n")
                    return EXIT_SYNTAX
                script = rest.pop(0)
                break
        if rest and rest[0] == "--":
            rest.pop(0)
        if script is None and rest:
            self.error(f"{shell}: 0: cannot open {rest[0]}: No such file\n")
            return EXIT_SYNTAX
        child = _Shell(
            write=self.write,
            sleep=self.sleep,
            vars=dict(self.vars),
            positional=rest or [shell],
            errexit=errexit,
            write_err=self.write_err,
            stdin=self.stdin,
            terminal=self.terminal,
        )
        if script is None:
            return await child.read_eval(shell=shell)  # the script is stdin
        return await child.run_source(script, shell=shell)

    async def run_source(self, script: str, *, shell: str = "sh") -> int:
        try:
            statements = _parse(script)
        except ShellSyntaxError as exc:
            self.error(f"{shell}: syntax error: {exc}\n")
            return EXIT_SYNTAX
        try:
            return await self.run(statements)
        except _Exit as done:
            return done.code

    async def read_eval(self, *, shell: str = "sh") -> int:
        """Run stdin line by line until its end or `exit`; prompt when there is a terminal."""
        while True:
            if self.terminal is not None:
                self.error(PROMPT)
            line = await self.stdin.readline()
            if not line:
                return self.status
            try:
                statements = _parse(line)
            except ShellSyntaxError as exc:
                self.error(f"{shell}: syntax error: {exc}\n")
                self.status = EXIT_SYNTAX
                continue
            try:
                await self.run(statements)
            except _Exit as done:
                return done.code


async def _echo(shell: _Shell, args: list[str]) -> int:
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        flags = args.pop(0)
        newline = newline and "n" not in flags
        escapes = ("e" in flags) or (escapes and "E" not in flags)
    text = " ".join(args)
    if escapes:
        text = _unescape(text)
    shell.write(text + ("\n" if newline else ""))
    return 0


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")


async def _printf(shell: _Shell, args: list[str]) -> int:
    if not args:
        shell.error("printf: usage: printf format [arguments]\n")
        return EXIT_SYNTAX
    fmt, values = _unescape(args[0]), args[1:]
    status = 0
    out: list[str] = []
    while True:
        consumed = 0
        pieces = re.split(r"(%[%sdi])", fmt)
        for piece in pieces:
            if piece == "%%":
                out.append("%")
            elif piece == "%s":
                out.append(values[consumed] if consumed < len(values) else "")
                consumed += 1
            elif piece in ("%d", "%i"):
                raw = values[consumed] if consumed < len(values) else "0"
                consumed += 1
                try:
                    out.append(str(int(raw or "0")))
                except ValueError:
                    shell.error(f"printf: {raw}: expected numeric value\n")
                    out.append("0")
                    status = 1
            else:
                out.append(piece)
        values = values[consumed:]
        # printf reuses the format while arguments remain, like the real one.
        if not values or consumed == 0:
            break
    shell.write("".join(out))
    return status


async def _sleep(shell: _Shell, args: list[str]) -> int:
    if not args:
        shell.error("sleep: missing operand\n")
        return 1
    total = 0.0
    for arg in args:
        if arg in ("infinity", "inf"):
            total = float("inf")
            continue
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if match is None:
            shell.error(f"sleep: invalid time interval '{arg}'\n")
            return 1
        total += float(match.group(1)) * _SLEEP_UNITS[match.group(2)]
    await shell.sleep(total)
    return 0


async def _exit(shell: _Shell, args: list[str]) -> int:
    if not args:
        raise _Exit(shell.status)
    try:
        code = int(args[0])
    except ValueError:
        shell.error(f"sh: exit: Illegal number: {args[0]}\n")
        raise _Exit(EXIT_SYNTAX) from None
    raise _Exit(code & 0xFF)


async def _true(shell: _Shell, args: list[str]) -> int:
    return 0


async def _false(shell: _Shell, args: list[str]) -> int:
    return 1


async def _export(shell: _Shell, args: list[str]) -> int:
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and _NAME.fullmatch(key):
            shell.vars[key] = value
    return 0


async def _unset(shell: _Shell, args: list[str]) -> int:
    for arg in args:
        shell.vars.pop(arg, None)
    return 0


async def _set(shell: _Shell, args: list[str]) -> int:
    for arg in args:
        if arg.startswith("-") and "e" in arg:
            shell.errexit = True
        elif arg.startswith("+") and "e" in arg:
            shell.errexit = False
    return 0


async def _env(shell: _Shell, args: list[str]) -> int:
    if args:
        return await shell.call(args)
    for key in sorted(shell.vars):
        shell.write(f"{key}={shell.vars[key]}\n")
    return 0


async def _exec(shell: _Shell, args: list[str]) -> int:
    if not args:
        return 0
    raise _Exit(await shell.call(args))


async def _cat(shell: _Shell, args: list[str]) -> int:
    status = 0
    for name in args or ["-"]:
        if name != "-":
            shell.error(f"cat: {name}: No such file or directory\n")
            status = 1
            continue
        while chunk := await shell.stdin.read():
            shell.write(chunk)
    return status


async def _read(shell: _Shell, args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-")] or ["REPLY"]
    line = await shell.stdin.readline()
    if not line:
        return 1
    words = line.rstrip("\n").split(maxsplit=len(names) - 1)
    for index, name in enumerate(names):
        shell.vars[name] = words[index] if index < len(words) else ""
    return 0


async def _stty(shell: _Shell, args: list[str]) -> int:
    if shell.terminal is None:
        shell.error("stty: 'standard input': Inappropriate ioctl for device\n")
        return 1
    if args == ["size"]:
        columns, rows = shell.terminal()
        shell.write(f"{rows} {columns}\n")
    return 0


async def _tput(shell: _Shell, args: list[str]) -> int:
    columns, rows = shell.terminal() if shell.terminal is not None else (80, 24)
    values = {"cols": columns, "lines": rows}
    if len(args) != 1 or args[0] not in values:
        shell.error(f"tput: unknown terminfo capability '{' '.join(args)}'\n")
        return 4
    shell.write(f"{values[args[0]]}\n")
    return 0


async def _hostname(shell: _Shell, args: list[str]) -> int:
    shell.write((shell.vars.get("HOSTNAME") or shell.vars.get("RUNPOD_POD_HOSTNAME") or "localhost") + "\n")
    return 0


_Builtin = Callable[[_Shell, list[str]], Awaitable[int]]
_BUILTINS: Final[Mapping[str, _Builtin]] = {
    "echo": _echo,
    "printf": _printf,
    "sleep": _sleep,
    "exit": _exit,
    "true": _true,
    "false": _false,
    ":": _true,
    "cd": _true,
    "export": _export,
    "unset": _unset,
    "set": _set,
    "env": _env,
    "exec": _exec,
    "cat": _cat,
    "read": _read,
    "stty": _stty,
    "tput": _tput,
    "hostname": _hostname,
}


async def run_script(
    script: str,
    *,
    env: Mapping[str, str],
    write: Write,
    sleep: Sleep,
    write_err: Write | None = None,
    stdin: Stdin = NO_INPUT,
    terminal: TerminalSize | None = None,
) -> int:
    """Run `script` as `sh -c` would and return its exit status (0..255).

    `write` receives output text as printed (lines end with "\\n"; `echo -n` leaves a partial
    line), `write_err` error messages (default: `write`). May block for as long as the script
    sleeps or waits for input; cancel the awaiting task to kill it.
    """
    shell = _Shell(
        write=write, sleep=sleep, vars=dict(env), write_err=write_err, stdin=stdin, terminal=terminal
    )
    return await shell.run_source(script)


async def run_shell(
    *,
    env: Mapping[str, str],
    write: Write,
    sleep: Sleep,
    stdin: Stdin,
    write_err: Write | None = None,
    terminal: TerminalSize | None = None,
) -> int:
    """`sh` reading its commands from `stdin` until its end or `exit` (with a `# ` prompt on a
    terminal); returns the exit status."""
    shell = _Shell(
        write=write, sleep=sleep, vars=dict(env), write_err=write_err, stdin=stdin, terminal=terminal
    )
    return await shell.read_eval()


class LineSplitter:
    """Turns printed text into complete lines for the log stream; `flush` ends a partial line."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._partial = ""

    def write(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)
