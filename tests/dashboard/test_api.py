"""The JSON API over local flows: every route, bad input, and what each answer holds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from faasflow.dashboard.app import create_app
from faasflow.dashboard.sources import LocalFlow, LocalSource
from faasflow.errors import ConfigurationError
from faasflow.runtime.engine import Engine

from .conftest import HEADERS, LOCAL_FLOWS, MakeClient, local_source, node_running, status_is
from .conftest import wait_for as wait


def count_nodes(dag: dict[str, object]) -> int:
    total = 0
    for node in dag["nodes"]:  # type: ignore[attr-defined]
        total += 1
        inner = [node["subdag"], node["foreach"], *(node["branches"] or {}).values()]
        total += sum(count_nodes(child) for child in inner if child)
    return total


async def execute(client: httpx.AsyncClient, flow: str, body: bytes, query: str = "") -> str:
    answer = await client.post(f"/api/flows/{flow}/requests{query}", content=body,
                               headers=HEADERS)
    assert answer.status_code == 201, answer.text
    rid: str = answer.json()["request_id"]
    return rid


async def test_page_and_static_files_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert '<script type="module" src="/static/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("graph.js", "javascript"),
                       ("style.css", "css")):
        answer = await client.get(f"/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
    assert (await client.get("/static/missing.js")).status_code == 404
    assert (await client.get("/healthz")).text == "ok\n"


async def test_flows_lists_each_flow_with_live_counts(
    client: httpx.AsyncClient, gate_dir: Path
) -> None:
    answer = await client.get("/api/flows")
    assert answer.status_code == 200
    body = answer.json()
    assert body["source"] == "local"
    assert [flow["name"] for flow in body["flows"]] == list(LOCAL_FLOWS)
    assert body["flows"][0] == {"name": "greet", "description": "the greet flow",
                                "running": 0, "paused": 0, "more": False, "error": None}
    # A request in flight is counted: the tower's "Active Requests" was always 0.
    rid = await execute(client, "gated", b"x")
    await wait(client, "gated", rid, node_running("wait"))
    gated = next(f for f in (await client.get("/api/flows")).json()["flows"]
                 if f["name"] == "gated")
    assert (gated["running"], gated["paused"]) == (1, 0)
    (gate_dir / rid).touch()
    await wait(client, "gated", rid, status_is("succeeded"))
    gated = next(f for f in (await client.get("/api/flows")).json()["flows"]
                 if f["name"] == "gated")
    assert gated["running"] == 0


async def test_flow_answers_its_export(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/flows/dynamic_branching")
    assert answer.status_code == 200
    body = answer.json()
    assert body["name"] == "dynamic_branching"
    assert body["description"] == "the dynamic_branching flow"
    export = body["export"]
    assert export["format_version"] == 1 and export["flow"] == "dynamic_branching"
    assert [node["kind"] for node in export["dag"]["nodes"]] == ["task", "conditional", "task"]
    assert count_nodes(export["dag"]) == 6


async def test_execute_runs_the_request_to_its_result(client: httpx.AsyncClient) -> None:
    rid = await execute(client, "dynamic_branching", b"Go go GO, team!")
    data = await wait(client, "dynamic_branching", rid, status_is("succeeded"))
    request = data["request"]
    assert request["request_id"] == rid and request["flow"] == "dynamic_branching"
    nodes = request["nodes"]
    assert set(nodes) == {"n1", "C", "C[c1]/F", "C[c2]/n1", "C[c1]/F[go]/n1",
                          "C[c1]/F[go%2C]/n1", "C[c1]/F[team%21]/n1", "n2"}
    assert all(node["state"] == "done" for node in nodes.values())
    assert nodes["n1"]["size_in"] == 15 and nodes["C[c1]/F"]["branches"] == 3
    assert all(node["started"] <= node["finished"] for node in nodes.values())
    events = {(e["node"], e["event"]) for e in data["history"]}
    assert ("n2", "finished") in events and ("", "succeeded") in events
    assert data["now"] >= request["updated"]
    result = await client.get(f"/api/flows/dynamic_branching/requests/{rid}/result")
    assert result.status_code == 200
    assert result.content == b"c1: go=2, go,=1, team!=1\nc2: GO GO GO, TEAM!!!"


async def test_execute_passes_the_query_string(client: httpx.AsyncClient) -> None:
    rid = await execute(client, "greet", b"Adam", "?lang=en&x=1")
    await wait(client, "greet", rid, status_is("succeeded"))
    listed = (await client.get("/api/flows/greet/requests")).json()["requests"]
    assert [item["request_id"] for item in listed] == [rid]
    result = await client.get(f"/api/flows/greet/requests/{rid}/result")
    assert result.content == b"Hello Adam"


async def test_requests_filter_by_status_and_page_newest_first(
    client: httpx.AsyncClient, gate_dir: Path
) -> None:
    done = [await execute(client, "gated", str(i).encode()) for i in range(3)]
    for rid in done:
        (gate_dir / rid).touch()
        await wait(client, "gated", rid, status_is("succeeded"))
    running = await execute(client, "gated", b"later")
    await wait(client, "gated", running, node_running("wait"))

    first = (await client.get("/api/flows/gated/requests?limit=2")).json()
    assert [r["request_id"] for r in first["requests"]] == [running, done[2]]
    second = (await client.get(f"/api/flows/gated/requests?limit=2&before={first['next']}"))
    assert [r["request_id"] for r in second.json()["requests"]] == [done[1], done[0]]
    assert second.json()["next"] is None

    live = (await client.get("/api/flows/gated/requests?status=running,paused")).json()
    assert [(r["request_id"], r["status"]) for r in live["requests"]] == [(running, "running")]
    finished = (await client.get("/api/flows/gated/requests?status=succeeded")).json()
    assert {r["request_id"] for r in finished["requests"]} == set(done)
    # Flows share the store: another flow's list holds none of these.
    assert (await client.get("/api/flows/greet/requests")).json()["requests"] == []
    (gate_dir / running).touch()
    await wait(client, "gated", running, status_is("succeeded"))


async def test_pause_resume_and_stop_follow_the_request_state(
    client: httpx.AsyncClient, gate_dir: Path
) -> None:
    rid = await execute(client, "gated", b"go")
    await wait(client, "gated", rid, node_running("wait"))
    url = f"/api/flows/gated/requests/{rid}"

    resumed = await client.post(f"{url}/resume", headers=HEADERS)
    assert resumed.status_code == 409
    assert "running" in resumed.json()["error"]

    paused = await client.post(f"{url}/pause", headers=HEADERS)
    assert paused.status_code == 200
    assert paused.json() == {"request_id": rid, "status": "paused"}
    (gate_dir / rid).touch()
    # The running node finishes; its successor is held, not run.
    data = await wait(client, "gated", rid, lambda d: d["request"]["nodes"].get(
        "b", {}).get("state") == "held")
    assert data["request"]["status"] == "paused"
    assert data["request"]["nodes"]["wait"]["state"] == "done"

    answer = await client.post(f"{url}/resume", headers=HEADERS)
    assert answer.json()["status"] == "running"
    data = await wait(client, "gated", rid, status_is("succeeded"))
    assert [data["request"]["nodes"][n]["state"] for n in ("wait", "b", "c")] == ["done"] * 3
    assert (await client.get(f"{url}/result")).content == b"go wait b c"

    for verb in ("pause", "resume", "stop", "redrive"):
        refused = await client.post(f"{url}/{verb}", headers=HEADERS)
        assert refused.status_code == 409, verb
        assert "succeeded" in refused.json()["error"]

    other = await execute(client, "gated", b"stop me")
    stopped = await client.post(f"/api/flows/gated/requests/{other}/stop", headers=HEADERS)
    assert stopped.json() == {"request_id": other, "status": "stopped"}
    result = await client.get(f"/api/flows/gated/requests/{other}/result")
    assert result.status_code == 409


async def test_redrive_runs_a_failed_request_again(
    client: httpx.AsyncClient, gate_dir: Path
) -> None:
    rid = await execute(client, "flaky", b" data ")
    data = await wait(client, "flaky", rid, status_is("failed"))
    failure = data["request"]["failure"]
    assert failure["node"] == "check" and "not ready yet" in failure["cause"]
    assert data["request"]["nodes"]["check"]["state"] == "failed"
    assert "not ready yet" in data["request"]["nodes"]["check"]["error"]
    listed = (await client.get("/api/flows/flaky/requests?status=failed")).json()
    assert listed["requests"][0]["failure"]["node"] == "check"

    (gate_dir / f"{rid}.ok").touch()
    answer = await client.post(f"/api/flows/flaky/requests/{rid}/redrive", headers=HEADERS)
    assert answer.status_code == 200
    await wait(client, "flaky", rid, status_is("succeeded"))
    assert (await client.get(f"/api/flows/flaky/requests/{rid}/result")).content == b"data ok"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/flows/nope", 404, "no flow 'nope'"),
        ("GET", "/api/flows/nope/requests", 404, "no flow 'nope'"),
        ("POST", "/api/flows/nope/requests", 404, "no flow 'nope'"),
        ("GET", "/api/flows/greet/requests/unknown1", 404, "no request 'unknown1'"),
        ("GET", "/api/flows/greet/requests/unknown1/result", 404, "no request"),
        ("POST", "/api/flows/greet/requests/unknown1/pause", 404, "no request"),
        ("GET", "/api/flows/greet/requests/bad%20id", 400, "invalid request id"),
        ("POST", "/api/flows/greet/requests/bad%20id/stop", 400, "invalid request id"),
        ("POST", "/api/flows/greet/requests/abc/explode", 404, "unknown action 'explode'"),
        ("GET", "/api/flows/greet/requests?limit=0", 400, "limit must be 1-1000"),
        ("GET", "/api/flows/greet/requests?limit=x", 400, "limit must be 1-1000"),
        ("GET", "/api/flows/greet/requests?status=done", 400, "unknown status done"),
        ("GET", "/api/flows/greet/requests?before=garbage", 400, "invalid cursor"),
        ("GET", "/api/nothing/here", 404, "no route GET /api/nothing/here"),
        ("DELETE", "/api/flows/greet", 404, "no route DELETE /api/flows/greet"),
    ],
)
async def test_bad_input_is_refused_with_a_message(
    client: httpx.AsyncClient, method: str, path: str, status: int, message: str | None
) -> None:
    answer = await client.request(method, path, headers=HEADERS)
    assert answer.status_code == status, answer.text
    if message is not None:
        assert message in answer.json()["error"]
    # Nothing was started by any of it.
    for flow in ("greet", "gated"):
        assert (await client.get(f"/api/flows/{flow}/requests")).json()["requests"] == []


@pytest.mark.parametrize(
    ("method", "path", "status", "start"),
    [
        ("GET", "/api/flows/greet/requests/LONG", 400, "invalid request id"),
        ("POST", "/api/flows/greet/requests/LONG/stop", 400, "invalid request id"),
        ("GET", "/api/flows/LONG", 404, "no flow"),
        ("POST", "/api/flows/greet/requests/abc/LONG", 404, "unknown action"),
        ("GET", "/api/flows/greet/requests?limit=LONG", 400, "limit must be 1-1000"),
        ("GET", "/api/flows/greet/requests?status=LONG", 400, "unknown status"),
        ("GET", "/api/flows/greet/requests?before=LONG", 400, "invalid cursor"),
    ],
)
async def test_a_long_value_is_shown_cut_short_in_the_error(
    client: httpx.AsyncClient, method: str, path: str, status: int, start: str
) -> None:
    answer = await client.request(method, path.replace("LONG", "i" * 10_000), headers=HEADERS)
    assert answer.status_code == status, answer.text[:200]
    error = answer.json()["error"]
    assert error.startswith(start) and len(error) < 200, error[:200]
    assert "i" * 64 + "…" in error


async def test_request_of_another_flow_is_not_found(client: httpx.AsyncClient) -> None:
    rid = await execute(client, "greet", b"Eve")
    await wait(client, "greet", rid, status_is("succeeded"))
    for path in (f"/api/flows/subdag/requests/{rid}", f"/api/flows/subdag/requests/{rid}/result"):
        answer = await client.get(path)
        assert answer.status_code == 404
        assert "in flow 'subdag'" in answer.json()["error"]
    stop = await client.post(f"/api/flows/subdag/requests/{rid}/stop", headers=HEADERS)
    assert stop.status_code == 404


async def test_a_body_over_the_limit_is_refused(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(local_source(f"sqlite:///{tmp_path / 's.db'}"), max_body_size=10)
    answer = await client.post("/api/flows/greet/requests", content=b"x" * 11, headers=HEADERS)
    assert answer.status_code == 413
    assert answer.json() == {"error": "body larger than 10 bytes"}

    async def chunks():  # no Content-Length: counted while read
        for _ in range(3):
            yield b"xxxxx"

    streamed = await client.post("/api/flows/greet/requests", content=chunks(), headers=HEADERS)
    assert streamed.status_code == 413
    assert (await client.get("/api/flows/greet/requests")).json()["requests"] == []
    fits = await client.post("/api/flows/greet/requests", content=b"x" * 10, headers=HEADERS)
    assert fits.status_code == 201


async def test_result_of_a_running_request_is_a_conflict(
    client: httpx.AsyncClient, gate_dir: Path
) -> None:
    rid = await execute(client, "gated", b"x")
    answer = await client.get(f"/api/flows/gated/requests/{rid}/result")
    assert answer.status_code == 409
    assert "running" in answer.json()["error"]
    (gate_dir / rid).touch()
    await wait(client, "gated", rid, status_is("succeeded"))


def test_flow_names_must_be_unique(tmp_path: Path) -> None:
    engine = Engine(lambda flow, context: None, state_store="memory://")
    with pytest.raises(ConfigurationError, match="two flows are named greet"):
        LocalSource([LocalFlow("greet", engine), LocalFlow("greet", engine)])


async def test_info_names_the_source_and_sign_in_methods(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/info")).json() == {"source": "local", "auth": []}


def test_app_builds_without_starting_the_source(tmp_path: Path) -> None:
    # Building the app opens nothing: the stores open with the app's lifespan.
    source = local_source(f"sqlite:///{tmp_path / 'never.db'}")
    create_app(source)
    assert not (tmp_path / "never.db").exists()
