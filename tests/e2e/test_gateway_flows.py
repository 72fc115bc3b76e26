"""A gateway that starts its flows itself (``--flow NAME=FILE``), and stops them.

No secret is given: the gateway makes one for its flows, so hops are signed with a key
the test does not know, and they still run. On SIGTERM the gateway stops its flow
servers: none is left behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]

from .harness import EXAMPLES, EXAMPLES_DIR, FlowClient, GatewayProcess, child_env


async def test_flows_started_by_the_gateway(tmp_path: Path) -> None:
    env = child_env(tmp_path)
    del env["faasflow_hmac_secret"]  # the gateway makes one for its flows
    env["faasflow_state"] = f"sqlite:///{tmp_path / 'flows.db'}"
    gateway = GatewayProcess(
        tmp_path,
        options=["--flow", f"chain={EXAMPLES_DIR / 'async_chain.py'}",
                 "--flow", f"fan={EXAMPLES_DIR / 'parallel_branching.py'}"],
        env=env,
    )  # fmt: skip
    try:
        await asyncio.to_thread(gateway.start)
        children = psutil.Process(gateway.process.pid).children(recursive=True)
        assert len(children) == 2  # one faasflow serve per flow
        async with httpx.AsyncClient(timeout=60) as client:
            listed = (await client.get(f"{gateway.url}/system/functions")).json()
            flows = {entry["name"]: entry for entry in listed if entry["name"] in ("chain", "fan")}
            assert flows["chain"]["labels"] == {"faas-flow": "1"}
            assert flows["chain"]["annotations"]["faas-flow-desc"].startswith("Async chain")

            for name, example in (("chain", "async_chain"), ("fan", "parallel_branching")):
                flow = FlowClient(client, gateway.url, name)
                for data, query in EXAMPLES[example].INPUTS:
                    waited = await flow.start(data, query=query,
                                              headers={"X-Faas-Flow-Wait": "60"})
                    assert waited.status_code == 200, waited.text
                    assert waited.content == EXAMPLES[example].expected(data, query)
                rid = await flow.submit(b"polled")
                result = await flow.result(rid)
                assert result.content == EXAMPLES[example].expected(b"polled")
    finally:
        children = gateway.process.signal_stop()
        await asyncio.to_thread(gateway.process.wait_stopped, [])
        _, left = await asyncio.to_thread(psutil.wait_procs, children, 15)
        for child in left:  # never leak them, even when the test fails
            child.kill()
    assert gateway.process.returncode() == 0, gateway.process.output()
    # Its flow servers were stopped by the gateway itself, not left running.
    assert not left, f"flow servers left running: {[child.pid for child in left]}"
