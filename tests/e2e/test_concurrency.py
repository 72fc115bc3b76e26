"""200 requests at once through the gateway, each answered with its own, right result.

Every request's hops travel through the gateway's async queue and back to one flow
server process; the answers come either on the held connection (``X-Faas-Flow-Wait``)
or from the result route, polled.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .harness import EXAMPLES, FlowClient, FlowServer, GatewayProcess

COUNT = 200


def distinct_inputs(count: int) -> list[bytes]:
    """``count`` different texts: varied words, sometimes a "!", and a unique marker."""
    vocab = ["alpha", "Beta", "beta", "gamma!", "δέλτα", "ε", "Zeta", "eta", "θ/θ", "[i]"]
    texts = []
    for i in range(count):
        words = [vocab[(i * k + k) % len(vocab)] for k in range(1, i % 9 + 2)]
        texts.append(" ".join([*words, f"r{i}", *words[:2]]).encode())
    return texts


async def waited(flow: FlowClient, data: bytes) -> tuple[str, httpx.Response]:
    answer = await flow.start(data, headers={"X-Faas-Flow-Wait": "90"})
    assert answer.status_code == 200, (data, answer.status_code, answer.text)
    return answer.headers["X-Faas-Flow-Reqid"], answer


async def polled(flow: FlowClient, data: bytes) -> tuple[str, httpx.Response]:
    rid = await flow.submit(data)
    # Many pollers at once: one look a second each leaves the CPU to the flow.
    result = await flow.result(rid, timeout=90, interval=1.0)
    assert result.status_code == 200, (data, result.status_code, result.text)
    assert result.headers["X-Faas-Flow-Reqid"] == rid
    return rid, result


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
    answers = await asyncio.gather(*calls)
    assert len({rid for rid, _ in answers}) == COUNT
    for data, (_, answer) in zip(inputs, answers, strict=True):
        assert answer.content == EXAMPLES[name].expected(data), data
    assert len({answer.content for _, answer in answers}) == COUNT  # each its own answer
