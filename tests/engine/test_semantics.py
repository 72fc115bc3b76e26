"""What flows compute: ordering, pass-through, forwarders, branches, sub-DAGs, context."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

import faasflow
from faasflow import Context, Dag, OperationError, RequestFailedError, Workflow

MakeEngine = Callable[..., faasflow.Engine]


def joined(results: dict[str, bytes]) -> bytes:
    return b"|".join(k.encode() + b"=" + v for k, v in results.items())


async def test_aggregation_follows_edge_order_not_finish_order(make_engine: MakeEngine) -> None:
    # n3 finishes first (n2 waits for it), yet the aggregator sees n2 before n3, because
    # n2's edge to n4 was declared first.
    n3_done = asyncio.Event()

    async def slow(data: bytes) -> bytes:
        await n3_done.wait()
        return data + b"-slow"

    async def fast(data: bytes) -> bytes:
        n3_done.set()
        return data + b"-fast"

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("n1")
        dag.node("n2").modify(slow)
        dag.node("n3").modify(fast)
        dag.node("n4", aggregator=joined)
        dag.edge("n1", "n2")
        dag.edge("n1", "n3")
        dag.edge("n2", "n4")
        dag.edge("n3", "n4")

    assert await make_engine(define).run(b"x") == b"n2=x-slow|n3=x-fast"


async def test_conditional_branches_in_declared_order(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        branches = flow.dag().conditional_branch(
            "C", ["a", "b", "c"], lambda d: ["c", "a", "c"], aggregator=joined
        )
        for key, dag in branches.items():
            dag.node("n").modify(lambda d, key=key: d + key.encode())

    assert await make_engine(define).run(b"in-") == b"a=in-a|c=in-c"


async def test_foreach_keeps_the_order_foreach_returned(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        items = flow.dag().foreach_branch(
            "F",
            lambda d: {w: w.encode() for w in d.decode().split()},
            aggregator=lambda r: json.dumps(list(r.items()), default=bytes.decode).encode(),
        )
        items.node("upper").modify(lambda d: d.upper())

    out = await make_engine(define).run(b"zeta alpha mid a/b [x] 100%")
    expected = [[w, w.upper()] for w in ["zeta", "alpha", "mid", "a/b", "[x]", "100%"]]
    assert json.loads(out) == expected


@pytest.mark.parametrize("kind", ["condition", "foreach"])
async def test_nothing_chosen_skips_the_branch(make_engine: MakeEngine, kind: str) -> None:
    ran: list[bytes] = []

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        if kind == "condition":
            branch = dag.conditional_branch(
                "D", ["x"], lambda d: [], aggregator=lambda r: b"agg%d" % len(r)
            )["x"]
        else:
            branch = dag.foreach_branch("D", lambda d: {}, aggregator=lambda r: b"agg%d" % len(r))
        branch.node("n").modify(lambda d: ran.append(d) or d)
        dag.node("after").modify(lambda d: d + b"!")
        dag.edge("D", "after")

    assert await make_engine(define).run(b"x") == b"agg0!"
    assert ran == []


async def test_unknown_condition_key_fails_naming_the_node(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.dag().conditional_branch("C", ["x"], lambda d: ["y"], aggregator=joined)["x"].node("n")

    with pytest.raises(RequestFailedError, match=r"unknown key\(s\) \['y'\]") as info:
        await make_engine(define).run(b"x")
    assert info.value.node == "C"


async def test_pass_through_execution_only_and_forwarders(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("start")  # no operation: passes its input through
        dag.node("shout").modify(lambda d: d.upper())
        dag.node("side").modify(lambda d: b"side saw " + d)
        dag.node("end", aggregator=joined)
        dag.edge("start", "shout", forwarder=lambda d: d + b" (fwd)")
        dag.edge("start", "side")
        dag.edge("shout", "end")
        dag.edge("side", "end", execution_only=True)
        dag.edge("start", "end")

    # 'end' gets start's and shout's data; side only orders.
    assert await make_engine(define).run(b"hi") == b"shout=HI (FWD)|start=hi"


async def test_only_execution_only_parents_give_empty_input(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d + b"a")
        dag.node("b").modify(lambda d: b"b got [" + d + b"]")
        dag.edge("a", "b", execution_only=True)

    assert await make_engine(define).run(b"x") == b"b got []"


async def test_output_node_of_a_dag_with_several_ends(make_engine: MakeEngine) -> None:
    side_effects: list[bytes] = []

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a")
        dag.node("b").modify(lambda d: side_effects.append(d) or b"ignored")
        dag.node("c").modify(lambda d: d + b"-c")
        dag.edge("a", "b")
        dag.edge("a", "c")
        dag.output("c")

    assert await make_engine(define).run(b"x") == b"x-c"
    assert side_effects == [b"x"]


async def test_subdags_first_last_and_nested(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        inner = Dag()
        inner.node("i").modify(lambda d: d + b"<i>")
        first = Dag()
        first.node("f1").modify(lambda d: d + b"<f1>")
        first.subdag("nest", inner)
        first.node("f2").modify(lambda d: d + b"<f2>")
        first.edge("f1", "nest")
        first.edge("nest", "f2")
        last = Dag()
        last.node("l1").modify(lambda d: d + b"<l1>")
        dag = flow.dag()
        dag.subdag("first", first)
        dag.subdag("last", last)
        dag.edge("first", "last", forwarder=lambda d: d + b"<fwd>")

    assert await make_engine(define).run(b"") == b"<f1><i><f2><fwd><l1>"


async def test_dynamic_nesting_three_deep(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        outer = dag.foreach_branch(
            "rows", lambda d: {r: r.encode() for r in d.decode().split(";")}, aggregator=joined
        )
        cond = outer.conditional_branch(
            "kind",
            ["num", "word"],
            lambda d: ["num"] if d.replace(b",", b"").isdigit() else ["word"],
            aggregator=lambda r: next(iter(r.values())),
        )
        cells = cond["num"].foreach_branch(
            "cells",
            lambda d: {str(i): c for i, c in enumerate(d.split(b","))},
            aggregator=lambda r: str(sum(int(v) for v in r.values())).encode(),
        )
        cells.node("double").modify(lambda d: str(int(d) * 2).encode())
        sub = Dag()
        sub.node("title").modify(lambda d: d.title())
        cond["word"].subdag("fmt", sub)

    out = await make_engine(define).run(b"1,2,3;hello world;10")
    assert out == b"1,2,3=12|hello world=Hello World|10=20"


async def test_str_results_are_encoded_and_other_types_fail(make_engine: MakeEngine) -> None:
    def ok(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: d.decode() + "é")

    assert await make_engine(ok).run(b"caf") == "café".encode()

    def bad(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a")
        dag.node("count").modify(lambda d: len(d))
        dag.edge("a", "count")

    with pytest.raises(RequestFailedError, match=r"modify must return bytes.*got int") as info:
        await make_engine(bad, flow_name="bad").run(b"abc")
    assert info.value.node == "count"
    assert isinstance(info.value.__cause__, OperationError)


async def test_context_data_query_and_node(make_engine: MakeEngine) -> None:
    seen: dict[str, object] = {}

    def define(flow: Workflow, context: Context) -> None:
        def remember(data: bytes) -> bytes:
            context.set("sha", {"commit": data.decode()})
            context.set("raw", b"\x00\x01")
            seen["first"] = context.node
            return data

        async def use(data: bytes) -> bytes:
            seen["second"] = context.node
            sha = await context.aget("sha")
            raw = await context.aget("raw")
            await context.adelete("raw")
            missing = await context.aget("raw", "gone")
            return json.dumps(
                [sha, raw.hex(), missing, context.query_value("token"), context.request_id]
            ).encode()

        dag = flow.dag()
        dag.node("first").modify(remember)
        dag.node("second").modify(use)
        dag.edge("first", "second")

    engine = make_engine(define)
    out = await engine.run(b"abc123", query="token=s3cr%20t&x=1", request_id="ctx-1")
    assert json.loads(out) == [{"commit": "abc123"}, "0001", "gone", "s3cr t", "ctx-1"]
    assert seen == {"first": "first", "second": "second"}


async def test_context_blocking_calls_refuse_to_run_on_the_loop(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        async def wrong(data: bytes) -> bytes:
            context.set("k", 1)
            return data

        flow.sync_node().modify(wrong)

    with pytest.raises(RequestFailedError, match=r"use await context\.aset"):
        await make_engine(define).run(b"x")


async def test_context_values_must_be_json_or_bytes(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: context.set("k", object()) or d)

    with pytest.raises(RequestFailedError, match="bytes or JSON-able"):
        await make_engine(define).run(b"x")


async def test_sync_callables_do_not_stall_the_loop(make_engine: MakeEngine) -> None:
    # A blocking modifier runs on a thread: an async node of another request proceeds.
    import threading

    release = threading.Event()

    def blocking(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: release.wait(10) and d)

    def quick(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: d + b"!")

    slow_engine = make_engine(blocking, flow_name="slow")
    fast_engine = make_engine(quick, flow_name="fast")
    slow = asyncio.create_task(slow_engine.run(b"slow"))
    assert await fast_engine.run(b"fast") == b"fast!"
    assert not slow.done()
    release.set()
    assert await slow == b"slow"


async def test_large_payload_through_a_chain(make_engine: MakeEngine) -> None:
    payload = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d[::-1])
        dag.node("b")
        dag.node("c").modify(lambda d: d[::-1])
        dag.edge("a", "b")
        dag.edge("b", "c")

    out = await make_engine(define).run(payload)
    assert len(out) == 8 * 1024 * 1024
    assert out == payload


async def test_foreach_of_ten_thousand_branches(store_url: str) -> None:
    def define(flow: Workflow, context: Context) -> None:
        items = flow.dag().foreach_branch(
            "F",
            lambda d: {str(i): str(i).encode() for i in range(int(d))},
            aggregator=lambda r: str(sum(int(v) for v in r.values())).encode(),
        )
        items.node("square").modify(lambda d: str(int(d) ** 2).encode())

    engine = faasflow.Engine(define, state_store=store_url, concurrency=16)
    async with engine:
        out = await engine.run(b"10000")
    assert int(out) == sum(i * i for i in range(10000))
