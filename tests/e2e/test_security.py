"""Hops between real processes: only genuine, fresh, first-time hops run.

The flow server's hops go through a recording proxy (:class:`Capture`) that keeps the
first one back: the test holds a genuine, signed hop of a running request and the
secret (it started the server with it). Forged, tampered, non-canonical, stale,
misaddressed, replayed and unsigned versions are posted straight to the flow server and
through the gateway (sync route and async route); each is refused with 401, and the
request's state does not change.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import httpx

from faasflow.stores.urls import state_store_from_url
from faasflow.wire.hop import Hop
from faasflow.wire.signing import SIGNATURE_HEADER, sign

from .conftest import FlowFactory
from .harness import (
    SECRET,
    Capture,
    CapturedHop,
    FlowClient,
    FlowServer,
    Gate,
    GatewayProcess,
    gate_flow_expected,
)

KEY = SECRET.encode()


def signed(body: bytes, key: bytes = KEY) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(key, body), "Content-Type": "application/json"}


def resigned(hop: Hop, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """``hop`` changed and properly signed with the real secret."""
    body = replace(hop, **changes).json.encode()
    return body, signed(body)


def bad_hops(genuine: CapturedHop, other_rid: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every way a hop for ``genuine``'s request can be wrong, as (body, headers)."""
    body, headers = genuine.body, genuine.headers
    hop = Hop.from_json(body)
    tampered_path = body.replace(b'"path":"a"', b'"path":"c"')
    assert tampered_path != body
    # The input ref (a data key, or a small value carried inline) with a byte changed,
    # under the genuine signature.
    ((name, ref),) = hop.inputs
    tampered_input = replace(hop, inputs=((name, ref[:-1] + ("x" if ref[-1] != "x" else "y")),))
    tampered_input_body = tampered_input.json.encode()
    assert tampered_input_body != body
    raw = json.loads(body)
    non_canonical = json.dumps(raw, indent=1, sort_keys=True).encode()
    return {
        "unsigned": (body, {"Content-Type": "application/json"}),
        "empty signature": (body, {SIGNATURE_HEADER: ""}),
        "not sha256": (body, {SIGNATURE_HEADER: "sha1=" + "0" * 40}),
        "forged (wrong key)": (body, signed(body, b"not-the-secret")),
        "forged (signature of another body)": (body, signed(body + b" ")),
        "tampered path": (tampered_path, headers),
        "tampered input": (tampered_input_body, headers),
        "tampered sent_at": (resigned(hop, sent_at=hop.sent_at + 1)[0], headers),
        "non-canonical": (non_canonical, signed(non_canonical)),
        "stale": resigned(hop, sent_at=time.time() - 7200),
        "from the future": resigned(hop, sent_at=time.time() + 3600),
        "another request": resigned(hop, request_id=other_rid),
        "another flow": resigned(hop, flow="someone-else"),
        "garbage": (b"\x00\xffnot json", signed(b"\x00\xffnot json")),
        "not an object": (b"[1,2,3]", signed(b"[1,2,3]")),
        "malformed JSON": (b'{"request_id": ', signed(b'{"request_id": ')),
    }


async def state_keys(url: str) -> list[str]:
    """Every plain key in the state store at ``url``."""
    store = state_store_from_url(url)
    await store.open()
    try:
        return await store.keys("")
    finally:
        await store.close()


async def refuse_all(
    client: httpx.AsyncClient, flow: FlowClient, server: FlowServer, rid: str,
    attempts: dict[str, tuple[bytes, dict[str, str]]],
) -> None:  # fmt: skip
    """Each attempt, straight to the flow server and through the gateway: 401."""
    for name, (content, headers) in attempts.items():
        direct = await client.post(f"{server.url}/flow/{rid}/forward", content=content,
                                   headers=headers)
        assert direct.status_code == 401, (name, direct.status_code, direct.text)
        assert direct.text.startswith("hop refused"), (name, direct.text)
        via = await flow.call("POST", f"/flow/{rid}/forward", content=content, headers=headers)
        assert via.status_code == 401, (name, via.status_code, via.text)


async def test_only_genuine_hops_run(
    flows: FlowFactory, gate: Gate, capture: Capture, gateway: GatewayProcess,
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    capture.forwarding = False  # keep the first hop back
    server = flows(hop_gateway=capture.url)
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"sec")
    other = await flow.submit(b"other")  # a second request the forgeries may name
    hops = await capture.captured(2)
    genuine = next(hop for hop in hops if Hop.from_json(hop.body).request_id == rid)
    assert genuine.path == f"/async-function/{server.name}/flow/{rid}/forward"
    assert genuine.headers[SIGNATURE_HEADER.lower()] == sign(KEY, genuine.body)

    before = await flow.state(rid)
    other_before = await flow.state(other)
    assert before["status"] == "running" and before["nodes"] == {}
    await refuse_all(client, flow, server, rid, bad_hops(genuine, other))
    # Through the gateway's async route too: queued, run, refused (nothing to see but
    # the state, which must not change).
    for content, headers in list(bad_hops(genuine, other).values())[:6]:
        queued = await flow.enqueue(f"/flow/{rid}/forward", content=content, headers=headers)
        assert queued.status_code == 202
    await flow.quiesce(capture)
    assert await flow.state(rid) == before
    assert await flow.state(other) == other_before
    assert gate.hits(rid, "a") == 0

    # The genuine hop, through the gateway's async route as the flow server sent it.
    capture.forwarding = True
    queued = await flow.enqueue(f"/flow/{rid}/forward", content=genuine.body,
                                headers=genuine.headers)
    assert queued.status_code == 202
    await gate.entered(rid, "b")  # a ran, b is running
    running = await flow.state(rid)
    assert running["nodes"]["a"]["state"] == "done"
    assert running["nodes"]["b"]["state"] == "running"

    # Replayed while the request runs: refused, nothing changes, a does not run again.
    replays = {
        "replayed": (genuine.body, genuine.headers),
        "replayed, re-signed stale": resigned(Hop.from_json(genuine.body),
                                              sent_at=time.time() - 7200),
    }
    await refuse_all(client, flow, server, rid, replays)
    await refuse_all(client, flow, server, rid, bad_hops(genuine, other))
    assert await flow.state(rid) == running
    assert gate.hits(rid, "a") == 1

    gate.release(rid, "b")
    result = await flow.result(rid)
    assert (result.status_code, result.content) == (200, gate_flow_expected(b"sec"))
    finished = await flow.state(rid)
    assert finished["status"] == "succeeded"

    # Replayed after the request finished: the record of hops already run went with
    # the request, so the finished status is what turns the replay away (acknowledged,
    # ignored); the stale one is still refused; nothing changes.
    await refuse_all(client, flow, server, rid, {"stale": replays["replayed, re-signed stale"]})
    late = await client.post(f"{server.url}/flow/{rid}/forward", content=genuine.body,
                             headers=genuine.headers)
    assert (late.status_code, late.text) == (200, f"ignored: request {rid} is succeeded\n")
    assert await flow.state(rid) == finished
    await flow.quiesce(capture)
    assert [gate.hits(rid, node) for node in "abc"] == [1, 1, 1]
    # Nothing recorded for the request's hops is left in the store.
    ran = [hop.headers[SIGNATURE_HEADER.lower()].removeprefix("sha256=")
           for hop in capture.hops if Hop.from_json(hop.body).request_id == rid]
    assert len(ran) == 3  # a, b and c
    assert [key for key in await state_keys(server.state_url)
            if any(signature in key for signature in ran)] == []
    # The other request never got its first hop: it is where it was.
    assert await flow.state(other) == other_before
