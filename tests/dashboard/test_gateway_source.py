"""The dashboard over a gateway: flow servers registered with ``faasflow gateway``'s app,
reached through real HTTP on loopback; the dashboard's API in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from faasflow.config import ServerConfig
from faasflow.dashboard.remote import GatewaySource
from faasflow.gateway import BackgroundServer, create_gateway
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import load_define
from faasflow.server.app import create_app as flow_server_app
from faasflow.transports.inprocess import InProcessTransport

from .conftest import FUNCTIONS, HEADERS, LOCAL_FLOWS, MakeClient, node_running, status_is
from .conftest import wait_for as wait

USER, PASSWORD = "admin", "gw-pass"
CONTROL = "control-token-1"


@dataclass
class Deployment:
    gateway: str
    servers: list[BackgroundServer]


@pytest.fixture
def deployment(tmp_path: Path, gate_dir: Path) -> Iterator[Deployment]:
    """Flow servers for three flows (``gated`` with a control token) behind a gateway
    that also serves handler folders, with Basic auth on ``/system/*``."""
    servers: list[BackgroundServer] = []
    urls: dict[str, str] = {}
    for name in ("dynamic_branching", "gated", "subdag"):
        engine = Engine(
            load_define(str(LOCAL_FLOWS[name])).define, flow_name=name,
            state_store=f"sqlite:///{tmp_path / f'{name}.db'}", functions_dir=FUNCTIONS,
            transport=InProcessTransport(),
        )  # fmt: skip
        config = ServerConfig(flow_name=name, control_token=CONTROL if name == "gated" else None)
        server = BackgroundServer(flow_server_app(engine.executor.define, config=config,
                                                  engine=engine))
        urls[name] = server.start()
        servers.append(server)
    flows = ("dynamic_branching", "gated", "subdag")
    gateway = create_gateway(
        functions_dir=FUNCTIONS, upstreams=urls, basic_auth=(USER, PASSWORD),
        labels={name: {"faas-flow": "1"} for name in flows},
        annotations={"gated": {"faas-flow-desc": "Waits for its gate"}},
    )  # fmt: skip
    front = BackgroundServer(gateway)
    url = front.start()
    servers.append(front)
    yield Deployment(url, servers)
    for server in servers:
        server.request_stop()
    for server in reversed(servers):
        server.stop()


async def dashboard(make_client: MakeClient, deployment: Deployment, **options: object) -> (
    httpx.AsyncClient
):
    options.setdefault("basic_auth", (USER, PASSWORD))
    options.setdefault("control_token", CONTROL)
    client: httpx.AsyncClient = await make_client(
        GatewaySource(deployment.gateway, **options)  # type: ignore[arg-type]
    )
    return client


async def test_flows_are_the_labelled_functions(
    make_client: MakeClient, deployment: Deployment
) -> None:
    client = await dashboard(make_client, deployment)
    answer = await client.get("/api/flows")
    assert answer.status_code == 200
    body = answer.json()
    assert body["source"] == "gateway"
    # The handler folders (func1...) carry no faas-flow label.
    assert [(f["name"], f["description"], f["running"]) for f in body["flows"]] == [
        ("dynamic_branching", None, 0), ("gated", "Waits for its gate", 0), ("subdag", None, 0),
    ]
    flow = (await client.get("/api/flows/subdag")).json()
    assert flow["export"]["flow"] == "subdag"
    assert [n["kind"] for n in flow["export"]["dag"]["nodes"]] == [
        "task", "subdag", "subdag", "task", "task"]
    assert (await client.get("/api/flows/func1/requests")).status_code == 404


async def test_execute_follow_and_read_the_result(
    make_client: MakeClient, deployment: Deployment
) -> None:
    client = await dashboard(make_client, deployment)
    started = await client.post("/api/flows/dynamic_branching/requests",
                                content=b"Go go GO, team!", headers=HEADERS)
    assert started.status_code == 201, started.text
    rid = started.json()["request_id"]
    data = await wait(client, "dynamic_branching", rid, status_is("succeeded"))
    assert data["request"]["nodes"]["C[c1]/F"]["branches"] == 3
    assert ("n2", "finished") in {(e["node"], e["event"]) for e in data["history"]}
    result = await client.get(f"/api/flows/dynamic_branching/requests/{rid}/result")
    assert result.content == b"c1: go=2, go,=1, team!=1\nc2: GO GO GO, TEAM!!!"
    listed = (await client.get("/api/flows/dynamic_branching/requests?status=succeeded"))
    assert [r["request_id"] for r in listed.json()["requests"]] == [rid]


async def test_pause_and_resume_through_the_gateway(
    make_client: MakeClient, deployment: Deployment, gate_dir: Path
) -> None:
    client = await dashboard(make_client, deployment)
    rid = (await client.post("/api/flows/gated/requests", content=b"go",
                             headers=HEADERS)).json()["request_id"]
    await wait(client, "gated", rid, node_running("wait"))
    flows = (await client.get("/api/flows")).json()["flows"]
    assert next(f for f in flows if f["name"] == "gated")["running"] == 1
    url = f"/api/flows/gated/requests/{rid}"
    refused = await client.post(f"{url}/resume", headers=HEADERS)
    assert refused.status_code == 409 and "running" in refused.json()["error"]
    assert (await client.post(f"{url}/pause", headers=HEADERS)).json()["status"] == "paused"
    (gate_dir / rid).touch()
    await wait(client, "gated", rid, lambda d: d["request"]["nodes"].get("b", {}).get(
        "state") == "held")
    assert (await client.post(f"{url}/resume", headers=HEADERS)).json()["status"] == "running"
    await wait(client, "gated", rid, status_is("succeeded"))
    assert (await client.get(f"{url}/result")).content == b"go wait b c"


async def test_bad_input_through_the_gateway(
    make_client: MakeClient, deployment: Deployment
) -> None:
    client = await dashboard(make_client, deployment)
    cases = [
        ("GET", "/api/flows/gated/requests/nope1", 404, "no request 'nope1'"),
        ("POST", "/api/flows/gated/requests/nope1/pause", 404, "no request 'nope1'"),
        ("GET", "/api/flows/gated/requests/bad%20id", 400, "invalid request id"),
        ("POST", "/api/flows/gated/requests/abc/explode", 404, "unknown action 'explode'"),
        ("GET", "/api/flows/gated/requests?status=nope", 400, "unknown status nope"),
        ("GET", "/api/flows/gated/requests?before=garbage", 400, "invalid cursor"),
        ("POST", "/api/flows/missing/requests", 404, "no flow 'missing'"),
    ]
    for method, path, status, message in cases:
        answer = await client.request(method, path, headers=HEADERS)
        assert answer.status_code == status, (path, answer.text)
        assert message in answer.json()["error"], path
    assert (await client.get("/api/flows/gated/requests")).json()["requests"] == []


async def test_gateway_credentials_and_control_token_are_needed(
    make_client: MakeClient, deployment: Deployment
) -> None:
    wrong = await dashboard(make_client, deployment, basic_auth=(USER, "nope"))
    answer = await wrong.get("/api/flows")
    assert answer.status_code == 502
    assert "refused the dashboard's credentials" in answer.json()["error"]

    no_token = await dashboard(make_client, deployment, control_token=None)
    flows = (await no_token.get("/api/flows")).json()["flows"]
    gated = next(f for f in flows if f["name"] == "gated")
    assert gated["running"] is None and "--control-token" in gated["error"]
    listing = await no_token.get("/api/flows/gated/requests")
    assert listing.status_code == 502 and "--control-token" in listing.json()["error"]
    # Flows without a token of their own still answer.
    assert (await no_token.get("/api/flows/subdag/requests")).status_code == 200


async def test_an_unreachable_gateway_is_a_bad_gateway(make_client: MakeClient) -> None:
    with BackgroundServer(create_gateway()) as server:
        url = server.url
    client: httpx.AsyncClient = await make_client(GatewaySource(url))  # stopped: refused
    answer = await client.get("/api/flows")
    assert answer.status_code == 502
    assert f"gateway {url} unreachable" in answer.json()["error"]
