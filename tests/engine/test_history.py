"""Request history: every node event on record, the node table, and listing requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from failing import Flaky

import faasflow
from faasflow import Context, RequestError, RequestFailedError, Retry, Workflow
from faasflow.engine import _keys as keys

MakeEngine = Callable[..., faasflow.Engine]


def chain(define_gate: asyncio.Event | None = None) -> Callable[[Workflow, Context], None]:
    async def wait(data: bytes) -> bytes:
        if define_gate is not None:
            await define_gate.wait()
        return data

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("prep").modify(lambda d: d + b"-prep")
        dag.node("call").apply("f", retry=Retry(attempts=3, backoff=0.0, jitter=0))
        dag.node("wait").modify(wait)
        dag.node("done").modify(lambda d: d + b"!")
        dag.edge("prep", "call")
        dag.edge("call", "wait")
        dag.edge("wait", "done")

    return define


RAISES = next(
    number for number, line in enumerate(
        (Path(__file__).parent / "failing.py").read_text().splitlines(), start=1)
    if "raise ConnectionError" in line
)
"""The line of failing.py where Flaky raises."""


def events(history: list[dict[str, object]], node: str) -> list[object]:
    return [e["event"] for e in history if e["kind"] == "node" and e["node"] == node]


async def test_each_node_start_retry_and_end_is_on_record(make_engine: MakeEngine) -> None:
    flaky = Flaky(2)
    engine = make_engine(chain(), functions={"f": flaky})
    assert await engine.run(b"ab") == b"AB-PREP!"
    (rid,) = await engine.requests()
    history = await engine.history(rid)
    assert [e["event"] for e in history if e["kind"] == "request"] == ["started", "succeeded"]
    assert events(history, "prep") == ["started", "finished"]
    assert events(history, "call") == ["started", "retried", "retried", "finished"]
    retried = [e for e in history if e["event"] == "retried"]
    # Each error says where the user's code raised it.
    assert [(e["attempt"], e["error"]) for e in retried] == [
        (1, f"function 'f' raised ConnectionError: boom 1 (at failing.py:{RAISES} in __call__)"),
        (2, f"function 'f' raised ConnectionError: boom 2 (at failing.py:{RAISES} in __call__)"),
    ]
    times = [e["t"] for e in history]
    assert times == sorted(times)

    nodes = (await engine.info(rid, nodes=True)).nodes
    assert list(nodes) == ["prep", "call", "wait", "done"]
    call = nodes["call"]
    assert (call["state"], call["attempt"], call["retries"], call["calls"]) == ("done", 1, 2, 3)
    assert (call["size_in"], call["size_out"]) == (len(b"ab-prep"), len(b"AB-PREP"))
    assert call["started"] <= call["finished"]
    assert all(node["state"] == "done" for node in nodes.values())


async def test_a_failed_node_shows_its_error_and_a_running_one_its_start(
    make_engine: MakeEngine,
) -> None:
    gate = asyncio.Event()
    engine = make_engine(chain(gate), functions={"f": Flaky(0)})
    rid = await engine.submit(b"x")
    info = await _until(engine, rid, lambda n: n.get("wait", {}).get("state") == "running")
    assert "finished" not in info.nodes["wait"] and info.nodes["wait"]["attempt"] == 1
    assert "done" not in info.nodes  # not reached yet
    gate.set()
    await engine.wait(rid, 10)

    failing = make_engine(chain(), functions={"f": Flaky(10)}, flow_name="failing")
    with pytest.raises(RequestFailedError):
        await failing.run(b"x")
    (failed,) = await failing.requests()
    call = (await failing.info(failed, nodes=True)).nodes["call"]
    assert (call["state"], call["attempt"], call["retries"], call["calls"]) == ("failed", 1, 2, 3)
    where = f"(at failing.py:{RAISES} in __call__)"
    assert call["error"] == f"function 'f' raised ConnectionError: boom 3 {where}"


async def test_held_hops_are_on_record(make_engine: MakeEngine) -> None:
    gate = asyncio.Event()
    engine = make_engine(chain(gate), functions={"f": Flaky(0)})
    rid = await engine.submit(b"x")
    await _until(engine, rid, lambda n: n.get("wait", {}).get("state") == "running")
    await engine.pause(rid)
    gate.set()
    info = await _until(engine, rid, lambda n: n.get("done", {}).get("state") == "held")
    assert info.status == "paused"
    await engine.resume(rid)
    assert await engine.wait(rid, 10) == b"X-PREP!"
    history = await engine.history(rid)
    assert events(history, "done") == ["held", "started", "finished"]
    assert (await engine.info(rid, nodes=True)).nodes["done"]["state"] == "done"


async def test_listing_is_newest_first_with_filters_and_pages(make_engine: MakeEngine) -> None:
    def picky(data: bytes) -> bytes:
        if data.startswith(b"bad"):
            raise ValueError("bad input")
        return data

    engine = make_engine(chain(), functions={"f": picky})
    ids = [await engine.submit(b"x", request_id=f"r{i}") for i in range(5)]
    for rid in ids:
        await engine.wait(rid, 10)
    bad = await engine.submit(b"bad", request_id="bad")  # newest, though its id sorts first
    with pytest.raises(RequestFailedError):
        await engine.wait(bad, 10)
    newest_first = [bad, *reversed(ids)]

    seen: list[str] = []
    page = await engine.list_requests(limit=2)
    while True:
        seen += [info.request_id for info in page.requests]
        assert len(page.requests) <= 2
        if page.next is None:
            break
        page = await engine.list_requests(limit=2, before=page.next)
    assert seen == newest_first

    failed = await engine.list_requests(status="failed")
    assert [(i.request_id, i.status, i.failure and i.failure.node) for i in failed.requests] == [
        ("bad", "failed", "call")
    ]
    both = await engine.list_requests(status=["failed", "succeeded"], limit=10)
    assert [info.request_id for info in both.requests] == newest_first and both.next is None
    assert (await engine.list_requests(status="paused")).requests == []

    with pytest.raises(RequestError, match="unknown status nope"):
        await engine.list_requests(status="nope")
    with pytest.raises(RequestError, match="limit must be 1-1000"):
        await engine.list_requests(limit=0)
    with pytest.raises(RequestError, match="invalid cursor"):
        await engine.list_requests(before="yesterday/r1")


async def test_finished_requests_leave_the_listing_when_their_retention_ends(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(chain(), functions={"f": Flaky(0)}, result_ttl=0.5)
    rid = await engine.submit(b"x")
    await engine.wait(rid, 10)
    assert [i.request_id for i in (await engine.list_requests()).requests] == [rid]
    assert await engine.history(rid)
    await asyncio.sleep(1.2)
    assert (await engine.list_requests()).requests == []
    assert await engine.state.read_list(keys.history(rid)) == []


async def _until(
    engine: faasflow.Engine, rid: str, check: Callable[[dict[str, dict[str, object]]], bool]
) -> faasflow.RequestInfo:
    for _ in range(500):
        info = await engine.info(rid, nodes=True)
        if check(info.nodes):
            return info
        await asyncio.sleep(0.01)
    raise AssertionError(f"node table never matched: {info.nodes}")


async def test_a_dynamic_node_spans_from_its_choice_to_its_aggregation(
    make_engine: MakeEngine,
) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        each = dag.foreach_branch("F", lambda data: {k: k.encode() for k in ("a", "b")},
                                  aggregator=lambda results: b",".join(sorted(results.values())))
        each.node("n").modify(lambda data: data.upper())

    engine = make_engine(define)
    assert await engine.run(b"x") == b"A,B"
    (rid,) = await engine.requests()
    history = await engine.history(rid)
    assert events(history, "F") == ["started", "expanded", "started", "finished"]
    expand_start = next(e["started"] for e in history if e["event"] == "expanded")
    nodes = (await engine.info(rid, nodes=True)).nodes
    assert nodes["F"]["state"] == "done" and nodes["F"]["branches"] == 2
    assert nodes["F"]["started"] == expand_start  # not the aggregation's own start
    assert nodes["F"]["finished"] >= max(nodes[f"F[{k}]/n"]["finished"] for k in "ab")


async def test_a_long_history_reads_a_page_at_a_time(make_engine: MakeEngine) -> None:
    def long_chain(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        for i in range(12):
            dag.node(f"n{i}").modify(lambda data: data)
            if i:
                dag.edge(f"n{i - 1}", f"n{i}")

    engine = make_engine(long_chain, flow_name="pages")
    await engine.run(b"x", request_id="long-1")
    whole = await engine.history("long-1")
    pages = [await engine.history("long-1", start=start, limit=5) for start in (0, 5, 10)]
    assert sorted((e["t"], e["node"], e["event"]) for page in pages for e in page) == sorted(
        (e["t"], e["node"], e["event"]) for e in whole)
    assert [e["event"] for e in pages[2]][-1] == "succeeded"
    last = await engine.history("long-1", start=-1)
    assert [(e["kind"], e["event"]) for e in last] == [("request", "succeeded")]
    with pytest.raises(faasflow.RequestError, match="limit must be positive"):
        await engine.history("long-1", limit=0)
