"""Signed hops through a gateway's async route: the loop works, forgeries change nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import faasflow
from faasflow import Context, Workflow
from faasflow.config import ServerConfig
from faasflow.server.app import create_app
from faasflow.stores.urls import state_store_from_url
from faasflow.wire.hop import Hop
from faasflow.wire.signing import SIGNATURE_HEADER, sign

from .conftest import serving

SECRET = b"s3cret-hmac-key"


class RelayGateway:
    """Stands in for the gateway's async route and queue worker: records each hop and,
    while ``relaying``, posts it on to the flow server's forward route."""

    def __init__(self) -> None:
        self.hops: list[tuple[str, dict[str, str], bytes]] = []
        self.relaying = True
        self.flow_url = ""
        self.answers: list[int] = []
        self.app = Starlette(
            routes=[Route("/async-function/{name}/flow/{rid}/forward", self.take, methods=["POST"])]
        )
        self._client = httpx.AsyncClient(timeout=10)
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(self, request: Request) -> Response:
        body = await request.body()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("x-faas-flow-signature", "content-type", "traceparent")
        }
        self.hops.append((request.url.path, headers, body))
        if self.relaying:
            task = asyncio.create_task(self._relay(request.path_params["rid"], headers, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Response(status_code=202)

    async def _relay(self, rid: str, headers: dict[str, str], body: bytes) -> None:
        response = await self._client.post(
            f"{self.flow_url}/flow/{rid}/forward", content=body, headers=headers
        )
        self.answers.append(response.status_code)

    async def aclose(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._client.aclose()


def fan(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("a").modify(lambda d: d + b"-a")
    dag.node("b").modify(lambda d: d + b"-b")
    dag.node("c").modify(lambda d: d + b"-c")
    dag.node("d", aggregator=lambda r: b"+".join(r.values()))
    dag.edge("a", "b")
    dag.edge("a", "c")
    dag.edge("b", "d")
    dag.edge("c", "d")


@pytest.fixture
async def gateway() -> AsyncIterator[RelayGateway]:
    relay = RelayGateway()
    yield relay
    await relay.aclose()


def flow_app(gateway_url: str, tmp_path: Path, **config: Any) -> Starlette:
    settings = ServerConfig(
        flow_name="fan",
        gateway=gateway_url,
        hmac_secret=SECRET,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        **config,
    )
    return create_app(fan, config=settings)


async def keys_naming(state_url: str, signatures: list[str]) -> list[str]:
    """The state store's keys that contain one of ``signatures`` (``sha256=HEX``), once
    none is left or after a deadline (a request's end cleans up after its result)."""
    digests = [signature.removeprefix("sha256=") for signature in signatures]
    store = state_store_from_url(state_url)
    await store.open()
    try:
        deadline = time.monotonic() + 10
        while True:
            found = [key for key in await store.keys("") if any(d in key for d in digests)]
            if not found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)
    finally:
        await store.close()


async def wait_result(client: httpx.AsyncClient, url: str, rid: str) -> httpx.Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        response = await client.get(f"{url}/flow/{rid}/result")
        if response.status_code != 404:
            return response
        assert loop.time() < deadline
        await asyncio.sleep(0.02)


async def test_hops_travel_through_the_gateway_signed(
    tmp_path: Path, gateway: RelayGateway
) -> None:
    async with (
        serving(gateway.app) as gw_url,
        serving(flow_app(gw_url, tmp_path)) as url,
        httpx.AsyncClient(timeout=10) as client,
    ):
        gateway.flow_url = url
        rid = (await client.post(url + "/", content=b"x")).headers["X-Faas-Flow-Reqid"]
        assert (await wait_result(client, url, rid)).content == b"x-a-b+x-a-c"
    paths = sorted(path for path, _, _ in gateway.hops)
    assert paths == [f"/async-function/fan/flow/{rid}/forward"] * 4  # a, b, c and the join d
    for _, headers, body in gateway.hops:
        assert headers["x-faas-flow-signature"] == sign(SECRET, body)
    assert set(gateway.answers) == {200}
    # What refused replays while the request ran went with the request: its last hop
    # ended it, and nothing recorded for any of its hops is left behind.
    signatures = [headers["x-faas-flow-signature"] for _, headers, _ in gateway.hops]
    assert await keys_naming(f"sqlite:///{tmp_path / 'state.db'}", signatures) == []


async def test_the_server_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    settings = ServerConfig(flow_name="fan", gateway="http://127.0.0.1:9")
    with pytest.raises(faasflow.ConfigurationError, match="faasflow-hmac-secret"):
        create_app(fan, config=settings)


async def test_forged_tampered_replayed_stale_and_unsigned_hops_are_refused(
    tmp_path: Path, gateway: RelayGateway
) -> None:
    async with (
        serving(gateway.app) as gw_url,
        serving(flow_app(gw_url, tmp_path)) as url,
        httpx.AsyncClient(timeout=10) as client,
    ):
        gateway.flow_url = url
        gateway.relaying = False  # hold the first hop: we deliver it by hand
        rid = (await client.post(url + "/", content=b"x")).headers["X-Faas-Flow-Reqid"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not gateway.hops:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        _, headers, body = gateway.hops[0]
        forward = f"{url}/flow/{rid}/forward"
        hop = Hop.from_json(body)

        async def state() -> Any:
            return (await client.get(f"{url}/flow/{rid}/state")).json()

        before = await state()
        tampered = body.replace(b'"path":"a"', b'"path":"d"')
        stale_hop = replace(hop, sent_at=time.time() - 7200).json.encode()
        other = replace(hop, request_id="someone-else").json.encode()
        attempts = {
            "unsigned": (body, {}),
            "forged": (body, {SIGNATURE_HEADER: sign(b"guess", body)}),
            "tampered": (tampered, headers),
            "stale": (stale_hop, {SIGNATURE_HEADER: sign(SECRET, stale_hop)}),
            "other request": (other, {SIGNATURE_HEADER: sign(SECRET, other)}),
            "not sha256": (body, {SIGNATURE_HEADER: "sha1=abc"}),
            "malformed": (b"{not json", {SIGNATURE_HEADER: sign(SECRET, b"{not json")}),
        }
        for name, (content, sent_headers) in attempts.items():
            response = await client.post(forward, content=content, headers=sent_headers)
            assert response.status_code == 401, (name, response.text)
        assert await state() == before  # nothing ran, nothing changed

        # The genuine hop runs once; the same hop again is a replay.
        ok = await client.post(forward, content=body, headers=headers)
        assert ok.status_code == 200
        after = await state()
        assert after["nodes"]["a"]["state"] == "done"
        replay = await client.post(forward, content=body, headers=headers)
        assert replay.status_code == 401 and "replayed" in replay.text
        assert await state() == after

        # Let the rest flow; a hop for the finished request is acknowledged and ignored.
        gateway.relaying = True
        for _, more_headers, more in gateway.hops[1:]:
            await client.post(f"{url}/flow/{rid}/forward", content=more, headers=more_headers)
        assert (await wait_result(client, url, rid)).content == b"x-a-b+x-a-c"
        late = replace(hop, sent_at=time.time()).json.encode()
        ignored = await client.post(
            forward, content=late, headers={SIGNATURE_HEADER: sign(SECRET, late)}
        )
        assert ignored.status_code == 200 and "ignored" in ignored.text
        unknown = replace(hop, request_id="ghost", sent_at=time.time()).json.encode()
        missing = await client.post(
            f"{url}/flow/ghost/forward",
            content=unknown,
            headers={SIGNATURE_HEADER: sign(SECRET, unknown)},
        )
        assert missing.status_code == 404
    # Neither the hops that ran nor the ignored and unknown ones left a trace.
    posted = [sign(SECRET, late), sign(SECRET, unknown)]
    posted += [sent["x-faas-flow-signature"] for _, sent, _ in gateway.hops]
    assert await keys_naming(f"sqlite:///{tmp_path / 'state.db'}", posted) == []


async def test_a_hop_that_could_not_run_is_sent_again_then_given_up(
    gateway: RelayGateway,
) -> None:
    # OpenFaaS's queue worker calls once whatever the answer: the transport sends a hop
    # that failed again itself, with backoff, and after `redeliveries` failures hands it
    # to on_undeliverable (which fails its request).
    from faasflow.transports.openfaas import OpenFaaSTransport

    gateway.relaying = False
    given_up: list[tuple[Hop, Exception]] = []

    async def undeliverable(hop: Hop, error: Exception) -> None:
        given_up.append((hop, error))

    async with serving(gateway.app) as gw_url:
        transport = OpenFaaSTransport(gateway=gw_url, flow_name="fan", secret=SECRET,
                                      redeliveries=2, redelivery_delay=0.01)
        transport.on_undeliverable = undeliverable
        hop = Hop("r1", "fan", "b", "node", query="", sent_at=time.time())
        try:
            for failures in (1, 2):
                transport.retry_later(hop, RuntimeError("store away"))
                deadline = time.monotonic() + 5
                while len(gateway.hops) < failures:
                    assert time.monotonic() < deadline, "the hop was not sent again"
                    await asyncio.sleep(0.01)
            transport.retry_later(hop, RuntimeError("store still away"))
            deadline = time.monotonic() + 5
            while not given_up:
                assert time.monotonic() < deadline, "the hop was never given up"
                await asyncio.sleep(0.01)
        finally:
            await transport.close()
    assert len(gateway.hops) == 2
    assert [(h.id, str(e)) for h, e in given_up] == [(hop.id, "store still away")]
