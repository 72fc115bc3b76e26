"""The flow: ``define(flow, context)`` composes serverless functions into a DAG.

``define`` is called for every request, and again on every hop (possibly in another
replica), so it must build the same DAG each time. Data between nodes is ``bytes``.

This greet flow is one synchronous node, so it runs inside the caller's request and
answers with its result::

    echo -n Adam | faas-cli invoke greet        # Hello Adam

Other shapes, for reference (see the faasflow docs for the whole DSL)::

    # a chain inside one node: each output is the next input
    flow.sync_node().apply("func1").apply("func2").modify(lambda data: data + b"!")

    # a DAG: every node after the first runs as a signed hop through the gateway, and
    # the caller gets 202 with X-Faas-Flow-Reqid (or the result with X-Faas-Flow-Wait)
    dag = flow.dag()
    dag.node("n1").apply("func1", retry=Retry(attempts=3, backoff=0.5), timeout=10)
    dag.node("n2").apply("func2")
    dag.node("n3").apply("func3")
    dag.node("n4", aggregator=lambda results: b",".join(results.values()))
    dag.edge("n1", "n2")
    dag.edge("n1", "n3")
    dag.edge("n2", "n4")
    dag.edge("n3", "n4")

    # dynamic branches
    each = dag.foreach_branch("fan", lambda data: {str(i): p for i, p in enumerate(...)},
                              aggregator=merge)
    each.node("work").apply("worker")

    # per-request data and the request's query
    context.set("key", "value"); context.get("key"); context.query_value("token")

    # hooks: once per request
    flow.on_failure(lambda error: ...)
    flow.finally_(lambda state: ...)   # state is "success" or "failure"
"""

from __future__ import annotations

from faasflow import Context, Workflow


def greet(data: bytes) -> bytes:
    """The node's work: any ``def`` or ``async def`` taking and returning bytes."""
    return b"Hello " + data


def define(flow: Workflow, context: Context) -> None:
    """Build this request's flow: one sync node that greets its input."""
    flow.sync_node().modify(greet)


# Optional store overrides, read once when the function starts. Each returns a store
# object or a store URL; returning None (or leaving them out) keeps the default from
# the configuration (faasflow_state / faasflow_data in flow.yml). The default SQLite file
# suits one replica only; a shared store lets the function scale.
#
# def state_store() -> StateStore | str | None:
#     return "sqlite:////tmp/faasflow.db"
#
# def data_store() -> DataStore | str | None:
#     return None
