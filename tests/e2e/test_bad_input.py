"""Bad input over real processes: a clear 4xx, never a 5xx, and nothing changed.

The flow server runs with ``--max-body-size 4096``. A request of the gate flow (held in
``b``) is the bystander: whatever the bad calls name, it keeps running and finishes
with its own result. Paths with special characters are sent byte for byte on a raw
socket, so no client library normalises them first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import FlowFactory
from .harness import FlowClient, FlowServer, Gate, GatewayProcess, gate_flow_expected

LIMIT = 4096


async def raw_request(
    url: str, method: str, target: str, headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, bytes]:  # fmt: skip
    """Send ``METHOD TARGET HTTP/1.1`` exactly as given; the status and the body."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest


@dataclass(frozen=True)
class Bystander:
    server: FlowServer
    flow: FlowClient
    rid: str


@pytest.fixture
async def bystander(
    flows: FlowFactory, gate: Gate, gateway: GatewayProcess, client: httpx.AsyncClient,
) -> Bystander:  # fmt: skip
    """A flow server with a small body limit, and a request of it held in ``b``."""
    server = flows("limits", options=["--max-body-size", str(LIMIT)])
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"victim", headers={"X-Faas-Flow-Reqid": "victim"})
    assert rid == "victim"
    await gate.entered(rid, "b")
    return Bystander(server, flow, rid)


async def still_fine(flow: FlowClient, gate: Gate, rid: str) -> None:
    """The bystander is still running in ``b``; let it go; it ends with its result."""
    state = await flow.state(rid)
    assert state["status"] == "running", state
    assert state["nodes"]["b"]["state"] == "running", state
    gate.release(rid, "b")
    result = await flow.result(rid)
    assert (result.status_code, result.content) == (200, gate_flow_expected(b"victim"))
    assert [gate.hits(rid, node) for node in "abc"] == [1, 1, 1]


async def test_unknown_request_ids_are_404(
    bystander: Bystander, gate: Gate
) -> None:
    flow, rid = bystander.flow, bystander.rid
    for ghost in ("no-such-request", "victim2", "VICTIM", "v"):
        assert (await flow.call("GET", f"/flow/{ghost}/state")).status_code == 404
        assert (await flow.call("GET", f"/flow/{ghost}/result")).status_code == 404
        for verb in ("pause", "resume", "stop", "redrive"):
            answer = await flow.control(ghost, verb)
            assert answer.status_code == 404, (ghost, verb, answer.text)
        for param in ("state", "pause-flow", "resume-flow", "stop-flow"):
            answer = await flow.call("POST", f"?{param}={ghost}")
            assert answer.status_code == 404, (ghost, param, answer.text)
    # A verb that is no route, on a real request.
    assert (await flow.control(rid, "explode")).status_code == 404
    await still_fine(flow, gate, rid)


PATHS = [
    "/flow/..%2F..%2Fvictim/stop",
    "/flow/..%2Fvictim/pause",
    "/flow/victim%2F..%2Fvictim/stop",
    "/flow/victim%2Fstop/pause",
    "/flow/%2E%2E%2Fvictim/stop",
    "/flow/victim%2F/stop",
    "/flow/victim%20/stop",
    "/flow/%20victim/pause",
    "/flow/vic%20tim/stop",
    "/flow/victim%00/stop",
    "/flow/victim%3Fx/stop",
    "/flow/victim%23/stop",
    "/flow/victim%5C..%5Cx/stop",
    "/flow/" + "v" * 129 + "/stop",
    "/flow/" + "v" * 1000 + "/state",
    "/flow/%F0%9F%92%A5/stop",
    "/flow/..%2F..%2Fvictim/state",
    "/flow/victim%2F..%2Fvictim/result",
    "/?stop-flow=..%2Fvictim",
    "/?pause-flow=victim%2F",
    "/?stop-flow=victim%20",
    "/?state=" + "v" * 129,
    "/?stop-flow=",
]


@pytest.mark.parametrize("via", ["gateway", "server"])
async def test_ids_with_path_characters_touch_nothing(
    via: str, bystander: Bystander, gate: Gate,
    gateway: GatewayProcess,
) -> None:  # fmt: skip
    server, flow, rid = bystander.server, bystander.flow, bystander.rid
    if via == "gateway":
        base, prefix = gateway.url, f"/function/{server.name}"
    else:
        base, prefix = server.url, ""
    for path in PATHS:
        for method in ("POST", "GET"):
            status, body = await raw_request(base, method, prefix + path)
            assert status in (400, 404, 405), (method, path, status, body[:200])
    await still_fine(flow, gate, rid)


async def test_bad_ids_for_new_requests_are_400_and_create_nothing(
    bystander: Bystander, gate: Gate
) -> None:
    flow, rid = bystander.flow, bystander.rid
    for wanted in ("../victim", "victim/..", "a b", "v" * 129, "a?b", "x%2Fy", "a,b", "x:y", "~x"):
        answer = await flow.start(b"new", headers={"X-Faas-Flow-Reqid": wanted})
        assert answer.status_code == 400, (wanted, answer.status_code, answer.text)
    # The id in use is refused; the request that has it is not disturbed.
    taken = await flow.start(b"intruder", headers={"X-Faas-Flow-Reqid": rid})
    assert taken.status_code == 409, taken.text
    await still_fine(flow, gate, rid)


@pytest.mark.parametrize("wanted", [".", ".."])
async def test_dot_ids_are_refused(
    wanted: str, bystander: Bystander, gate: Gate
) -> None:
    flow, rid = bystander.flow, bystander.rid
    try:
        answer = await flow.start(b"dots", headers={"X-Faas-Flow-Reqid": wanted})
        assert answer.status_code == 400, (wanted, answer.status_code, answer.text)
    finally:
        await still_fine(flow, gate, rid)


@pytest.mark.parametrize(
    "via", ["server", "gateway"]
)
async def test_a_non_ascii_request_id_is_400(
    via: str, bystander: Bystander, gate: Gate,
    gateway: GatewayProcess,
) -> None:  # fmt: skip
    server, flow, rid = bystander.server, bystander.flow, bystander.rid
    base = f"{gateway.url}/function/{server.name}" if via == "gateway" else server.url
    for wanted in ("é", "victim\u00e9", "\u2603"):
        status, body = await raw_request(
            base, "POST", urlsplit(base).path + "/",
            headers={"X-Faas-Flow-Reqid": wanted.encode().decode("latin-1")}, body=b"x",
        )  # fmt: skip
        assert status == 400, (wanted, status, body[:200])
    await still_fine(flow, gate, rid)


@pytest.mark.parametrize(
    "via", ["server", "gateway"]
)
async def test_dot_segments_do_not_reach_another_request(
    via: str, bystander: Bystander, gate: Gate,
    gateway: GatewayProcess,
) -> None:  # fmt: skip
    server, flow, rid = bystander.server, bystander.flow, bystander.rid
    prefix = f"/function/{server.name}" if via == "gateway" else ""
    base = gateway.url if via == "gateway" else server.url
    for path in ("/flow/ghost/../victim/stop", "/flow/./victim/stop",
                 "/flow/ghost/../victim/pause", "/flow/../flow/victim/stop"):
        status, body = await raw_request(base, "POST", prefix + path)
        assert status in (400, 404), (path, status, body[:200])
    await still_fine(flow, gate, rid)


async def test_oversized_bodies_are_413_and_create_nothing(
    bystander: Bystander, gate: Gate, client: httpx.AsyncClient,
) -> None:  # fmt: skip
    server, flow, rid = bystander.server, bystander.flow, bystander.rid
    big = b"x" * (LIMIT + 1)
    huge = b"y" * (1024 * 1024)
    for n, body in enumerate((big, huge)):
        chosen = {"X-Faas-Flow-Reqid": f"big-{n}"}
        # Through the gateway (the body arrives chunked, no Content-Length)...
        via = await flow.start(body, headers=chosen)
        assert via.status_code == 413, (len(body), via.status_code, via.text)
        # ...and straight to the flow server (with a Content-Length).
        direct = await client.post(server.url + "/", content=body, headers=chosen)
        assert direct.status_code == 413, (len(body), direct.status_code, direct.text)
        assert (await flow.call("GET", f"/flow/big-{n}/state")).status_code == 404
        # A hop that large is refused before anything else is looked at.
        hop = await client.post(f"{server.url}/flow/{rid}/forward", content=body)
        assert hop.status_code == 413, hop.text
        hop_via = await flow.call("POST", f"/flow/{rid}/forward", content=body)
        assert hop_via.status_code == 413, hop_via.text
    # Exactly at the limit is fine.
    fits = await flow.start(b"z" * LIMIT, headers={"X-Faas-Flow-Reqid": "fits"})
    assert fits.status_code == 202, fits.text
    await gate.entered("fits", "b")
    gate.release("fits", "b")
    assert (await flow.result("fits")).content == gate_flow_expected(b"z" * LIMIT)
    await still_fine(flow, gate, rid)


async def test_bad_headers_are_400_and_create_nothing(
    bystander: Bystander, gate: Gate
) -> None:
    flow, rid = bystander.flow, bystander.rid
    bad = [
        {"X-Faas-Flow-Wait": "soon"},
        {"X-Faas-Flow-Wait": "-1"},
        {"X-Faas-Flow-Wait": "nan"},
        {"X-Faas-Flow-Wait": ""},
        {"X-Faas-Flow-Wait": "1e"},
        {"X-Faas-Flow-Callback-Url": "ftp://example.com/x"},
        {"X-Faas-Flow-Callback-Url": "not a url"},
        {"X-Faas-Flow-Callback-Url": "http://"},
    ]
    for n, headers in enumerate(bad):
        chosen = f"bad-header-{n}"
        answer = await flow.start(b"data", headers={**headers, "X-Faas-Flow-Reqid": chosen})
        assert answer.status_code == 400, (headers, answer.status_code, answer.text)
        assert (await flow.call("GET", f"/flow/{chosen}/state")).status_code == 404
    await still_fine(flow, gate, rid)


async def test_malformed_json_and_garbage_hops(
    bystander: Bystander, gate: Gate, gateway: GatewayProcess,
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    server, flow, rid = bystander.server, bystander.flow, bystander.rid
    garbage = [b"", b"{", b"null", b"[]", b'{"request_id": "victim"}', bytes(range(256)),
               b'{"request_id":"victim","flow":"x","path":"a","kind":"node"}']
    for body in garbage:
        for headers in ({}, {"Content-Type": "application/json"},
                        {"X-Faas-Flow-Signature": "sha256=" + "0" * 64}):
            direct = await client.post(f"{server.url}/flow/{rid}/forward", content=body,
                                       headers=headers)
            assert direct.status_code == 401, (body[:30], headers, direct.text)
            via = await flow.call("POST", f"/flow/{rid}/forward", content=body, headers=headers)
            assert via.status_code == 401, (body[:30], headers, via.text)
    # The gateway's own JSON API answers malformed JSON with 400.
    for body in (b"{", b"[]", b'{"name": "x"}', b'{"name": "../x", "url": "http://a"}'):
        answer = await client.post(f"{gateway.url}/system/register", content=body)
        assert answer.status_code == 400, (body, answer.status_code, answer.text)
    await still_fine(flow, gate, rid)
