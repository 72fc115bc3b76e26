"""Fixtures for the CLI tests: flow files and handler folders written in tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FLOWS = '''
import asyncio

from faasflow import Dag, Retry


def hello(data: bytes) -> bytes:
    return b"Hello " + data


def define(flow, context):
    dag = flow.dag()
    dag.node("n1").modify(hello)
    dag.node("n2").modify(lambda data: data + b"!")
    dag.edge("n1", "n2")


def reverse(flow, context):
    flow.sync_node().modify(lambda data: data[::-1])


def info(flow, context):
    def describe(data: bytes) -> bytes:
        who = context.query_value("who")
        return f"{context.flow_name}|{who}|{context.request_id}".encode()

    flow.sync_node().modify(describe)


def failing(flow, context):
    dag = flow.dag()
    dag.node("n1").modify(hello)
    dag.node("n2").apply("boom", retry=Retry(attempts=3, backoff=0))
    dag.edge("n1", "n2")


def shout(flow, context):
    flow.sync_node().apply("shout")


def two_starts(flow, context):
    dag = flow.dag()
    dag.node("a")
    dag.node("b")


def crashes(flow, context):
    raise RuntimeError("no config found")


def hangs(flow, context):
    async def wait_forever(data: bytes) -> bytes:
        await asyncio.Event().wait()
        return data

    flow.sync_node().modify(wait_forever)


def nested(flow, context):
    dag = flow.dag()
    dag.node("start").apply("shout")
    sub = Dag()
    sub.node("s1").modify(hello)
    dag.subdag("S", sub)
    each = dag.foreach_branch("F", lambda data: {"a": data}, aggregator=lambda r: b"")
    each.node("item.1").apply("shout")
    branches = dag.conditional_branch("C", ["yes", "no"], lambda data: ["yes"],
                                      aggregator=lambda r: b"")
    branches["yes"].node("y").modify(hello)
    branches["no"].node("n")
    dag.edge("start", "S")
    dag.edge("S", "F")
    dag.edge("F", "C")


not_callable = 42
'''

HANDLERS = {
    "shout": "def handle(event, context):\n    return event.body.upper()\n",
    "boom": "def handle(event, context):\n    raise ValueError('kaput')\n",
}


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` (dedented) to ``tmp_path / name`` and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def flows(write_file: Callable[[str, str], Path]) -> Path:
    """``flows.py`` with the test flows, and a ``functions/`` folder beside it."""
    for name, source in HANDLERS.items():
        write_file(f"functions/{name}/handler.py", source)
    return write_file("flows.py", FLOWS)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the shell running the tests, and the embedded default
    store is a file of the test's own."""
    from faasflow import config

    for name in config.variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
