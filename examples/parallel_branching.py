"""Parallel branching: fan out to two nodes, then join their results with an aggregator.

The "Parallel branching" example of the original faas-flow README::

            n1: modify (collapse whitespace)
           /  \\
    n2: func1  n3: func2, then modify (lower-case)
           \\  /
            n4: aggregator joins {"n2": ..., "n3": ...}

``n2`` and ``n3`` run at the same time. ``n4`` has two data-carrying parents, so it needs
an aggregator: it gets ``{"n2": <n2's output>, "n3": <n3's output>}`` (keys in the order
the edges were declared) once both have finished. What it returns is ``n4``'s input;
``n4`` has no operations of its own, so that is also the flow's result.

Run it::

    faasflow run examples/parallel_branching.py --data "Hello   World"
    # prints: HELLO WORLD | dlrow olleh
"""

from __future__ import annotations

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"Hello   World", ""),
    (b"", ""),
    ("  हिन्दी\tपाठ\u2003\n ok ".encode(), ""),
    (b"some words, some  more words\n" * 150, ""),
]


def collapse_whitespace(data: bytes) -> bytes:
    """Trim the text and turn every run of (Unicode) whitespace into one space."""
    return " ".join(data.decode("utf-8").split()).encode("utf-8")


def lower(data: bytes) -> bytes:
    return data.decode("utf-8").lower().encode("utf-8")


def join_results(results: dict[str, bytes]) -> bytes:
    """Aggregate the two branches: ``<n2> | <n3>``."""
    return results["n2"] + b" | " + results["n3"]


def define(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("n1").modify(collapse_whitespace)
    dag.node("n2").apply("func1")
    dag.node("n3").apply("func2").modify(lower)
    dag.node("n4", aggregator=join_results)

    dag.edge("n1", "n2")
    dag.edge("n1", "n3")
    dag.edge("n2", "n4")
    dag.edge("n3", "n4")


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    text = collapse_whitespace(data).decode("utf-8")
    upper = text.upper()  # n2: func1
    reversed_lower = text[::-1].lower()  # n3: func2, then lower-case
    return f"{upper} | {reversed_lower}".encode()
