"""Find the code blocks of a Markdown page and run them (the rules are in docs/README.md).

- A ```` ```python ```` block runs in a Python process shared by the page's Python
  blocks, in order and in one namespace; top-level ``await`` works (as in
  ``python -m asyncio`` or a notebook). It checks itself with ``assert``.
- A ```` ```console ````, ```` ```sh ```` or ```` ```shell ```` block whose lines start
  with ``$ `` is a session: each ``$ `` line (continued by a trailing ``\\``) is a
  command, the lines up to the next ``$ `` are what it prints (stdout and stderr), compared
  like doctest: exactly, trailing spaces ignored, ``...`` matching any text within a line
  and a line of only ``...`` any number of lines. Every command must exit 0. A block's
  commands run in one ``bash``, so variables carry over within the block; a command
  ending in ``&`` runs in the background until the block ends, then gets SIGTERM.
  A shell block without ``$ `` lines is a listing and is not run; a console block
  must have them.
- Every block runs in the page's temporary folder, which holds a link to the
  repository's ``examples/``, blocks in document order.
- ``<!-- not run: REASON -->`` on the line before a block opts it out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = "python"
SHELLS = ("console", "sh", "shell")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<lang>[^`\s]*)")
OPT_OUT = re.compile(r"^\s*<!--\s*not run\b(?P<rest>.*?)-->\s*$")
PROMPT = "$ "
MARK = "@@faasflow-docs-mark"
DRIVER = Path(__file__).with_name("pydriver.py")
BLOCK_TIMEOUT = 90.0
"""Seconds one block may run (within the page test's own timeout)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page.

    Attributes:
        page: the Markdown file.
        line: the 1-based line of the opening fence.
        lang: the fence's info string (``""`` when there is none).
        code: the block's text, the list indentation removed.
        opt_out: the text after ``not run`` when the line before opts it out, else ``None``.
    """

    page: Path
    line: int
    lang: str
    code: str
    opt_out: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def reason(self) -> str:
        """The opt-out's reason: the text after ``not run:`` (empty when there is none)."""
        rest = (self.opt_out or "").strip()
        return rest[1:].strip() if rest.startswith(":") else ""

    @property
    def runs(self) -> bool:
        """Whether this block is run (by its language, prompts and opt-out)."""
        if self.opt_out is not None:
            return False
        if self.lang == PYTHON:
            return True
        return self.lang in SHELLS and (self.lang == "console" or has_prompts(self.code))


@dataclass(frozen=True)
class Command:
    """A ``$ `` command of a session block and the lines it should print."""

    line: int
    text: str
    expected: tuple[str, ...]


class SnippetError(AssertionError):
    """A block failed; the message names the page and line."""


def parse_page(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order.

    Raises:
        SnippetError: an unclosed fence, or an opt-out comment not followed by a block.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # an opt-out waiting for its block
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = OPT_OUT.match(line)
        opened = FENCE.match(line)
        if marker is not None:
            if pending is not None:
                raise SnippetError(f"{page.name}:{pending[0]}: opt-out not followed by a block")
            pending = (index + 1, marker.group("rest"))
        elif opened is not None:
            end = _closing(lines, index, opened.group("fence"))
            if end is None:
                raise SnippetError(f"{page.name}:{index + 1}: code block never closed")
            indent = len(opened.group("indent"))
            # A block inside a list item is indented like its fence: drop that much.
            body = [text[indent:] if not text[:indent].strip() else text.lstrip()
                    for text in lines[index + 1:end]]
            blocks.append(Block(page, index + 1, opened.group("lang").lower(),
                                "\n".join(body) + "\n", pending[1] if pending else None))
            pending = None
            index = end
        elif line.strip() and pending is not None:
            raise SnippetError(f"{page.name}:{pending[0]}: opt-out not followed by a block")
        index += 1
    if pending is not None:
        raise SnippetError(f"{page.name}:{pending[0]}: opt-out not followed by a block")
    return blocks


def _closing(lines: list[str], start: int, fence: str) -> int | None:
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            return index
    return None


def has_prompts(code: str) -> bool:
    """Whether a shell block is a session (has ``$ `` lines)."""
    return any(line.startswith(PROMPT) for line in code.splitlines())


def parse_session(block: Block) -> list[Command]:
    """The commands of a session block, with their expected output.

    Raises:
        SnippetError: text before the first prompt, or no prompt at all.
    """
    commands: list[Command] = []
    text: list[str] = []
    expected: list[str] = []
    start = 0
    lines = block.code.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(PROMPT):
            if text:
                commands.append(Command(start, "\n".join(text), tuple(expected)))
            start, text, expected = block.line + 1 + index, [line[len(PROMPT):]], []
            while text[-1].endswith("\\") and index + 1 < len(lines):
                index += 1
                text.append(lines[index])
        elif not text:
            if line.strip():
                raise SnippetError(f"{block.where}: text before the first '$ ' command")
        else:
            expected.append(line)
        index += 1
    if text:
        commands.append(Command(start, "\n".join(text), tuple(expected)))
    if not commands:
        raise SnippetError(f"{block.where}: a console block needs '$ ' commands")
    return commands


def output_matches(expected: tuple[str, ...], output: str) -> bool:
    """Doctest-style comparison, ``...`` being the wildcard (see the module docstring)."""
    wanted = _trim([line.rstrip() for line in expected])
    got = _trim([line.rstrip() for line in output.splitlines()])
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == "..." else
        re.escape(line).replace(re.escape("..."), r"[^\n]*") + r"\n"
        for line in wanted
    )
    return re.fullmatch(pattern, "".join(line + "\n" for line in got)) is not None


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


class PythonSession:
    """A Python process that runs a page's Python blocks, one after another, in one
    namespace (``pydriver.py``); its output goes to ``log``."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._read, write = os.pipe()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-W", "error", str(DRIVER), str(write)],
                cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT, pass_fds=(write,), start_new_session=True,
            )
        os.close(write)
        self._buffer = b""

    def run(self, block: Block) -> None:
        """Run ``block``; raise :class:`SnippetError` with the traceback if it fails."""
        assert self.process.stdin is not None
        message = {"file": str(block.page), "line": block.line, "code": block.code}
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        reply = self._reply(block)
        if not reply["ok"]:
            raise SnippetError(
                f"{block.where}: the python block failed\n{reply['error']}\n"
                f"output of the page's python blocks:\n{self._output()}"
            )

    def _reply(self, block: Block) -> dict[str, object]:
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(left, 0))
            chunk = os.read(self._read, 65536) if ready else b""
            if not chunk:
                problem = "did not finish in time" if not ready else "ended the process"
                raise SnippetError(f"{block.where}: the python block {problem}\n{self._output()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, object] = json.loads(line)
        return reply

    def _output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        """End the process and whatever its blocks left running."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)  # the end of stdin ends the driver
        end_group(self.process.pid)
        self.process.wait()
        os.close(self._read)


def run_session(block: Block, cwd: Path, env: dict[str, str]) -> None:
    """Run a session block's commands in one ``bash`` and compare their output.

    Raises:
        SnippetError: a command exited non-zero or printed something else.
    """
    commands = parse_session(block)
    script = ["exec 2>&1"]
    for number, command in enumerate(commands):
        script += [command.text, f"status=$?; printf '\\n{MARK} {number} %d\\n' \"$status\"",
                   '[ "$status" -eq 0 ] || exit "$status"']
    log = cwd / f".session-{block.line}.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", "\n".join(script)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        status: int | None = process.wait(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        end_group(process.pid)
        process.wait()
    outputs = _split(log.read_text(errors="replace"))
    for number, command in enumerate(commands):
        if number not in outputs:
            problem = (f"did not finish within {BLOCK_TIMEOUT:g} s" if status is None
                       else f"exited {status}, ending the shell")
            raise SnippetError(f"{block.page.name}:{command.line}: `{command.text}` {problem}"
                               f"\n{log.read_text(errors='replace')}")
        code, output = outputs[number]
        if code != 0:
            raise SnippetError(
                f"{block.page.name}:{command.line}: `{command.text}` exited {code}:\n{output}"
            )
        if not output_matches(command.expected, output):
            raise SnippetError(
                f"{block.page.name}:{command.line}: `{command.text}` printed\n{output}\n"
                "expected\n" + "\n".join(command.expected)
            )


def _split(text: str) -> dict[int, tuple[int, str]]:
    """Each command's (status, output) from the marked log of a session."""
    outputs: dict[int, tuple[int, str]] = {}
    chunk: list[str] = []
    for line in text.splitlines():
        if line.startswith(MARK + " "):
            number, status = line.split()[1:3]
            outputs[int(number)] = (int(status), "\n".join(chunk))
            chunk = []
        else:
            chunk.append(line)
    return outputs


def end_group(pgid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group ``pgid`` (started in a session of its own), and
    SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def run_page(blocks: list[Block], cwd: Path, env: dict[str, str]) -> int:
    """Run the runnable ``blocks`` of one page in document order; return how many ran.

    Raises:
        SnippetError: the first block that failed.
    """
    runnable = [block for block in blocks if block.runs]
    python: PythonSession | None = None
    try:
        for block in runnable:
            if block.lang == PYTHON:
                python = python or PythonSession(cwd, env, cwd / ".python.out")
                python.run(block)
            else:
                run_session(block, cwd, env)
    finally:
        if python is not None:
            python.close()
    return len(runnable)
