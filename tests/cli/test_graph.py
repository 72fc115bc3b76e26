"""``faasflow graph``: JSON, DOT and SVG exports from a flow file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from faasflow.cli.graph import NO_DOT_MESSAGE
from faasflow.cli.main import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")


def test_json(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{flows}:nested", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.endswith("}\n") and out.startswith('{\n  "format_version": 1,')
    doc = json.loads(out)
    assert doc["flow"] == "flows"
    assert [n["id"] for n in doc["dag"]["nodes"]] == ["start", "S", "F", "C"]
    nodes = {n["id"]: n for n in doc["dag"]["nodes"]}
    assert nodes["F"]["foreach"]["nodes"][0]["path"] == "F[*]/item.1"
    assert nodes["C"]["branch_keys"] == ["yes", "no"]


def test_json_is_the_default(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(flows), "--name", "greet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["flow"], doc["sync"]) == ("greet", False)


def test_define_sees_the_export_context(
    write_file: Callable[[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("ctx.py", """
        def define(flow, context):
            flow.sync_node().apply(f"{context.request_id}-{context.flow_name}-"
                                   f"{context.query_value('v')}")
    """)
    assert main(["graph", str(flow), "--query", "v=2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dag"]["nodes"][0]["operations"][0]["name"] == "export-ctx-2"


def test_dot(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{flows}:nested", "-f", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "flows" {')
    assert '"F#foreach"' in out and '"C#condition"' in out


@needs_dot
def test_svg(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{flows}:nested", "--format", "svg"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "<svg" in out and out.rstrip().endswith("</svg>")
    assert ">condition</text>" in out and ">item.1</text>" in out


@needs_dot
@pytest.mark.parametrize(("suffix", "marker"), [(".svg", "<svg"), (".dot", "digraph"),
                                                (".json", '"format_version"')])
def test_output_file_and_format_from_suffix(
    flows: Path, tmp_path: Path, suffix: str, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / f"out{suffix}"
    assert main(["graph", str(flows), "-o", str(target)]) == 0
    assert capsys.readouterr() == ("", "")
    assert marker in target.read_text()


def test_no_dot(
    flows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["graph", str(flows), "--format", "svg"]) == 3
    assert capsys.readouterr() == ("", f"error: {NO_DOT_MESSAGE}\n")
    # dot source needs no Graphviz.
    assert main(["graph", str(flows), "--format", "dot"]) == 0


def test_definition_error(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{flows}:two_starts", "-f", "dot"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: the root DAG must have exactly one start node")


def test_define_crash(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{flows}:crashes"]) == 2
    assert capsys.readouterr().err == "error: define() raised RuntimeError: no config found\n"


def test_bad_format(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(flows), "--format", "png"]) == 2
    assert "invalid choice: 'png'" in capsys.readouterr().err
