"""The CLI as a real process: ``python -m faasflow.cli.main`` and ``python -m faasflow``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faasflow import __version__
from faasflow.cli.graph import NO_DOT_MESSAGE


def faasflow(
    *args: str, stdin: bytes = b"", module: str = "faasflow.cli.main",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], input=stdin, capture_output=True,
        timeout=60, check=False, env=env,
    )


def test_run_from_stdin(flows: Path) -> None:
    done = faasflow("run", str(flows), "--state", "memory://", stdin=b"Adam")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"Hello Adam!", b"")


def test_binary_output(flows: Path) -> None:
    payload = bytes(range(256)) * 4
    done = faasflow("run", f"{flows}:reverse", "--state", "memory://", stdin=payload,
                    module="faasflow")
    assert done.returncode == 0, done.stderr
    assert done.stdout == payload[::-1]


def test_verbose_and_failure(flows: Path) -> None:
    done = faasflow("run", f"{flows}:failing", "--state", "memory://", "-v",
                    "--request-id", "sub-1", stdin=b"x")
    assert done.returncode == 1
    assert done.stdout == b""
    err = done.stderr.decode().splitlines()
    assert err[0] == "[req sub-1] request started (1 B in)"
    assert "[req sub-1] n1 started" in err
    assert err[-1].startswith("error: request sub-1 failed at node 'n2' (attempt 3): ")
    assert "kaput" in err[-1]


def test_definition_error(flows: Path) -> None:
    done = faasflow("run", f"{flows}:two_starts", "--state", "memory://")
    assert done.returncode == 2
    assert done.stderr.startswith(b"error: the root DAG must have exactly one start node")


def test_version() -> None:
    done = faasflow("--version", module="faasflow")
    assert (done.returncode, done.stdout) == (0, f"faasflow {__version__}\n".encode())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_graph_svg(flows: Path) -> None:
    done = faasflow("graph", f"{flows}:nested", "--format", "svg")
    assert done.returncode == 0, done.stderr
    assert b"<svg" in done.stdout


def test_graph_svg_without_dot(flows: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    done = faasflow("graph", str(flows), "--format", "svg", env=env)
    assert done.returncode == 3
    assert done.stdout == b""
    assert done.stderr.decode() == f"error: {NO_DOT_MESSAGE}\n"
