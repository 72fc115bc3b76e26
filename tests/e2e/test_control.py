"""Pause, resume and stop a request in the middle of its flow, through the gateway.

The flow (``a`` -> ``b`` -> ``c``, see ``harness.GATE_FLOW``) calls the test's gate
server in every node; ``b`` only answers once the test releases it, so the test knows
that ``b`` is running while it pauses or stops the request. The flow server's hops go
through a recording proxy (:class:`Capture`) to the gateway, which lets the test wait
until every hop has been answered (:meth:`FlowClient.quiesce`) before it checks that
nothing else ran.
"""

from __future__ import annotations

import httpx

from .conftest import FlowFactory
from .harness import Capture, FlowClient, Gate, GatewayProcess, Receiver, gate_flow_expected


async def test_pause_holds_the_next_node_and_resume_finishes_once(
    flows: FlowFactory, gate: Gate, capture: Capture, gateway: GatewayProcess,
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    server = flows(hop_gateway=capture.url)
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"p")
    await gate.entered(rid, "b")  # b is running, held at the gate

    paused = await flow.control(rid, "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"request_id": rid, "status": "paused"}
    state = await flow.state(rid)
    assert state["status"] == "paused"
    assert state["nodes"]["a"]["state"] == "done"
    assert state["nodes"]["b"]["state"] == "running"

    # b finishes while paused: its successor's hop arrives and is held, c does not run.
    gate.release(rid, "b")
    await flow.quiesce(capture)
    state = await flow.state(rid)
    assert state["status"] == "paused"
    assert state["nodes"]["b"]["state"] == "done"
    assert state["nodes"]["c"] == {"state": "held"}
    assert gate.hits(rid, "c") == 0
    assert capture.paths() == ["a", "b", "c"]  # c's hop was sent, and held on arrival
    assert (await flow.call("GET", f"/flow/{rid}/result")).status_code == 404
    assert (await flow.control(rid, "pause")).status_code == 409  # already paused

    resumed = await flow.control(rid, "resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] in ("running", "succeeded")
    result = await flow.result(rid)
    assert (result.status_code, result.content) == (200, gate_flow_expected(b"p"))

    await flow.quiesce(capture)
    assert [gate.hits(rid, node) for node in "abc"] == [1, 1, 1]  # each node ran once
    assert capture.paths() == ["a", "b", "c", "c"]  # the held hop, sent again on resume
    assert (await flow.state(rid))["status"] == "succeeded"
    assert (await flow.control(rid, "resume")).status_code == 409


async def test_stop_ends_the_request_and_nothing_runs_after(
    flows: FlowFactory, gate: Gate, capture: Capture, gateway: GatewayProcess,
    receiver: Receiver, client: httpx.AsyncClient,
) -> None:  # fmt: skip
    server = flows(hop_gateway=capture.url)
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"s", headers={"X-Faas-Flow-Callback-Url": receiver.callback_url})
    await gate.entered(rid, "b")

    stopped = await flow.control(rid, "stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json() == {"request_id": rid, "status": "stopped"}

    delivery = await receiver.delivered(rid)
    assert delivery.headers["x-faas-flow-status"] == "failure"
    assert delivery.headers["x-faas-flow-request-status"] == "stopped"

    gate.release(rid, "b")  # b's call answers; its successor must not run
    await flow.quiesce(capture)
    assert gate.hits(rid, "c") == 0
    assert [gate.hits(rid, node) for node in "ab"] == [1, 1]
    assert capture.paths()[:2] == ["a", "b"]
    state = await flow.state(rid)
    assert state["status"] == "stopped"
    result = await flow.call("GET", f"/flow/{rid}/result")
    assert result.status_code == 409 and result.json()["status"] == "stopped"
    for verb in ("pause", "resume", "stop", "redrive"):
        answer = await flow.control(rid, verb)
        assert answer.status_code == 409, (verb, answer.text)
    assert (await flow.state(rid))["status"] == "stopped"
    assert len(receiver.of(rid)) == 1


async def test_the_faas_flow_query_api_through_the_gateway(
    flows: FlowFactory, gate: Gate, capture: Capture, gateway: GatewayProcess,
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    server = flows(hop_gateway=capture.url)
    flow = FlowClient(client, gateway.url, server.name)

    async def legacy(param: str, rid: str, method: str = "POST") -> httpx.Response:
        return await flow.call(method, f"?{param}={rid}")

    rid = await flow.submit(b"q")
    await gate.entered(rid, "b")
    assert (await legacy("state", rid, "GET")).text == "RUNNING"
    paused = await legacy("pause-flow", rid)
    assert paused.status_code == 200, paused.text
    assert (await legacy("state", rid, "GET")).text == "PAUSED"

    gate.release(rid, "b")
    await flow.quiesce(capture)
    assert gate.hits(rid, "c") == 0
    assert (await legacy("state", rid)).text == "PAUSED"

    resumed = await legacy("resume-flow", rid)
    assert resumed.status_code == 200, resumed.text
    result = await flow.result(rid)
    assert (result.status_code, result.content) == (200, gate_flow_expected(b"q"))
    assert (await legacy("state", rid, "GET")).text == "SUCCEEDED"
    assert [gate.hits(rid, node) for node in "abc"] == [1, 1, 1]

    # stop-flow stops the one request it names, not the others.
    doomed = await flow.submit(b"x")
    spared = await flow.submit(b"y")
    await gate.entered(doomed, "b")
    await gate.entered(spared, "b")
    stopped = await legacy("stop-flow", doomed)
    assert stopped.status_code == 200, stopped.text
    assert (await legacy("state", doomed, "GET")).text == "STOPPED"
    assert (await legacy("state", spared, "GET")).text == "RUNNING"
    gate.release(doomed, "b")
    gate.release(spared, "b")
    assert (await flow.result(spared)).content == gate_flow_expected(b"y")
    await flow.quiesce(capture)
    assert gate.hits(doomed, "c") == 0
    assert (await legacy("state", doomed, "GET")).text == "STOPPED"
    # An unknown id is a 404 in the query API too (faas-flow said FINISHED).
    assert (await legacy("state", "no-such-request", "GET")).status_code == 404
    assert (await legacy("pause-flow", "no-such-request")).status_code == 404
