"""Async chain: three nodes in a row, each running as its own hop.

The "Async chain" example of the original faas-flow README::

    n1: func1 (upper-case)
     |
    n2: func2 (reverse), then modify (spaces -> "_")
     |
    n3: func4 (wrap in brackets)

Unlike a sync node, each node of a DAG is a separate step: in OpenFaaS mode the flow
forwards the next node to itself through the gateway's async route; embedded, the hops
go through an in-process queue. ``faasflow run`` waits for the end either way.

Run it::

    faasflow run examples/async_chain.py --data "hello world"   # prints: [DLROW_OLLEH]
"""

from __future__ import annotations

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"hello world", ""),
    (b"", ""),
    ("日本語 テキスト and ascii".encode(), ""),
    (b"lorem ipsum dolor sit amet " * 150, ""),
]


def underscore_spaces(data: bytes) -> bytes:
    return data.replace(b" ", b"_")


def define(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("n1").apply("func1")
    dag.node("n2").apply("func2").modify(underscore_spaces)
    dag.node("n3").apply("func4")
    dag.edge("n1", "n2")
    dag.edge("n2", "n3")


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    text = data.decode("utf-8")
    return ("[" + text.upper()[::-1].replace(" ", "_") + "]").encode("utf-8")
