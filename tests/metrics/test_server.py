"""``/metrics`` of the flow server, over real HTTP on loopback, after real requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

import faasflow
from faasflow import Context, Retry, Workflow
from faasflow.config import ServerConfig
from faasflow.server.app import create_app
from faasflow.transports.inprocess import InProcessTransport
from server.conftest import serving

from .scrape import parse, until


class Work:
    """The function ``work``: fails on ``fail``, waits for its gate on ``hold``."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, data: bytes) -> bytes:
        if data == b"fail":
            raise RuntimeError("boom")
        if data == b"hold":
            self.entered.set()
            await self.release.wait()
        return data


def chain(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("a").modify(lambda d: d)
    dag.node("b").apply("work", retry=Retry(attempts=2, backoff=0.01, jitter=0))
    dag.node("c").modify(lambda d: d + b"!")
    dag.edge("a", "b")
    dag.edge("b", "c")


def app_for(work: Work, tmp_path: Path) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    engine = faasflow.Engine(
        chain, flow_name="orders", functions={"work": work},
        state_store=f"sqlite:///{tmp_path / 'state.db'}", transport=InProcessTransport(),
    )
    return create_app(chain, config=ServerConfig(flow_name="orders"), engine=engine)


async def test_metrics_count_requests_nodes_calls_and_held_hops(tmp_path: Path) -> None:
    work = Work()
    wait = {"X-Faas-Flow-Wait": "30"}
    async with serving(app_for(work, tmp_path)) as url, httpx.AsyncClient(timeout=30) as http:
        ok = await http.post(url + "/", content=b"ok", headers=wait)
        assert (ok.status_code, ok.content) == (200, b"ok!")
        failed = await http.post(url + "/", content=b"fail", headers=wait)
        assert failed.status_code == 500

        held = await http.post(url + "/", content=b"hold")
        rid = held.headers["X-Faas-Flow-Reqid"]
        await work.entered.wait()
        assert (await http.post(f"{url}/flow/{rid}/pause")).status_code == 200
        work.release.set()

        async def c_is_held() -> bool:
            events = (await http.get(f"{url}/flow/{rid}/history")).json()
            return any(e["node"] == "c" and e["event"] == "held" for e in events)

        await until(c_is_held)
        scrape = parse(await http.get(url + "/metrics"))

    flow = {"flow": "orders"}
    assert scrape.labelled("faasflow_requests_total") == {
        frozenset({**flow, "status": "started"}.items()): 3,
        frozenset({**flow, "status": "succeeded"}.items()): 1,
        frozenset({**flow, "status": "failed"}.items()): 1,
    }
    node_counts = scrape.labelled("faasflow_node_duration_seconds_count")
    assert node_counts == {
        frozenset({**flow, "node": "a", "outcome": "done"}.items()): 3,
        frozenset({**flow, "node": "b", "outcome": "done"}.items()): 2,
        frozenset({**flow, "node": "b", "outcome": "failed"}.items()): 1,
        frozenset({**flow, "node": "c", "outcome": "done"}.items()): 1,
    }
    calls = scrape.labelled("faasflow_function_call_duration_seconds_count")
    assert calls == {
        frozenset({**flow, "function": "work", "outcome": "ok"}.items()): 2,
        frozenset({**flow, "function": "work", "outcome": "error"}.items()): 2,
    }
    assert scrape.labelled("faasflow_function_call_errors_total") == {
        frozenset({**flow, "function": "work"}.items()): 2,
    }
    assert scrape.value("faasflow_hops_in_flight", **flow) == 0
    # The paused request holds c's hop; the failed one holds b's, kept for redrive.
    assert scrape.value("faasflow_held_hops", **flow) == 2


async def test_hops_in_flight_counts_running_steps_and_head_is_empty(tmp_path: Path) -> None:
    work = Work()
    async with serving(app_for(work, tmp_path)) as url, httpx.AsyncClient(timeout=30) as http:
        await http.post(url + "/", content=b"hold")
        await work.entered.wait()
        running = parse(await http.get(url + "/metrics"))
        assert running.value("faasflow_hops_in_flight", flow="orders") == 1
        head = await http.head(url + "/metrics")
        assert (head.status_code, head.content) == (200, b"")
        # Metrics are read, never written: other methods are refused.
        assert (await http.post(url + "/metrics")).status_code == 405
        work.release.set()


async def test_two_servers_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    first, second = Work(), Work()
    async with (
        serving(app_for(first, tmp_path / "1")) as one,
        serving(app_for(second, tmp_path / "2")) as two,
        httpx.AsyncClient(timeout=30) as http,
    ):
        for _ in range(2):
            await http.post(one + "/", content=b"x", headers={"X-Faas-Flow-Wait": "30"})
        one_scrape = parse(await http.get(one + "/metrics"))
        two_scrape = parse(await http.get(two + "/metrics"))
    assert one_scrape.value("faasflow_requests_total", flow="orders", status="succeeded") == 2
    assert two_scrape.value("faasflow_requests_total", flow="orders", status="succeeded") is None
