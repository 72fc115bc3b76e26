"""Every example flow, every one of its inputs: gateway -> flow server -> function folders.

The request enters through the gateway's ``/function/NAME``; each hop of an async flow
goes through the gateway's async route back to the flow server; each ``apply`` goes
through the gateway to the handler folders of ``examples/functions``. Three ways to get
the answer, each compared with the example's oracle:

* plain: a sync flow answers 200 with the result; an async one 202 and its id, and the
  result is fetched from ``/function/NAME/flow/ID/result``;
* ``X-Faas-Flow-Wait`` (through ``NAME.openfaas-fn``): 200 with the result;
* ``X-Faas-Flow-Callback-Url``: the receiver gets the result once, with the request id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from faasflow.engine.context import Context
from faasflow.engine.definition import build_flow

from .harness import EXAMPLES, FlowClient, FlowServer, GatewayProcess, Receiver, poll


def _is_sync(name: str) -> bool:
    context = Context(request_id="probe", flow_name=name)
    return build_flow(EXAMPLES[name].define, context).is_sync


SYNC = {name for name in EXAMPLES if _is_sync(name)}


def _cases() -> Iterator[Any]:
    for name, module in EXAMPLES.items():
        for index, (data, query) in enumerate(module.INPUTS):
            yield pytest.param(name, data, query, id=f"{name}-{index}")


def test_the_examples_are_all_here() -> None:
    assert {"greet", "sync_chain", "finally_hook"} <= SYNC
    assert {"async_chain", "parallel_branching", "dynamic_branching", "subdag",
            "context_data"} <= set(EXAMPLES) - SYNC


async def _plain(flow: FlowClient, name: str, data: bytes, query: str) -> None:
    answer = await flow.start(data, query=query)
    rid = answer.headers["X-Faas-Flow-Reqid"]
    if name in SYNC:
        assert answer.status_code == 200, answer.text
        result = answer
    else:
        assert answer.status_code == 202, answer.text
        assert answer.text == rid
        result = await flow.result(rid)
        assert result.status_code == 200, result.text
        assert result.headers["X-Faas-Flow-Reqid"] == rid
    assert result.content == EXAMPLES[name].expected(data, query)
    state = await flow.state(rid)
    assert (state["request_id"], state["flow"], state["status"]) == (rid, name, "succeeded")


async def _waited(client: httpx.AsyncClient, gateway: str, name: str, data: bytes,
                  query: str) -> None:
    # faas-cli names functions with their namespace: NAME.openfaas-fn is NAME.
    namespaced = FlowClient(client, gateway, f"{name}.openfaas-fn")
    answer = await namespaced.start(data, query=query, headers={"X-Faas-Flow-Wait": "60"})
    assert answer.status_code == 200, answer.text
    assert answer.content == EXAMPLES[name].expected(data, query)
    rid = answer.headers["X-Faas-Flow-Reqid"]
    # The stored result is the same, read through the namespaced name as well.
    stored = await namespaced.result(rid)
    assert (stored.status_code, stored.content) == (200, answer.content)


async def _called_back(flow: FlowClient, receiver: Receiver, name: str, data: bytes,
                       query: str) -> None:
    answer = await flow.start(
        data, query=query, headers={"X-Faas-Flow-Callback-Url": receiver.callback_url}
    )
    assert answer.status_code == (200 if name in SYNC else 202), answer.text
    rid = answer.headers["X-Faas-Flow-Reqid"]
    delivery = await receiver.delivered(rid)
    assert delivery.body == EXAMPLES[name].expected(data, query)
    assert delivery.headers["x-faas-flow-status"] == "success"
    assert delivery.headers["x-faas-flow-reqid"] == rid
    assert delivery.headers["x-faas-flow-flow"] == name
    # The request is over (its result is there), and it was called back once.
    assert (await flow.result(rid)).content == delivery.body
    assert len(receiver.of(rid)) == 1


@pytest.mark.parametrize(("name", "data", "query"), list(_cases()))
async def test_example_through_the_gateway(
    name: str,
    data: bytes,
    query: str,
    gateway: GatewayProcess,
    example_servers: dict[str, FlowServer],
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    flow = FlowClient(client, gateway.url, name)
    await asyncio.gather(
        _plain(flow, name, data, query),
        _waited(client, gateway.url, name, data, query),
        _called_back(flow, receiver, name, data, query),
    )


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_a_failing_request_is_called_back_as_a_failure(
    gateway: GatewayProcess,
    example_servers: dict[str, FlowServer],
    receiver: Receiver,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    log = tmp_path / "hooks.jsonl"
    flow = FlowClient(client, gateway.url, "finally_hook")
    answer = await flow.start(
        b"ship it",
        query=urlencode({"fail": "1", "log": str(log)}),
        headers={"X-Faas-Flow-Callback-Url": receiver.callback_url},
    )
    assert answer.status_code == 500, answer.text
    assert answer.headers["X-Faas-Flow-Status"] == "failure"
    assert "asked to fail" in answer.text
    rid = answer.headers["X-Faas-Flow-Reqid"]

    delivery = await receiver.delivered(rid)
    assert delivery.headers["x-faas-flow-status"] == "failure"
    assert delivery.headers["x-faas-flow-request-status"] == "failed"
    assert delivery.headers["x-faas-flow-reqid"] == rid
    assert b"asked to fail" in delivery.body and b"sync" in delivery.body

    state = await flow.state(rid)
    assert state["status"] == "failed"
    assert state["failure"]["node"] == "sync"
    assert "asked to fail" in state["failure"]["cause"]
    result = await flow.call("GET", f"/flow/{rid}/result")
    assert result.status_code == 409
    assert result.json()["status"] == "failed"

    # on_failure, then finally_, once each, in the flow server's process.
    events = await poll(lambda: asyncio.to_thread(_events, log), lambda e: len(e) >= 2,
                        what="the hooks' log")
    assert [(e["event"], e.get("state"), e["request_id"]) for e in events] == [
        ("failure", None, rid),
        ("finally", "failure", rid),
    ]
    assert len(receiver.of(rid)) == 1
