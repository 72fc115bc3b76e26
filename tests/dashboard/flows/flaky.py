"""Flaky: node ``check`` fails until the test creates ``$DASHBOARD_GATE_DIR/ID.ok``."""

from __future__ import annotations

import os
from pathlib import Path

from faasflow import Context, Workflow


def define(flow: Workflow, context: Context) -> None:
    def check(data: bytes) -> bytes:
        if not (Path(os.environ["DASHBOARD_GATE_DIR"]) / f"{context.request_id}.ok").exists():
            raise RuntimeError("not ready yet")
        return data + b" ok"

    dag = flow.dag()
    dag.node("start").modify(lambda data: data.strip())
    dag.node("check").modify(check)
    dag.edge("start", "check")
