"""The flow server killed mid-flow (SIGKILL) and started again on the same SQLite state.

Node ``b`` of the gate flow is running (its call is held at the gate) when the server
process is killed. A new ``faasflow serve`` with the same state takes over its dead
predecessor's requests at start and sends ``b``'s pending hops again; the requests
finish with the right result, and ``b``'s record shows the second attempt.

With the gateway transport the hops go through a recording proxy, so that the test can
tell quickly when a resent hop was lost instead of waiting for a deadline: once both
hops were resent and every call and forwarded hop has been answered without ``b`` being
called again, nothing is going to call it.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import FlowFactory
from .harness import (
    Capture,
    FlowClient,
    Gate,
    GatewayProcess,
    free_port,
    gate_flow_expected,
    poll,
)


@pytest.mark.parametrize(
    ("transport", "where"),
    [
        ("gateway", "same port"),
        ("gateway", "new port, registered again"),
        ("local", "same port"),
    ],
)
async def test_a_killed_server_is_replaced_and_the_request_finishes(
    transport: str, where: str, flows: FlowFactory, gate: Gate, capture: Capture,
    gateway: GatewayProcess, client: httpx.AsyncClient,
) -> None:  # fmt: skip
    hops_via_gateway = transport == "gateway"
    server = flows(
        "restart",
        hop_gateway=capture.url if hops_via_gateway else None,
        options=["--transport", transport],
    )
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"r")
    other = await flow.submit(b"o")  # a second request, also in b
    await gate.entered(rid, "b")
    await gate.entered(other, "b")
    before = await flow.state(rid)
    assert before["nodes"]["b"]["state"] == "running"
    assert before["nodes"]["b"]["attempt"] == 1

    assert server.process is not None
    dead = server.process
    dead.kill()  # SIGKILL while b runs; reaped, so its pid is really gone
    assert dead.returncode() == -9
    down = await flow.call("GET", f"/flow/{rid}/state")
    assert down.status_code == 500 and "Can't reach service" in down.text
    # The other request's next try of b will pass the gate at once (rid's stays held).
    gate.release(other, "b")

    sent_before = capture.forwarded_count()
    if where != "same port":
        server.port = free_port()
        assert server.register() == 200  # the gateway now sends NAME's calls there
    await asyncio.to_thread(server.start)  # same name, same state, a new process
    assert server.process is not dead and server.process.running()

    # The new process sends b's pending hops again: b runs a second time, in it. Wait
    # until rid's b is called again and other's b ran again, then its c.
    if hops_via_gateway:
        # Or, once both hops were resent, until every call was answered: then nothing
        # more will run.
        async def progress() -> tuple[int, int, int | None]:
            forwarded = capture.forwarded_count()
            counted = await flow.invocations()
            in_flight: int | None = flow.calls + forwarded - counted
            if forwarded != capture.forwarded_count() or forwarded < sent_before + 2:
                in_flight = None  # still moving, or not resent yet
            return gate.hits(rid, "b"), gate.hits(other, "c"), in_flight

        seen = await poll(progress, lambda seen: seen[2] == 0 or seen[:3:2] == (2, 1),
                          what="b to run again (or every call to be answered)")
        assert seen[:2] == (2, 1), (
            f"b was not run again ({rid}: b called {seen[0]} times; {other}: c called "
            f"{seen[1]} times): a resent hop was lost; flow server log:\n"
            f"{server.process.output()}"
        )
    else:
        await gate.entered(rid, "b", count=2)
        await gate.entered(other, "c")

    state = await flow.state(rid)
    assert state["status"] == "running"
    assert state["nodes"]["a"]["state"] == "done"
    assert state["nodes"]["b"]["state"] == "running"
    assert state["nodes"]["b"]["attempt"] == 2

    gate.release(rid, "b")
    for request, data in ((rid, b"r"), (other, b"o")):
        result = await flow.result(request)
        assert (result.status_code, result.content) == (200, gate_flow_expected(data))
        assert [gate.hits(request, node) for node in "abc"] == [1, 2, 1]
        assert (await flow.state(request))["status"] == "succeeded"
    assert "recovered 2 interrupted request(s)" in server.process.output()
