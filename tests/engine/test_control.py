"""Pause holds, resume sends each held hop once, stop ends; duplicates change nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

import faasflow
from faasflow import Context, RequestStoppedError, Workflow
from faasflow.engine import _keys as keys
from faasflow.transports.inprocess import InProcessTransport
from faasflow.wire.hop import Hop

MakeEngine = Callable[..., faasflow.Engine]


class Gate:
    """A node body that signals when it starts and waits to be let through."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, data: bytes) -> bytes:
        self.entered.set()
        await self.release.wait()
        return data + b"|gate"


def fan_flow(gate: Gate, calls: Counter[str]) -> Callable[[Workflow, Context], None]:
    def define(flow: Workflow, context: Context) -> None:
        def count(name: str) -> Callable[[bytes], bytes]:
            def run(data: bytes) -> bytes:
                calls[name] += 1
                return data + b"|" + name.encode()

            return run

        dag = flow.dag()
        dag.node("a").modify(gate)
        for name in ("b", "c"):
            dag.node(name).modify(count(name))
        dag.node("d", aggregator=lambda r: b"+".join(r.values())).modify(count("d"))
        dag.edge("a", "b")
        dag.edge("a", "c")
        dag.edge("b", "d")
        dag.edge("c", "d")

    return define


async def test_pause_holds_successors_and_resume_sends_each_once(make_engine: MakeEngine) -> None:
    gate, calls = Gate(), Counter[str]()
    engine = make_engine(fan_flow(gate, calls))
    rid = await engine.submit(b"x")
    await gate.entered.wait()
    await engine.pause(rid)
    assert await engine.state_of(rid) == "paused"
    gate.release.set()  # the in-flight node finishes...
    await engine.drain()
    held = await engine.executor.hops.held(rid)
    assert sorted(h.path for h in held) == ["b", "c"]  # ...its successors wait
    assert calls == Counter()
    assert (await engine.info(rid, nodes=True)).nodes["a"]["state"] == "done"
    with pytest.raises(faasflow.RequestStateError, match="cannot pause"):
        await engine.pause(rid)

    assert await engine.resume(rid) == 2
    assert await engine.wait(rid, timeout=10) == b"x|gate|b+x|gate|c|d"
    assert calls == Counter({"b": 1, "c": 1, "d": 1})
    with pytest.raises(faasflow.RequestStateError, match="cannot resume"):
        await engine.resume(rid)


async def test_two_pause_resume_cycles_replay_nothing(make_engine: MakeEngine) -> None:
    gates = [Gate(), Gate()]
    calls: Counter[str] = Counter()

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("g1").modify(gates[0])
        dag.node("g2").modify(gates[1])
        dag.node("end").modify(lambda d: calls.update(["end"]) or d)
        dag.edge("g1", "g2")
        dag.edge("g2", "end")

    engine = make_engine(define)
    rid = await engine.submit(b"")
    for gate in gates:
        await gate.entered.wait()
        await engine.pause(rid)
        gate.release.set()
        await engine.drain()
        assert await engine.resume(rid) == 1
    assert await engine.wait(rid, timeout=10) == b"|gate|gate"
    assert calls == Counter({"end": 1})


async def test_stop_mid_flow_runs_hooks_once_and_cleans_up(make_engine: MakeEngine) -> None:
    gate, calls = Gate(), Counter[str]()
    finals: list[str] = []
    failures: list[BaseException] = []
    define = fan_flow(gate, calls)

    def with_hooks(flow: Workflow, context: Context) -> None:
        define(flow, context)
        flow.finally_(finals.append)
        flow.on_failure(failures.append)

    engine = make_engine(with_hooks, flow_name="stopper")
    rid = await engine.submit(b"x")
    await gate.entered.wait()
    waiting = asyncio.create_task(engine.wait(rid))
    await engine.stop(rid)
    gate.release.set()
    await engine.drain()
    with pytest.raises(RequestStoppedError):
        await waiting
    assert await engine.state_of(rid) == "stopped"
    assert calls == Counter()  # successors of the in-flight node never ran
    assert finals == ["failure"] and len(failures) == 1
    assert isinstance(failures[0], RequestStoppedError)
    assert await engine.state.keys(keys.request_prefix(rid)) == []
    with pytest.raises(faasflow.RequestStateError, match="cannot stop"):
        await engine.stop(rid)


async def test_stop_a_paused_request(make_engine: MakeEngine) -> None:
    gate, calls = Gate(), Counter[str]()
    engine = make_engine(fan_flow(gate, calls))
    rid = await engine.submit(b"x")
    await gate.entered.wait()
    await engine.pause(rid)
    gate.release.set()
    await engine.drain()
    await engine.stop(rid)
    assert await engine.state_of(rid) == "stopped"
    assert await engine.state.keys(keys.held(rid)) == []
    assert calls == Counter()


class DuplicatingTransport(InProcessTransport):
    """Delivers every hop twice, as an at-least-once queue may."""

    async def send(self, hop: Hop) -> None:
        await super().send(hop)
        await super().send(hop)


async def test_duplicate_deliveries_have_no_double_effects(store_url: str) -> None:
    calls: Counter[str] = Counter()
    finals: list[str] = []

    def define(flow: Workflow, context: Context) -> None:
        def count(name: str) -> Callable[[bytes], bytes]:
            def run(data: bytes) -> bytes:
                calls[name] += 1
                return data + name.encode()

            return run

        dag = flow.dag()
        dag.node("a").modify(count("a"))
        for name in ("b", "c", "d"):
            dag.node(name).modify(count(name))
            dag.edge("a", name)
        dag.node("join", aggregator=lambda r: b",".join(r.values())).modify(count("join"))
        for name in ("b", "c", "d"):
            dag.edge(name, "join")
        branch = dag.foreach_branch(
            "F", lambda d: {k: k.encode() for k in "xyz"}, aggregator=lambda r: b"".join(r.values())
        )
        branch.node("item").modify(count("item"))
        dag.edge("join", "F")
        flow.finally_(finals.append)

    engine = faasflow.Engine(define, state_store=store_url, transport=DuplicatingTransport())
    async with engine:
        out = await engine.run(b">")
        await engine.drain()
    assert out == b"xitemyitemzitem"
    # Every node's effect happened once per node instance, the join fired once.
    assert calls == Counter({"a": 1, "b": 1, "c": 1, "d": 1, "join": 1, "item": 3})
    assert finals == ["success"]


async def test_hundreds_of_simultaneous_requests_are_isolated(store_url: str) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()

        async def tag(data: bytes) -> bytes:
            await context.aset("me", context.request_id)
            await asyncio.sleep(0)
            return data + b":" + str(await context.aget("me")).encode()

        dag.node("a").modify(tag)
        branch = dag.foreach_branch(
            "F", lambda d: {str(i): d for i in range(3)}, aggregator=lambda r: b";".join(r.values())
        )
        branch.node("n").modify(lambda d: d + context.request_id.encode())
        dag.edge("a", "F")

    n = 300
    engine = faasflow.Engine(define, state_store=store_url, concurrency=64)
    async with engine:
        ids = [f"req-{i}" for i in range(n)]
        outs = await asyncio.gather(
            *(engine.run(i.encode(), request_id=i, timeout=60) for i in ids)
        )
    for rid, out in zip(ids, outs, strict=True):
        one = f"{rid}:{rid}{rid}".encode()
        assert out == b";".join([one] * 3)
