"""``faasflow run`` in-process: input sources, output bytes, -v, failures and exit codes."""

from __future__ import annotations

import io
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from faasflow import __version__
from faasflow.cli.main import build_parser, main
from faasflow.cli.progress import Progress, format_duration, format_size

MEMORY = ["--state", "memory://"]


class FakeTerminal(io.TextIOWrapper):
    """A stdin that is an interactive terminal: it must not be read."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(b"must not be read"))

    def isatty(self) -> bool:
        return True


def run(*args: str) -> int:
    return main(["run", *args])


def test_data_argument(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(flows), "--data", "Adam", *MEMORY) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("Hello Adam!", "")  # nothing added, not even a newline


def test_stdin_input(
    flows: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Eve")))
    assert run(str(flows), *MEMORY) == 0
    assert capsys.readouterr().out == "Hello Eve!"


def test_data_file_dash_reads_stdin(
    flows: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Bo")))
    assert run(str(flows), "--data-file", "-", *MEMORY) == 0
    assert capsys.readouterr().out == "Hello Bo!"


def test_terminal_stdin_means_empty_input(
    flows: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal())
    assert run(str(flows), *MEMORY) == 0
    assert capsys.readouterr().out == "Hello !"


def test_data_file_binary_round_trip(
    flows: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    payload = bytes(range(256)) + b"\r\n\x00\xff"
    source = tmp_path / "input.bin"
    source.write_bytes(payload)
    assert run(f"{flows}:reverse", "--data-file", str(source), *MEMORY) == 0
    out, err = capsysbinary.readouterr()
    assert out == payload[::-1]
    assert err == b""


def test_missing_data_file(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(flows), "--data-file", str(flows.parent / "nope.bin"), *MEMORY) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: cannot read --data-file ")
    assert "nope.bin" in err


def test_data_and_data_file_are_exclusive(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(str(flows), "--data", "x", "--data-file", "y", *MEMORY) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_verbose_events_on_stderr(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(flows), "--data", "Adam", "-v", "--request-id", "req-1", *MEMORY) == 0
    out, err = capsys.readouterr()
    assert out == "Hello Adam!"
    lines = err.splitlines()
    ms = r"[0-9.]+ (ms|s)"
    expected = [
        r"\[req req-1\] request started \(4 B in\)",
        r"\[req req-1\] n1 started",
        rf"\[req req-1\] n1 finished in {ms} \(4 B -> 10 B\)",
        r"\[req req-1\] n2 started",
        rf"\[req req-1\] n2 finished in {ms} \(10 B -> 11 B\)",
        rf"\[req req-1\] request succeeded in {ms} \(11 B out\)",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_failure_names_node_attempt_and_cause(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(f"{flows}:failing", "--data", "x", "--request-id", "r-7", *MEMORY)
    assert status == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: request r-7 failed at node 'n2' (attempt 3): ")
    assert "boom" in err and "500" in err and "kaput" in err
    assert err.count("\n") == 1


def test_failure_verbose(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run(f"{flows}:failing", "--data", "x", "--request-id", "r-8", "-v", *MEMORY)
    assert status == 1
    err = capsys.readouterr().err.splitlines()
    retried = [line for line in err if "retrying" in line]
    assert [line.split(":")[0] for line in retried] == [
        "[req r-8] n2 call attempt 1 failed, retrying",
        "[req r-8] n2 call attempt 2 failed, retrying",
    ]
    assert re.fullmatch(r"\[req r-8\] n2 failed \(attempt 3\): .*kaput.*", err[-3])
    assert re.fullmatch(r"\[req r-8\] request failed in [0-9.]+ m?s", err[-2])
    assert err[-1].startswith("error: request r-8 failed at node 'n2' (attempt 3)")


def test_definition_error_exits_2(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(f"{flows}:two_starts", "--data", "x", *MEMORY) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "error: the root DAG must have exactly one start node (a node without parents); "
        "found 'a', 'b'\n"
    )


def test_define_crash_is_a_definition_error(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(f"{flows}:crashes", "--data", "x", *MEMORY) == 2
    assert capsys.readouterr().err == (
        "error: define() raised RuntimeError: no config found\n"
    )


def test_functions_folder_beside_the_file(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(f"{flows}:shout", "--data", "hey", *MEMORY) == 0
    assert capsys.readouterr().out == "HEY"


def test_functions_option(
    flows: Path, tmp_path: Path, write_file: Callable[[str, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_file("other/shout/handler.py", "def handle(event, context):\n    return b'other'\n")
    assert run(f"{flows}:shout", "--data", "hey", "--functions", str(tmp_path / "other"),
               *MEMORY) == 0
    assert capsys.readouterr().out == "other"


def test_functions_option_must_be_a_directory(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(f"{flows}:shout", "--data", "x", "--functions", str(flows), *MEMORY) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_unknown_function_without_folder(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("lonely/flow.py", """
        def define(flow, context):
            flow.sync_node().apply("shout")
    """)
    assert run(str(flow), "--data", "x", "--request-id", "q1", *MEMORY) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: request q1 failed at node 'sync' (attempt 1): ")
    assert "shout" in err


def test_name_query_and_request_id(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(f"{flows}:info", "--data", "", "--query", "who=me&x=1", "--request-id",
               "my-id", *MEMORY) == 0
    assert capsys.readouterr().out == "flows|me|my-id"
    assert run(f"{flows}:info", "--name", "billing", *MEMORY, "--data", "") == 0
    name, who, rid = capsys.readouterr().out.split("|")
    assert (name, who) == ("billing", "None")
    assert rid


def test_invalid_request_id_is_an_argument_error(
    flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(str(flows), "--request-id", "a/b", "--data", "x", *MEMORY) == 2
    assert "invalid request id 'a/b'" in capsys.readouterr().err


def test_timeout(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(f"{flows}:hangs", "--data", "x", "--timeout", "0.2", "--request-id", "slow",
               *MEMORY) == 1
    assert capsys.readouterr().err == "error: request slow did not end within 0.2s\n"


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout(flows: Path, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(flows), "--timeout", value, "--data", "x", *MEMORY) == 2
    assert "--timeout" in capsys.readouterr().err


def test_sqlite_state(
    flows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "state" / "flows.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    assert run(str(flows), "--data", "Ann", "--state", url, "--request-id", "once") == 0
    assert capsys.readouterr().out == "Hello Ann!"
    with sqlite3.connect(database) as connection:
        tables = connection.execute("select name from sqlite_master").fetchall()
    connection.close()
    assert tables
    # The request is on record in the file: its id cannot be used again.
    assert run(str(flows), "--data", "Ann", "--state", url, "--request-id", "once") == 1
    assert "already in use" in capsys.readouterr().err


def test_bad_store_url(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(flows), "--data", "x", "--state", "nosuch://x") == 2
    assert "nosuch://x" in capsys.readouterr().err


def test_gateway_default_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("gateway", "http://gateway.local:8080")
    args = build_parser().parse_args(["run", "flow.py"])
    assert args.gateway == "http://gateway.local:8080"
    args = build_parser().parse_args(["run", "flow.py", "--gateway", "http://other:1"])
    assert args.gateway == "http://other:1"
    monkeypatch.delenv("gateway")
    assert build_parser().parse_args(["run", "flow.py"]).gateway is None


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"faasflow {__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "run" in capsys.readouterr().err


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x.py", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_progress_formatting() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(2048) == "2.0 KiB"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"
    assert format_duration(0.0012) == "1.2 ms"
    assert format_duration(3.4) == "3.40 s"
    progress = Progress()
    assert progress.format(
        {"request_id": "r", "t": 1.0, "kind": "node", "node": "C[k]/n1", "event": "started",
         "attempt": 2}
    ) == "[req r] C[k]/n1 started (attempt 2)"
    assert progress.format(
        {"request_id": "r", "t": 2.0, "kind": "node", "node": "C", "event": "expanded",
         "started": 1.0, "finished": 1.5}
    ) == "[req r] C expanded in 500.0 ms"
    assert progress.format(
        {"request_id": "r", "t": 2.0, "kind": "request", "node": "", "event": "stopped"}
    ) == "[req r] request stopped"


def test_an_input_over_the_size_limit_is_refused(
    flows: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same limit as a flow server's body (FAASFLOW_MAX_BODY_SIZE), at the command line.
    monkeypatch.setenv("FAASFLOW_MAX_BODY_SIZE", "4")
    assert run(str(flows), "--data", "Adam!", *MEMORY) != 0
    _, err = capsys.readouterr()
    assert "5 bytes, more than max_input_size (4 bytes" in err
    assert run(str(flows), "--data", "Adam", *MEMORY) == 0
