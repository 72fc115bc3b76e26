"""A fan-out/fan-in flow for the fault tests: ``start`` → ``b0``…``b3`` → ``join``.

Every node appends ``node pid`` to the file named by the query's ``log``, so a test can
count executions across processes. ``b1`` writes its pid to ``marker`` and waits until
the file ``gate`` exists (when the query names them); with ``die=b2``, ``b2`` kills its
own process instead, every time it runs; with ``pause=S``, every node takes S seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from faasflow import Context, Workflow

BRANCHES = ["b0", "b1", "b2", "b3"]


def define(flow: Workflow, context: Context) -> None:
    query = {name: values[0] for name, values in context.query.items()}

    def node(name: str):  # type: ignore[no-untyped-def]
        def run(data: bytes) -> bytes:
            if "log" in query:
                with open(query["log"], "a", encoding="utf-8") as log:
                    log.write(f"{name} {os.getpid()}\n")
            if name == query.get("die"):
                os._exit(3)
            if "pause" in query:
                time.sleep(float(query["pause"]))
            if name == "b1" and "gate" in query:
                Path(query["marker"]).write_text(str(os.getpid()))
                while not Path(query["gate"]).exists():
                    time.sleep(0.02)
            return data + f"|{name}".encode()

        return run

    dag = flow.dag()
    dag.node("start").modify(node("start"))
    dag.node("join", aggregator=lambda parts: b"+".join(parts.values())).modify(node("join"))
    for branch in BRANCHES:
        dag.node(branch).modify(node(branch))
        dag.edge("start", branch)
        dag.edge(branch, "join")


def expected(data: bytes) -> bytes:
    return b"+".join(data + b"|start|" + b.encode() for b in BRANCHES) + b"|join"
