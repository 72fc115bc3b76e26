"""The flow of ``benchmarks/chaos.py``: ``start → b0…b3 → join``, each node a short wait.

Every node appends ``B request node pid time`` to the file ``$CHAOS_LOG`` when its
function starts and ``E …`` when it returns (one ``O_APPEND`` write each, whole lines
across processes), which is how the harness counts effects and tells their causes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from faasflow import Context, Workflow

BRANCHES = ["b0", "b1", "b2", "b3"]
NODE_SECONDS = float(os.environ.get("CHAOS_NODE_SECONDS", "0.02"))


def _log(kind: str, rid: str, name: str) -> None:
    line = f"{kind} {rid} {name} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["CHAOS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def define(flow: Workflow, context: Context) -> None:
    rid = context.request_id

    def node(name: str) -> Callable[[bytes], bytes]:
        def run(data: bytes) -> bytes:
            _log("B", rid, name)
            time.sleep(NODE_SECONDS)
            _log("E", rid, name)
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
    """The result of a request with input ``data``."""
    return b"+".join(data + b"|start|" + b.encode() for b in BRANCHES) + b"|join"
