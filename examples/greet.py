"""Greet: the smallest flow, one synchronous node with one inline modifier.

The "Writing Flow" example of the original faas-flow README::

    Modify("name") -> Hello name

A flow made only of ``flow.sync_node()`` runs inside the caller's request and answers
with its result.

Run it::

    faasflow run examples/greet.py --data Adam        # prints: Hello Adam

or from Python, in the ``examples/`` folder::

    import faasflow
    from greet import define
    faasflow.run(define, b"Adam")                     # b"Hello Adam"
"""

from __future__ import annotations

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"Adam", ""),
    (b"", ""),
    ("Zoë 🌍".encode(), ""),
    (b"x" * 4096, ""),
]


def define(flow: Workflow, context: Context) -> None:
    flow.sync_node().modify(lambda data: b"Hello " + data)


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    return b"Hello " + data
