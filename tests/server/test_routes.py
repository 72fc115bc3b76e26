"""The flow server's HTTP contract, over real HTTP on loopback (local transport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import faasflow
from faasflow import Context, Workflow
from faasflow.config import ServerConfig
from faasflow.errors import ConfigurationError
from faasflow.server.app import create_app
from faasflow.transports.inprocess import InProcessTransport
from faasflow.wire.signing import sign

from .conftest import serving


def greet(flow: Workflow, context: Context) -> None:
    flow.sync_node().modify(lambda d: b"Hello " + d)


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, data: bytes) -> bytes:
        self.entered.set()
        await self.release.wait()
        return data


def chain_with(gate: Gate | None = None, fail: bool = False) -> Any:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d + b"-a")
        node = dag.node("b")
        if gate is not None:
            node.modify(gate)
        if fail:
            node.modify(lambda d: 1 / 0)  # type: ignore[arg-type,return-value]
        dag.node("c").modify(lambda d: d + b"-c" + context.query_value("x", "").encode())
        dag.edge("a", "b")
        dag.edge("b", "c")

    return define


def local_app(define: Any, tmp_path: Path, **config: Any) -> Starlette:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = ServerConfig(flow_name="flow", **config)
    engine = faasflow.Engine(
        define,
        flow_name="flow",
        state_store=f"sqlite:///{tmp_path / 'state.db'}",
        transport=InProcessTransport(),
    )
    return create_app(define, config=settings, engine=engine)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def poll(call: Callable[[], Any], until: Callable[[Any], bool], seconds: float = 10) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await call()
        if until(value):
            return value
        assert loop.time() < deadline, f"gave up waiting; last: {value}"
        await asyncio.sleep(0.02)


async def test_a_sync_flow_answers_with_its_result(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with serving(local_app(greet, tmp_path)) as url:
        response = await client.post(url + "/", content=b"Adam")
        assert response.status_code == 200
        assert response.content == b"Hello Adam"
        rid = response.headers["X-Faas-Flow-Reqid"]
        assert (await client.get(f"{url}/flow/{rid}/result")).content == b"Hello Adam"
        state = (await client.get(f"{url}/flow/{rid}/state")).json()
        assert state["status"] == "succeeded" and state["request_id"] == rid


def sync_unless_many(gate: Gate) -> Any:
    """One sync node, unless the query says ``many=1``: then a chain held by ``gate``."""

    def define(flow: Workflow, context: Context) -> None:
        if context.query_value("many", "") != "1":
            flow.sync_node().modify(lambda d: b"one:" + d)
            return
        dag = flow.dag()
        dag.node("a").modify(gate)
        dag.node("b").modify(lambda d: d + b"-b")
        dag.edge("a", "b")

    return define


def chain_unless_one(flow: Workflow, context: Context) -> None:
    if context.query_value("one", "") == "1":
        flow.sync_node().modify(lambda d: b"one:" + d)
    else:
        chain_with()(flow, context)


async def test_sync_or_not_is_decided_for_each_request_s_query(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    # Start-up builds the flow for an empty query: a chain here.
    async with serving(local_app(chain_unless_one, tmp_path / "a")) as url:
        one = await client.post(url + "/?one=1", content=b"x")
        assert (one.status_code, one.content) == (200, b"one:x")
        assert (await client.post(url + "/", content=b"x")).status_code == 202
    # A single sync node for an empty query, a chain for this request: 202 at once,
    # not a wait for the chain's end.
    gate = Gate()
    async with serving(local_app(sync_unless_many(gate), tmp_path / "b")) as url:
        one = await client.post(url + "/", content=b"x")
        assert (one.status_code, one.content) == (200, b"one:x")
        many = await client.post(url + "/?many=1", content=b"x")
        assert many.status_code == 202
        rid = many.headers["X-Faas-Flow-Reqid"]
        gate.release.set()
        result = await poll(
            lambda: client.get(f"{url}/flow/{rid}/result"), lambda r: r.status_code == 200
        )
        assert result.content == b"x-b"


async def test_an_async_flow_answers_202_then_the_result_can_be_fetched(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with serving(local_app(chain_with(), tmp_path)) as url:
        response = await client.post(url + "/?x=1", content=b"in")
        assert response.status_code == 202
        rid = response.headers["X-Faas-Flow-Reqid"]
        assert response.text == rid
        result = await poll(
            lambda: client.get(f"{url}/flow/{rid}/result"), lambda r: r.status_code == 200
        )
        assert result.content == b"in-a-c1"


async def test_wait_header_answers_with_the_result(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with serving(local_app(chain_with(), tmp_path)) as url:
        response = await client.post(url + "/", content=b"w", headers={"X-Faas-Flow-Wait": "5"})
        assert response.status_code == 200
        assert response.content == b"w-a-c"
        gate = Gate()
    async with serving(local_app(chain_with(gate), tmp_path / "g")) as url:
        response = await client.post(url + "/", content=b"w", headers={"X-Faas-Flow-Wait": "0.1"})
        assert response.status_code == 202  # did not end in time
        gate.release.set()


async def test_failure_within_the_wait_is_a_500_naming_the_node(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with serving(local_app(chain_with(fail=True), tmp_path)) as url:
        response = await client.post(url + "/", content=b"w", headers={"X-Faas-Flow-Wait": "5"})
        assert response.status_code == 500
        assert "node 'b'" in response.text and "ZeroDivisionError" in response.text
        rid = response.headers["X-Faas-Flow-Reqid"]
        result = await client.get(f"{url}/flow/{rid}/result")
        assert result.status_code == 409
        assert result.json()["failure"]["node"] == "b"


async def test_client_chosen_ids(tmp_path: Path, client: httpx.AsyncClient) -> None:
    async with serving(local_app(greet, tmp_path)) as url:
        ok = await client.post(url + "/", content=b"x", headers={"X-Faas-Flow-Reqid": "my-id.1"})
        assert ok.headers["X-Faas-Flow-Reqid"] == "my-id.1"
        again = await client.post(url + "/", content=b"y", headers={"X-Faas-Flow-Reqid": "my-id.1"})
        assert again.status_code == 409
        assert (await client.get(f"{url}/flow/my-id.1/result")).content == b"Hello x"
        for bad in ("../etc", "a b", "x" * 129, "ä"):
            response = await client.post(
                url + "/", content=b"x", headers={"X-Faas-Flow-Reqid": bad.encode()}
            )
            assert response.status_code == 400, bad


async def test_pause_resume_stop_over_http(tmp_path: Path, client: httpx.AsyncClient) -> None:
    gate = Gate()
    async with serving(local_app(chain_with(gate), tmp_path)) as url:
        rid = (await client.post(url + "/", content=b"p")).headers["X-Faas-Flow-Reqid"]
        await gate.entered.wait()
        paused = await client.post(f"{url}/flow/{rid}/pause")
        assert paused.json() == {"request_id": rid, "status": "paused"}
        assert (await client.post(f"{url}/flow/{rid}/pause")).status_code == 409
        gate.release.set()
        state = await poll(
            lambda: client.get(f"{url}/flow/{rid}/state"),
            lambda r: r.json()["nodes"].get("b", {}).get("state") == "done",
        )
        assert state.json()["status"] == "paused"
        assert state.json()["nodes"]["c"] == {"state": "held"}  # not run while paused
        assert (await client.get(f"{url}/flow/{rid}/result")).status_code == 404
        resumed = await client.post(f"{url}/flow/{rid}/resume")
        assert resumed.status_code == 200
        result = await poll(
            lambda: client.get(f"{url}/flow/{rid}/result"), lambda r: r.status_code == 200
        )
        assert result.content == b"p-a-c"
        assert (await client.post(f"{url}/flow/{rid}/stop")).status_code == 409


async def test_legacy_query_api(tmp_path: Path, client: httpx.AsyncClient) -> None:
    gate = Gate()
    async with serving(local_app(chain_with(gate), tmp_path)) as url:
        rid = (await client.post(url + "/", content=b"l")).headers["X-Faas-Flow-Reqid"]
        await gate.entered.wait()
        assert (await client.get(f"{url}/?state={rid}")).text == "RUNNING"
        assert (await client.post(f"{url}/?pause-flow={rid}")).status_code == 200
        assert (await client.get(f"{url}/?state={rid}")).text == "PAUSED"
        assert (await client.post(f"{url}/?resume-flow={rid}")).status_code == 200
        assert (await client.post(f"{url}/?stop-flow={rid}")).status_code == 200
        gate.release.set()
        assert (await client.get(f"{url}/?state={rid}")).text == "STOPPED"
        assert (await client.get(f"{url}/?state=nobody")).status_code == 404
        assert (await client.get(f"{url}/?state=a%2Fb")).status_code == 400
        export = (await client.get(f"{url}/?export-dag=true")).json()
        assert export["flow"] == "flow"
        assert [n["id"] for n in export["dag"]["nodes"]] == ["a", "b", "c"]


async def test_bad_input_gets_a_clear_4xx(tmp_path: Path, client: httpx.AsyncClient) -> None:
    async with serving(local_app(chain_with(), tmp_path, max_body_size=1000)) as url:
        assert (await client.post(url + "/", content=b"x" * 1001)).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"y" * 100

        assert (await client.post(url + "/", content=chunks())).status_code == 413
        bad_callback = await client.post(
            url + "/", content=b"x", headers={"X-Faas-Flow-Callback-Url": "ftp://x"}
        )
        assert bad_callback.status_code == 400
        assert (
            await client.post(url + "/", headers={"X-Faas-Flow-Wait": "soon"})
        ).status_code == 400
        for verb in ("pause", "resume", "stop", "redrive"):
            assert (await client.post(f"{url}/flow/ghost/{verb}")).status_code == 404
        assert (await client.get(f"{url}/flow/ghost/state")).status_code == 404
        assert (await client.get(f"{url}/flow/ghost/result")).status_code == 404
        assert (await client.post(f"{url}/flow/ghost/explode")).status_code == 404
        assert (await client.post(f"{url}/flow/a%20b/pause")).status_code == 400
        # No hops over HTTP in local mode.
        assert (await client.post(f"{url}/flow/ghost/forward", content=b"{}")).status_code == 404
        assert (await client.get(f"{url}/healthz")).status_code == 200


async def test_control_token(tmp_path: Path, client: httpx.AsyncClient) -> None:
    gate = Gate()
    async with serving(local_app(chain_with(gate), tmp_path, control_token="t0ken")) as url:
        rid = (await client.post(url + "/", content=b"x")).headers["X-Faas-Flow-Reqid"]
        await gate.entered.wait()
        for call in (
            client.post(f"{url}/flow/{rid}/stop"),
            client.post(f"{url}/?stop-flow={rid}"),
            client.get(f"{url}/flow/{rid}/state"),
            client.post(f"{url}/flow/{rid}/stop", headers={"Authorization": "Bearer no"}),
            # Not ASCII: refused like any wrong token (header bytes, not text, compared).
            client.get(f"{url}/flow/{rid}/state",
                       headers={"Authorization": "Bearer t\u00f6ken".encode()}),
            client.get(f"{url}/flow/{rid}/state", headers={"Authorization": b"Bearer \xff"}),
        ):
            assert (await call).status_code == 401
        state = await client.get(
            f"{url}/flow/{rid}/state", headers={"Authorization": "Bearer t0ken"}
        )
        assert state.json()["status"] == "running"
        gate.release.set()


def test_a_control_token_that_is_not_ascii_is_refused_at_start() -> None:
    # No client could send it in a header: every control call would fail.
    with pytest.raises(ConfigurationError, match="faasflow-control-token"):
        ServerConfig(flow_name="flow", control_token="t\u00f6ken")


async def test_authenticated_new_requests(tmp_path: Path, client: httpx.AsyncClient) -> None:
    app = local_app(greet, tmp_path, hmac_secret=b"k3y", authenticate_requests=True)
    async with serving(app) as url:
        assert (await client.post(url + "/", content=b"A")).status_code == 401
        forged = await client.post(
            url + "/", content=b"A", headers={"X-Hub-Signature-256": sign(b"wrong", b"A")}
        )
        assert forged.status_code == 401
        for garbled in ("sha256=caf\u00e9".encode(), b"sha256=\xff"):
            answer = await client.post(
                url + "/", content=b"A", headers={"X-Hub-Signature-256": garbled}
            )
            assert (answer.status_code, answer.text) == (
                401, "request not authenticated: bad signature\n"
            )
        signed = await client.post(
            url + "/", content=b"A", headers={"X-Hub-Signature-256": sign(b"k3y", b"A")}
        )
        assert signed.content == b"Hello A"


class Receiver:
    """A callback receiver that refuses the first ``refuse`` deliveries."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self.app = Starlette(routes=[Route("/cb", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.body()))
        if len(self.calls) <= self.refuse:
            return PlainTextResponse("busy", status_code=503)
        self.arrived.set()
        return PlainTextResponse("thanks")


async def test_callbacks_on_success_and_failure_with_retries(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    receiver = Receiver(refuse=2)
    async with serving(receiver.app) as cb_url, serving(local_app(chain_with(), tmp_path)) as url:
        response = await client.post(
            url + "/", content=b"cb", headers={"X-Faas-Flow-Callback-Url": cb_url + "/cb"}
        )
        rid = response.headers["X-Faas-Flow-Reqid"]
        await asyncio.wait_for(receiver.arrived.wait(), 20)
        assert len(receiver.calls) == 3  # two refusals, then accepted; nothing after
        headers, body = receiver.calls[-1]
        assert body == b"cb-a-c"
        assert headers["x-faas-flow-reqid"] == rid
        assert headers["x-faas-flow-status"] == "success"

    failing = Receiver()
    async with (
        serving(failing.app) as cb_url,
        serving(local_app(chain_with(fail=True), tmp_path / "f")) as url,
    ):
        response = await client.post(
            url + "/", content=b"cb", headers={"X-Faas-Flow-Callback-Url": cb_url + "/cb"}
        )
        await asyncio.wait_for(failing.arrived.wait(), 20)
        headers, body = failing.calls[0]
        assert headers["x-faas-flow-status"] == "failure"
        assert headers["x-faas-flow-reqid"] == response.headers["X-Faas-Flow-Reqid"]
        assert b"node 'b'" in body


async def test_requests_listing_and_history_routes(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with serving(local_app(chain_with(), tmp_path, control_token="t0k")) as url:
        auth = {"Authorization": "Bearer t0k"}
        ids = []
        for i in range(3):
            answer = await client.post(url + "/", content=b"x", headers={
                "X-Faas-Flow-Reqid": f"q{i}", "X-Faas-Flow-Wait": "10"})
            assert answer.status_code == 200, answer.text
            ids.append(f"q{i}")

        assert (await client.get(f"{url}/requests")).status_code == 401  # control token
        first = (await client.get(f"{url}/requests?limit=2", headers=auth)).json()
        assert [r["request_id"] for r in first["requests"]] == ["q2", "q1"]
        assert first["requests"][0]["status"] == "succeeded"
        rest = await client.get(f"{url}/requests", params={"before": first["next"]}, headers=auth)
        assert ([r["request_id"] for r in rest.json()["requests"]], rest.json()["next"]) == (
            ["q0"], None)
        running = await client.get(f"{url}/requests?status=running,paused", headers=auth)
        assert running.json() == {"requests": [], "next": None}

        for bad, message in (("status=done", "unknown status done"),
                             ("limit=x", "limit must be a number"),
                             ("limit=5000", "limit must be 1-1000"),
                             ("before=zzz", "invalid cursor")):
            answer = await client.get(f"{url}/requests?{bad}", headers=auth)
            assert (answer.status_code, message in answer.text) == (400, True), answer.text

        history = (await client.get(f"{url}/flow/q1/history", headers=auth)).json()
        assert [(e["node"], e["event"]) for e in history if e["kind"] == "node"] == [
            ("a", "started"), ("a", "finished"), ("b", "started"), ("b", "finished"),
            ("c", "started"), ("c", "finished")]
        state = (await client.get(f"{url}/flow/q1/state", headers=auth)).json()
        assert {path: node["state"] for path, node in state["nodes"].items()} == {
            "a": "done", "b": "done", "c": "done"}
        assert state["nodes"]["c"]["size_out"] == len(b"x-a-c")
        missing = await client.get(f"{url}/flow/nope/history", headers=auth)
        assert missing.status_code == 404

        tail = (await client.get(f"{url}/flow/q1/history?start=-1", headers=auth)).json()
        assert [(e["kind"], e["event"]) for e in tail] == [("request", "succeeded")]
        for bad in ("limit=0", "start=x", "limit=-2"):
            answer = await client.get(f"{url}/flow/q1/history?{bad}", headers=auth)
            assert answer.status_code == 400, answer.text

        assert (await client.get(f"{url}/counts")).status_code == 401  # control token
        counts = (await client.get(f"{url}/counts", headers=auth)).json()
        assert counts == {"running": 0, "paused": 0, "succeeded": 3, "failed": 0, "stopped": 0}
        some = await client.get(f"{url}/counts?status=succeeded,paused", headers=auth)
        assert some.json() == {"succeeded": 3, "paused": 0}
        bad = await client.get(f"{url}/counts?status=done", headers=auth)
        assert (bad.status_code, "unknown status done" in bad.text) == (400, True)


async def test_headers_and_ids_are_checked_and_echoed_short(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    long = "i" * 10_000
    shown = "'" + "i" * 64 + "…'"  # what an error shows of it

    async with serving(local_app(chain_with(), tmp_path)) as url:

        async def refused(method: str, path: str, **options: Any) -> str:
            answer = await client.request(method, url + path, **options)
            assert answer.status_code == 400, (path, answer.text)
            assert len(answer.text) < 200, answer.text
            return answer.text

        for wait in ("nan", "NaN", "inf", "-inf", "1e999"):
            text = await refused("POST", "/", headers={"X-Faas-Flow-Wait": wait})
            assert text == f"X-Faas-Flow-Wait must be a finite number of seconds, got {wait!r}\n"
        text = await refused("POST", "/", headers={"X-Faas-Flow-Wait": "-1"})
        assert text == "X-Faas-Flow-Wait must not be negative, got '-1'\n"
        text = await refused("POST", "/", headers={"X-Faas-Flow-Wait": long})
        assert shown in text

        empty = await refused("POST", "/", headers={"X-Faas-Flow-Reqid": ""})
        assert empty.startswith("X-Faas-Flow-Reqid is empty:")
        text = await refused("POST", "/", headers={"X-Faas-Flow-Reqid": long})
        assert text == f"invalid request id {shown}: use 1-128 letters, digits, '_', '.' or '-'\n"
        assert shown in await refused("POST", "/", headers={"X-Faas-Flow-Callback-Url": long})

        # Request ids in paths and in the query API.
        assert shown in await refused("GET", f"/flow/{long}/state")
        assert shown in await refused("POST", f"/flow/{long}/pause")
        assert shown in await refused("GET", "/", params={"state": long})
        assert (await refused("GET", "/", params={"state": ""})).startswith(
            "the request id is empty")
        # Listing: every value taken from the query string.
        for params, start in (
            ({"before": long}, "invalid cursor"),
            ({"status": long}, "unknown status"),
            ({"limit": "9" * 5000}, "limit must be 1-1000"),
            ({"limit": "5000", "before": "1.5/x"}, "limit must be 1-1000"),
            ({"limit": "\u00b2"}, "limit must be a number"),
        ):
            text = await refused("GET", "/requests", params=params)
            assert text.startswith(start), text
            assert params.get("limit") == "5000" or "…" in text or "'\u00b2'" in text
        # Nothing above started a request.
        assert (await client.get(f"{url}/requests")).json()["requests"] == []
