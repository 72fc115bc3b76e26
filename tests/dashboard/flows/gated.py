"""Gated: a chain of three nodes whose first waits until the test opens its gate.

The gate of request ``ID`` is the file ``$DASHBOARD_GATE_DIR/ID``: until it exists, node
``wait`` is running, so a test can pause the request while it is in flight, then let it
go, without guessing how long anything takes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from faasflow import Context, Workflow

GATE_DIR_ENV = "DASHBOARD_GATE_DIR"
HOLD_LIMIT = 60.0
"""Seconds a gate stays shut before the node gives up (a test that forgot to open it)."""


def define(flow: Workflow, context: Context) -> None:
    async def wait_for_gate(data: bytes) -> bytes:
        gate = Path(os.environ[GATE_DIR_ENV]) / context.request_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT
        while not gate.exists():
            if loop.time() > deadline:
                raise TimeoutError(f"gate {gate} was never opened")
            await asyncio.sleep(0.02)  # a file offers nothing to wait on: poll it
        return data + b" wait"

    dag = flow.dag()
    dag.node("wait").modify(wait_for_gate)
    dag.node("b").modify(lambda data: data + b" b")
    dag.node("c").modify(lambda data: data + b" c")
    dag.edge("wait", "b")
    dag.edge("b", "c")
