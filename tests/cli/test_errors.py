"""What a failure tells its reader: where a user's own callable raised, how to make an
unknown function known from the command line, and a result that ends its line on a
terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import faasflow
from faasflow.cli.main import main
from faasflow.cli.progress import Progress


def broken(data: bytes) -> bytes:
    return {"k": data}["missing"]  # the line the error must name


def test_a_local_functions_error_names_its_file_and_line() -> None:
    def define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
        flow.sync_node().apply("broken")

    with pytest.raises(faasflow.RequestFailedError) as caught:
        faasflow.run(define, b"x", functions={"broken": broken}, state_store="memory://")
    line = broken.__code__.co_firstlineno + 1
    assert caught.value.cause.endswith(
        f"function 'broken' raised KeyError: 'missing' (at test_errors.py:{line} in broken)"
    )


def test_progress_prints_a_failures_traceback() -> None:
    event = {"request_id": "r", "kind": "node", "node": "n", "event": "failed",
             "attempt": 1, "error": "boom", "traceback": 'File "f.py", line 3, in g\n  x()'}
    assert Progress().format(event).splitlines() == [
        "[req r] n failed (attempt 1): boom", '    File "f.py", line 3, in g', "      x()",
    ]


def test_an_unknown_function_names_the_options_that_make_it_known(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("lonely/flow.py", """
        def define(flow, context):
            flow.sync_node().apply("shout")
    """)
    assert main(["run", str(flow), "--data", "x", "--state", "memory://"]) == 1
    err = capsys.readouterr().err
    assert "--functions DIR (a folder holding shout/handler.py)" in err
    assert "--gateway URL (or $FAASFLOW_GATEWAY)" in err


def test_run_ends_its_output_with_a_newline_on_a_terminal(flows: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "faasflow", "run", str(flows), "--data", "Ann",
             "--state", "memory://"],
            stdout=terminal, stderr=subprocess.PIPE, timeout=60, check=False,
        )
        os.close(terminal)
        terminal = -1
        out = b""
        while True:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    assert done.returncode == 0, done.stderr
    assert out == b"Hello Ann!\r\n"  # the terminal shows "\n" as "\r\n"
