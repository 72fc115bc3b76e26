"""Sync chain: several operations in one node, each output the next one's input.

The "Sync chain" example of the original faas-flow README: one synchronous node that
applies ``func1``, then ``func2``, then an inline modifier::

    input -> func1 (upper-case) -> func2 (reverse) -> modify (add "!") -> result

The functions are the OpenFaaS handler folders under ``examples/functions/``.

Run it::

    faasflow run examples/sync_chain.py --data "hello world"   # prints: DLROW OLLEH!
"""

from __future__ import annotations

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"hello world", ""),
    (b"", ""),
    ("grüße, señor ✓".encode(), ""),
    (b"The quick brown fox jumps over the lazy dog. " * 100, ""),
]


def exclaim(data: bytes) -> bytes:
    """The inline step: add an exclamation mark."""
    return data + b"!"


def define(flow: Workflow, context: Context) -> None:
    flow.sync_node().apply("func1").apply("func2").modify(exclaim)


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    text = data.decode("utf-8")
    return (text.upper()[::-1] + "!").encode("utf-8")
