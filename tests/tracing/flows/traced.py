"""A traced fan-out: ``start`` → ``b0``, ``b1`` (each calls the function ``shout``) → ``join``.

``b0`` logs a warning, so a test can see the request and trace ids on the log line.
"""

from __future__ import annotations

import logging

from faasflow import Context, Workflow


def _logged(data: bytes) -> bytes:
    logging.getLogger("traced").warning("b0 ran")
    return data


def define(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("start").modify(lambda data: data.strip())
    dag.node("b0").apply("shout").modify(_logged)
    dag.node("b1").apply("shout")
    dag.node("join", aggregator=lambda results: results["b0"] + b"+" + results["b1"])
    dag.edge("start", "b0")
    dag.edge("start", "b1")
    dag.edge("b0", "join")
    dag.edge("b1", "join")


def expected(data: bytes) -> bytes:
    return data.strip().upper() + b"+" + data.strip().upper()
