"""Sub-DAGs, edge forwarders and execution-only edges.

A DAG can be a node of another DAG (``dag.subdag(id, sub_dag)``); building the sub-DAG
in a function makes it a reusable pattern. Each use needs its own ``Dag`` object, so the
function builds a new one per call::

                      n1: modify (collapse whitespace)
              /                 |  forwarder:          \\
             /                  |  lower-case           \\
    shout (sub-DAG):     mirror (sub-DAG):        count: func3 (word count),
      call: func1          call: func2              then context.set("words", ...)
      wrap: func4          wrap: func4                  :
             \\                  |                        : execution only
              \\                 |                        :
                      join: aggregator "<words> words: <shout> <mirror>"

- ``dag.edge("n1", "mirror", forwarder=fn)``: ``mirror`` gets ``fn(n1's output)``
  instead of ``n1``'s output itself; ``shout`` and ``count`` get the output unchanged.
- ``dag.edge("count", "join", execution_only=True)``: ``join`` waits for ``count`` but
  gets no data from it, so its aggregator sees only ``{"shout": ..., "mirror": ...}``;
  ``count`` hands its answer over through the context instead.

Run it::

    faasflow run examples/subdag.py --data "Hello  World"
    # prints: 2 words: [HELLO WORLD] [dlrow olleh]
"""

from __future__ import annotations

from faasflow import Context, Dag, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"Hello  World", ""),
    (b"", ""),
    ("Ünïcödé   wörds\tand 表意文字".encode(), ""),
    (b"one two three four five six seven eight nine ten\n" * 80, ""),
]


def text_pipeline(function: str) -> Dag:
    """A reusable pattern: call ``function``, then wrap its answer in brackets (func4)."""
    sub = Dag()
    sub.node("call").apply(function)
    sub.node("wrap").apply("func4")
    sub.edge("call", "wrap")
    return sub


def collapse_whitespace(data: bytes) -> bytes:
    """Trim the text and turn every run of (Unicode) whitespace into one space."""
    return " ".join(data.decode("utf-8").split()).encode("utf-8")


def lower(data: bytes) -> bytes:
    return data.decode("utf-8").lower().encode("utf-8")


def define(flow: Workflow, context: Context) -> None:
    def remember_count(count: bytes) -> bytes:
        context.set("words", int(count))
        return count

    def join(results: dict[str, bytes]) -> bytes:
        # Only the data-carrying parents are here; count's answer is in the context.
        words = context.get("words")
        return f"{words} words: ".encode() + results["shout"] + b" " + results["mirror"]

    dag = flow.dag()
    dag.node("n1").modify(collapse_whitespace)
    dag.subdag("shout", text_pipeline("func1"))
    dag.subdag("mirror", text_pipeline("func2"))
    dag.node("count").apply("func3").modify(remember_count)
    dag.node("join", aggregator=join)

    dag.edge("n1", "shout")
    dag.edge("n1", "mirror", forwarder=lower)
    dag.edge("n1", "count")
    dag.edge("shout", "join")
    dag.edge("mirror", "join")
    dag.edge("count", "join", execution_only=True)


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    text = collapse_whitespace(data).decode("utf-8")
    shout = "[" + text.upper() + "]"  # func1, then func4
    mirror = "[" + text.lower()[::-1] + "]"  # forwarder, func2, then func4
    words = len(text.split())  # func3
    return f"{words} words: {shout} {mirror}".encode()
