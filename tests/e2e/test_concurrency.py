"""200 requests at once through the gateway, each answered with its own, right result.

Every request's hops travel through the gateway's async queue and back to one flow
server process; the answers come either on the held connection (``X-Faas-Flow-Wait``)
or from the result route, polled.

How long 200 requests take depends on the machine and on what else runs on it (a shared
2-core runner may take minutes): that is for the benchmarks. What this test bounds is
progress: it fails as soon as the gateway answers no call of the flow for
:data:`STALL` seconds while requests are outstanding. Each request may take up to
:data:`HOLD` seconds, just under the flow server's ``max_wait`` (300).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import httpx
import pytest

from .harness import EXAMPLES, FlowClient, FlowServer, GatewayProcess

COUNT = 200
HOLD = 290.0
"""Seconds a request may take: its X-Faas-Flow-Wait, or how long its result is polled."""
STALL = 60.0
"""Seconds without the gateway answering a call of the flow (a hop, a poll, a result)
after which the test fails: hops that stop moving, not a slow machine."""


def distinct_inputs(count: int) -> list[bytes]:
    """``count`` different texts: varied words, sometimes a "!", and a unique marker."""
    vocab = ["alpha", "Beta", "beta", "gamma!", "δέλτα", "ε", "Zeta", "eta", "θ/θ", "[i]"]
    texts = []
    for i in range(count):
        words = [vocab[(i * k + k) % len(vocab)] for k in range(1, i % 9 + 2)]
        texts.append(" ".join([*words, f"r{i}", *words[:2]]).encode())
    return texts


async def waited(flow: FlowClient, data: bytes) -> tuple[str, httpx.Response]:
    answer = await flow.call("POST", content=data, headers={"X-Faas-Flow-Wait": f"{HOLD:g}"},
                             timeout=HOLD + 10)
    assert answer.status_code == 200, (data, answer.status_code, answer.text)
    return answer.headers["X-Faas-Flow-Reqid"], answer


async def polled(flow: FlowClient, data: bytes) -> tuple[str, httpx.Response]:
    rid = await flow.submit(data)
    # Many pollers at once: one look a second each leaves the CPU to the flow.
    result = await flow.result(rid, timeout=HOLD, interval=1.0)
    assert result.status_code == 200, (data, result.status_code, result.text)
    assert result.headers["X-Faas-Flow-Reqid"] == rid
    return rid, result


async def while_progressing(
    flow: FlowClient, calls: list[Awaitable[tuple[str, httpx.Response]]]
) -> list[tuple[str, httpx.Response]]:
    """Await ``calls``; fail once the gateway answered no call of ``flow`` (its hops
    included) for :data:`STALL` seconds while some are outstanding."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        last_count, last_change = -1, time.monotonic()
        while not all(task.done() for task in tasks):
            await asyncio.wait(tasks, timeout=2.0, return_when=asyncio.FIRST_EXCEPTION)
            if any(task.done() and task.exception() for task in tasks):
                break
            count = await flow.invocations()
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            done = sum(task.done() for task in tasks)
            assert time.monotonic() - last_change < STALL, (
                f"no call of {flow.name} answered for {STALL:g} s; {done} of {len(tasks)} "
                "requests answered"
            )
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(HOLD + 120)
@pytest.mark.parametrize(
    ("name", "how"),
    [("dynamic_branching", "waited"), ("parallel_branching", "half waited, half polled")],
)
async def test_200_concurrent_requests(
    name: str, how: str, gateway: GatewayProcess, example_servers: dict[str, FlowServer],
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    flow = FlowClient(client, gateway.url, name)
    inputs = distinct_inputs(COUNT)
    if how == "waited":
        calls = [waited(flow, data) for data in inputs]
    else:
        calls = [(waited if i % 2 else polled)(flow, data) for i, data in enumerate(inputs)]
    answers = await while_progressing(flow, calls)
    assert len({rid for rid, _ in answers}) == COUNT
    for data, (_, answer) in zip(inputs, answers, strict=True):
        assert answer.content == EXAMPLES[name].expected(data), data
    assert len({answer.content for _, answer in answers}) == COUNT  # each its own answer
