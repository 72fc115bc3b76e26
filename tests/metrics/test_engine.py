"""What :class:`EngineMetrics` records from an engine's hooks and reads from its store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

import faasflow
from faasflow import Context, Workflow
from faasflow.metrics import EngineMetrics, function_label, node_label
from servers.redis import redis_server

from .scrape import Scrape, until


def test_node_labels_drop_branch_keys() -> None:
    assert node_label("n2") == "n2"
    assert node_label("S/n1") == "S/n1"
    assert node_label("C[c1]/F[item%2F7]/n1") == "C[*]/F[*]/n1"
    assert node_label("F[%5Bx%5D]") == "F[*]"


def test_request_urls_lose_their_query() -> None:
    assert function_label("figlet") == "figlet"
    assert function_label("http://api:8080/v1/x?token=1#f") == "http://api:8080/v1/x"


def fan(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("in").modify(lambda d: d)
    items = dag.foreach_branch(
        "F", lambda d: {part.decode(): part for part in d.split(b",")},
        aggregator=lambda parts: b"+".join(parts.values()),
    )
    items.node("n").modify(lambda d: d.upper())
    dag.edge("in", "F")


async def test_a_foreach_makes_one_series_whatever_its_keys(tmp_path: Path) -> None:
    async with faasflow.Engine(fan, flow_name="fan", state_store="memory://") as engine:
        metrics = EngineMetrics(engine)
        assert await engine.run(b"a,b,c") == b"A+B+C"
        scrape = Scrape((await metrics.render()).decode())
    assert scrape.labelled("faasflow_node_duration_seconds_count") == {
        frozenset({"flow": "fan", "node": "in", "outcome": "done"}.items()): 1,
        frozenset({"flow": "fan", "node": "F[*]/n", "outcome": "done"}.items()): 3,
        # the foreach node's aggregation; its expansion is no node outcome
        frozenset({"flow": "fan", "node": "F", "outcome": "done"}.items()): 1,
    }


def slow_call(flow: Workflow, context: Context) -> None:
    flow.dag().node("x").apply("stuck", timeout=0.05)


async def test_a_call_that_times_out_is_counted_as_a_timeout() -> None:
    never = asyncio.Event()

    async def stuck(data: bytes) -> bytes:
        await never.wait()
        return data

    async with faasflow.Engine(
        slow_call, flow_name="slow", state_store="memory://", functions={"stuck": stuck}
    ) as engine:
        metrics = EngineMetrics(engine)
        with pytest.raises(faasflow.RequestFailedError):
            await engine.run(b"x")
        scrape = Scrape((await metrics.render()).decode())
    labels = {"flow": "slow", "function": "stuck"}
    assert scrape.value("faasflow_function_call_duration_seconds_count",
                        **labels, outcome="timeout") == 1
    assert scrape.value("faasflow_function_call_errors_total", **labels) == 1
    assert scrape.value("faasflow_node_duration_seconds_count",
                        flow="slow", node="x", outcome="failed") == 1


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, data: bytes) -> bytes:
        self.entered.set()
        await self.release.wait()
        return data


def gated(gate: Gate) -> faasflow.engine.definition.Define:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(gate)
        dag.node("b").modify(lambda d: d)
        dag.edge("a", "b")

    return define


async def hold_one(engine: faasflow.Engine, gate: Gate) -> str:
    """Start a request, pause it while ``a`` runs: ``b``'s hop is held."""
    rid = await engine.submit(b"x")
    await gate.entered.wait()
    await engine.pause(rid)
    gate.release.set()

    async def held() -> bool:
        return any(e["event"] == "held" for e in await engine.history(rid))

    await until(held)
    return rid


def held_hops(scrape: Scrape) -> float | None:
    return scrape.value("faasflow_held_hops", flow="gated")


async def test_held_hops_are_counted_at_most_once_per_cache_period() -> None:
    gate = Gate()
    async with faasflow.Engine(gated(gate), flow_name="gated", state_store="memory://") as engine:
        cached = EngineMetrics(engine, held_cache=3600)
        fresh = EngineMetrics(engine, held_cache=0)
        assert held_hops(Scrape((await cached.render()).decode())) == 0
        rid = await hold_one(engine, gate)
        assert held_hops(Scrape((await fresh.render()).decode())) == 1
        assert held_hops(Scrape((await cached.render()).decode())) == 0  # not asked again
        await engine.resume(rid)
        await engine.wait(rid, timeout=30)
        assert held_hops(Scrape((await fresh.render()).decode())) == 0


async def test_a_store_error_keeps_the_last_count_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp_path))
        async with faasflow.Engine(gated(gate), flow_name="gated", state_store=url) as engine:
            metrics = EngineMetrics(engine, held_cache=0)
            await hold_one(engine, gate)
            assert held_hops(Scrape((await metrics.render()).decode())) == 1
            stack.close()  # the store goes away
            with caplog.at_level(logging.WARNING, logger="faasflow.metrics"):
                scrape = Scrape((await metrics.render()).decode())
            assert held_hops(scrape) == 1
            assert "counting held hops failed" in caplog.text
