"""The benchmark's work as one faasflow flow, for ``faasflow worker`` and the client.

The request's query picks the shape (``shape=chain&size=N``, ``fanout``, ``foreach``);
every node runs :func:`distributed_common.step`, the same body as Celery's tasks.
"""

from __future__ import annotations

from distributed_common import foreach_items, join_in_key_order, step

from faasflow import Context, Workflow


def _concatenate(results: dict[str, bytes]) -> bytes:
    return b"".join(results.values())  # parents in edge order: b0, b1, ...


def define(flow: Workflow, context: Context) -> None:
    shape = context.query_value("shape") or "chain"
    size = int(context.query_value("size") or 1)
    dag = flow.dag()
    if shape == "chain":
        for i in range(size):
            dag.node(f"n{i}").modify(step)
            if i:
                dag.edge(f"n{i - 1}", f"n{i}")
    elif shape == "fanout":
        dag.node("source")  # no operation: passes the input on
        dag.node("join", aggregator=_concatenate)
        for i in range(size):
            dag.node(f"b{i}").modify(step)
            dag.edge("source", f"b{i}")
            dag.edge(f"b{i}", "join")
    elif shape == "foreach":
        branch = dag.foreach_branch(
            "items", lambda data: foreach_items(data, size), aggregator=join_in_key_order
        )
        branch.node("work").modify(step)
    else:
        raise ValueError(f"unknown shape {shape!r}")
