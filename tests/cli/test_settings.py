"""One set of names on the command line: each setting's variables (canonical and
aliases) are every command's defaults, two that disagree are an error, and a store is
``--data-store`` wherever a store is meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from faasflow.cli.main import build_parser, main

from .test_help import subcommands


@pytest.mark.parametrize("name", ["FAASFLOW_STATE", "faasflow_state", "FAASFLOW_STORE"])
def test_run_keeps_requests_where_any_name_of_the_state_store_says(
    name: str, flows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = tmp_path / "named.db"
    monkeypatch.setenv(name, f"sqlite:///{database}")
    assert main(["run", str(flows), "--data", "Ann", "--request-id", "r1"]) == 0
    assert capsys.readouterr().out == "Hello Ann!"
    assert database.exists()
    # ... and the reading commands look there too.
    assert main(["result", "r1"]) == 0
    assert capsys.readouterr().out == "Hello Ann!"


def test_two_names_that_disagree_are_an_error(
    flows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAASFLOW_STATE", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("FAASFLOW_STORE", f"sqlite:///{tmp_path / 'b.db'}")
    assert main(["run", str(flows), "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FAASFLOW_STATE and FAASFLOW_STORE are both set")
    # An option settles it: it wins over every variable.
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["run", str(flows), "--data", "x", "--state", url]) == 0


@pytest.mark.parametrize(
    ("variable", "dest", "argv"),
    [
        ("FAASFLOW_NATS", "nats", ["worker", "f.py"]),
        ("faasflow_nats", "nats", ["submit", "f.py"]),
        ("FAASFLOW_DATA", "data_store", ["run", "f.py"]),
        ("faasflow_data", "data_store", ["dashboard", "f.py"]),
        ("FAASFLOW_GATEWAY", "gateway", ["worker", "f.py"]),
        ("gateway", "gateway", ["run", "f.py"]),
        ("FAASFLOW_NAME", "name", ["submit", "f.py"]),
        ("flow_name", "name", ["worker", "f.py"]),
        ("FAASFLOW_MAX_BODY_SIZE", "max_body_size", ["gateway"]),
    ],
)
def test_a_variable_is_the_default_of_its_option_in_every_command(
    variable: str, dest: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "4096")
    assert str(getattr(build_parser().parse_args(argv), dest)) == "4096"


def test_data_store_wherever_a_store_is_meant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    for command in (["run", "f.py"], ["recover", "f.py"], ["worker", "f.py"],
                    ["submit", "f.py"], ["dashboard", "f.py"], ["result", "ID"],
                    ["redrive", "ID"], ["serve", "f.py"]):
        args = parser.parse_args([*command, "--data-store", "file:///tmp/d"])
        assert args.data_store == "file:///tmp/d", command
    # --data is the request's input, never a store: the old spelling on worker and
    # dashboard still works for now, with a warning.
    args = parser.parse_args(["worker", "f.py", "--data", "file:///tmp/d"])
    assert args.data_store == "file:///tmp/d"
    assert "--data is deprecated for a store: use --data-store" in capsys.readouterr().err
    assert "--data " not in subcommands()["worker"].format_help()
