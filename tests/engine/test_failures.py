"""Every failure path: a failed node fails the request once, on record, and can be redriven."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from failing import Flaky

import faasflow
from faasflow import (
    Context,
    FunctionError,
    FunctionTimeoutError,
    RequestFailedError,
    RequestStateError,
    Retry,
    UnknownRequestError,
    Workflow,
)
from faasflow.engine import _keys as keys
from faasflow.transports.inprocess import InProcessTransport
from faasflow.wire.hop import Hop

MakeEngine = Callable[..., faasflow.Engine]


def chain_with(function: str, **options: object) -> Callable[[Workflow, Context], None]:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("prep").modify(lambda d: d + b"-prep")
        dag.node("call").apply(function, **options)  # type: ignore[arg-type]
        dag.node("done").modify(lambda d: d + b"-done")
        dag.edge("prep", "call")
        dag.edge("call", "done")

    return define


async def test_retries_with_backoff_then_success(make_engine: MakeEngine) -> None:
    flaky = Flaky(2)
    define = chain_with("f", retry=Retry(attempts=3, backoff=0.01, jitter=0))
    engine = make_engine(define, functions={"f": flaky})
    assert await engine.run(b"x") == b"X-PREP-done"
    assert flaky.calls == 3
    rid = (await engine.requests())[0]
    info = await engine.info(rid)
    history = await engine.history(rid)
    assert info.status == "succeeded"
    call = next(e for e in history if e["node"] == "call" and e["event"] == "finished")
    assert call["calls"] == 3


async def test_retries_exhausted_fail_with_node_attempt_and_cause(make_engine: MakeEngine) -> None:
    flaky = Flaky(10)
    define = chain_with("f", retry=Retry(attempts=3, backoff=0.0, jitter=0))
    engine = make_engine(define, functions={"f": flaky})
    with pytest.raises(RequestFailedError) as info:
        await engine.run(b"x", request_id="r-fail")
    error = info.value
    assert (error.request_id, error.node, error.attempt) == ("r-fail", "call", 3)
    assert "ConnectionError: boom 3" in error.cause
    assert isinstance(error.__cause__, FunctionError)
    assert flaky.calls == 3
    record = await engine.info("r-fail", nodes=True)
    assert record.status == "failed"
    assert record.failure is not None and record.failure.node == "call"
    assert record.nodes["prep"]["state"] == "done"
    assert record.nodes["call"]["state"] == "failed"
    assert "done" not in record.nodes
    with pytest.raises(RequestStateError, match="failed"):
        await engine.result("r-fail")


async def test_function_timeout_and_default_timeout(make_engine: MakeEngine) -> None:
    forever = asyncio.Event()

    async def hang(data: bytes) -> bytes:
        await forever.wait()
        return data

    engine = make_engine(chain_with("hang", timeout=0.05), functions={"hang": hang})
    with pytest.raises(RequestFailedError, match=r"did not answer within 0.05s") as info:
        await engine.run(b"x")
    assert isinstance(info.value.__cause__, FunctionTimeoutError)

    engine = make_engine(chain_with("hang"), functions={"hang": hang}, default_timeout=0.05,
                         flow_name="default")
    with pytest.raises(RequestFailedError, match=r"within 0.05s"):
        await engine.run(b"x")


async def test_unknown_function_is_not_retried(make_engine: MakeEngine) -> None:
    engine = make_engine(chain_with("nope", retry=Retry(attempts=5, backoff=0.0)))
    with pytest.raises(RequestFailedError, match="'nope'") as info:
        await engine.run(b"x")
    assert info.value.attempt == 1


async def test_operation_on_failure_handler_supplies_a_result(make_engine: MakeEngine) -> None:
    seen: list[FunctionError] = []

    def fallback(error: FunctionError) -> bytes:
        seen.append(error)
        return b"fallback"

    engine = make_engine(chain_with("f", on_failure=fallback), functions={"f": Flaky(1)})
    assert await engine.run(b"x") == b"fallback-done"
    assert seen[0].node == "call" and seen[0].attempt == 1


async def test_on_response_and_request_handler(make_engine: MakeEngine) -> None:
    from faasflow.functions.base import FunctionRequest, FunctionResponse

    def add_header(request: FunctionRequest) -> None:
        request.body = request.body + b"+handled"

    def read(response: FunctionResponse) -> bytes:
        return b"status=%d body=%s" % (response.status, response.body)

    define = chain_with("f", request_handler=add_header, on_response=read)
    engine = make_engine(define, functions={"f": lambda d: d})
    assert await engine.run(b"x") == b"status=200 body=x-prep+handled-done"


async def test_hooks_run_once_even_when_many_branches_fail(make_engine: MakeEngine) -> None:
    failures: list[RequestFailedError] = []
    finals: list[str] = []
    states: list[str] = []

    def define(flow: Workflow, context: Context) -> None:
        def explode(data: bytes) -> bytes:
            raise ValueError(f"bad item {data.decode()}")

        branch = flow.dag().foreach_branch(
            "F", lambda d: {str(i): b"%d" % i for i in range(20)}, aggregator=lambda r: b""
        )
        branch.node("x").modify(explode)
        flow.on_failure(failures.append)
        flow.finally_(lambda state: (finals.append(state), states.append(context.state)))

    engine = make_engine(define)
    with pytest.raises(RequestFailedError, match="bad item"):
        await engine.run(b"")
    await engine.drain()
    assert len(failures) == 1 and finals == ["failure"] and states == ["failure"]
    assert failures[0].node.startswith("F[") and failures[0].node.endswith("]/x")


async def test_finally_runs_once_with_success(make_engine: MakeEngine) -> None:
    finals: list[str] = []

    def define(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: d)
        flow.finally_(finals.append)

    engine = make_engine(define)
    await asyncio.gather(*(engine.run(b"%d" % i) for i in range(5)))
    assert finals == ["success"] * 5


async def test_redrive_resumes_from_the_failed_node(make_engine: MakeEngine) -> None:
    calls: Counter[str] = Counter()
    broken = {"on": True}

    def define(flow: Workflow, context: Context) -> None:
        def step(name: str) -> Callable[[bytes], bytes]:
            def run(data: bytes) -> bytes:
                calls[name] += 1
                if name == "c" and broken["on"]:
                    raise RuntimeError("c is broken")
                return data + name.encode()

            return run

        dag = flow.dag()
        for name in ("a", "b", "c"):
            dag.node(name).modify(step(name))
        dag.node("side").modify(step("side"))
        dag.node("join", aggregator=lambda r: b"+".join(r.values()))
        dag.edge("a", "b")
        dag.edge("b", "c")
        dag.edge("a", "side")
        dag.edge("c", "join")
        dag.edge("side", "join")

    engine = make_engine(define)
    with pytest.raises(RequestFailedError, match="c is broken"):
        await engine.run(b">", request_id="rd-1")
    await engine.drain()
    broken["on"] = False
    assert await engine.redrive("rd-1") >= 1
    assert await engine.wait("rd-1", timeout=10) == b">abc+>aside"
    assert calls == Counter({"a": 1, "b": 1, "c": 2, "side": 1})
    with pytest.raises(RequestStateError, match="cannot redrive request rd-1: it is succeeded"):
        await engine.redrive("rd-1")


async def test_control_errors_change_nothing(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: d)

    engine = make_engine(define)
    for call in (engine.pause, engine.resume, engine.stop, engine.redrive, engine.result,
                 engine.info, engine.history):
        with pytest.raises(UnknownRequestError, match="no request 'ghost'"):
            await call("ghost")
    await engine.run(b"x", request_id="done-1")
    before = await engine.info("done-1")
    for call, verb in ((engine.pause, "pause"), (engine.resume, "resume"),
                       (engine.stop, "stop"), (engine.redrive, "redrive")):
        with pytest.raises(RequestStateError, match=f"cannot {verb} request done-1"):
            await call("done-1")
    assert await engine.info("done-1") == before
    assert await engine.result("done-1") == b"x"
    with pytest.raises(faasflow.DuplicateRequestError):
        await engine.submit(b"y", request_id="done-1")
    with pytest.raises(faasflow.RequestError, match="invalid request id"):
        await engine.submit(b"y", request_id="../etc")


async def test_a_finished_request_leaves_only_record_history_and_result(
    make_engine: MakeEngine,
) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: context.set("k", "v") or d + b"a")
        branch = dag.foreach_branch("F", lambda d: {"1": d, "2": d}, aggregator=lambda r: b"ok")
        branch.node("n").modify(lambda d: d)
        dag.edge("a", "F")

    engine = make_engine(define, flow_name="clean")
    await engine.run(b"x" * 4096, request_id="c-1")  # an input large enough to be stored
    assert await engine.state.keys(keys.request_prefix("c-1")) == []
    assert await engine.state.keys(keys.pending("c-1")) == []
    assert await engine.data.delete_prefix(keys.data_prefix("c-1")) == 0  # nothing left
    assert await engine.data.get(keys.context_value("c-1", "k")) is None
    # Out of the sweep's index; in the flow's and its status's, for listings.
    assert await engine.state.index_size(keys.due_index("clean")) == 0
    listed = await engine.state.index_range(keys.status_index("clean", "succeeded"), limit=5)
    assert [rid for _, rid in listed] == ["c-1"]
    assert await engine.state.index_size(keys.status_index("clean", "running")) == 0
    assert await engine.result("c-1") == b"ok"
    assert [e["event"] for e in await engine.history("c-1")][-1] == "succeeded"


async def test_finished_requests_expire(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.sync_node().modify(lambda d: d)

    engine = make_engine(define, result_ttl=0.2)
    await engine.run(b"x", request_id="ttl-1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline:
        try:
            await engine.info("ttl-1")
        except UnknownRequestError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the finished request never expired")
    assert await engine.data.get(keys.result("ttl-1")) is None
    assert await engine.state.read_list(keys.history("ttl-1")) == []


class LosingTransport(InProcessTransport):
    """Loses the first hop to ``path``, as a crashed queue might."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.lost = 0

    async def send(self, hop: Hop) -> None:
        if hop.path == self.path and not self.lost:
            self.lost += 1
            return
        await super().send(hop)


async def test_a_stalled_request_is_failed_and_can_be_redriven(store_url: str) -> None:
    finals: list[str] = []

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d + b"a")
        dag.node("b").modify(lambda d: d + b"b")
        dag.edge("a", "b")
        flow.finally_(finals.append)

    transport = LosingTransport("b")
    engine = faasflow.Engine(define, state_store=store_url, transport=transport,
                             stall_after=0.1, sweep_interval=None)
    async with engine:
        rid = await engine.submit(b">")
        await engine.drain()
        assert transport.lost == 1
        assert await engine.state_of(rid) == "running"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        report = await engine.sweep()
        while not report["stalled"] and loop.time() < deadline:
            await asyncio.sleep(0.05)
            report = await engine.sweep()
        assert report["stalled"] == [rid]
        with pytest.raises(RequestFailedError, match="stalled: no progress"):
            await engine.wait(rid, timeout=5)
        assert finals == ["failure"]
        await engine.redrive(rid)
        assert await engine.wait(rid, timeout=10) == b">ab"


async def test_a_lost_hop_is_sent_again(store_url: str) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d + b"a")
        dag.node("b").modify(lambda d: d + b"b")
        dag.edge("a", "b")

    transport = LosingTransport("b")
    engine = faasflow.Engine(define, state_store=store_url, transport=transport,
                             resend_after=0.1, stall_after=None, sweep_interval=None)
    async with engine:
        rid = await engine.submit(b">")
        await engine.drain()
        assert transport.lost == 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        report = await engine.sweep()
        while not report["resent"] and loop.time() < deadline:
            await asyncio.sleep(0.05)
            report = await engine.sweep()
        assert report["resent"] == [rid]
        assert await engine.wait(rid, timeout=10) == b">ab"
        assert transport.lost == 1


async def test_failed_requests_are_retired_after_failed_ttl(make_engine: MakeEngine) -> None:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: d)
        dag.node("b").modify(lambda d: 1 / 0)  # type: ignore[arg-type,return-value]
        dag.edge("a", "b")

    engine = make_engine(define, failed_ttl=0.0, sweep_interval=None, flow_name="retire")
    with pytest.raises(RequestFailedError, match="ZeroDivisionError"):
        await engine.run(b"x" * 4096, request_id="old-1")
    assert await engine.state.keys(keys.request_prefix("old-1")) != []
    assert await engine.sweep() == {"resent": [], "stalled": [], "retired": ["old-1"]}
    assert await engine.state.keys(keys.request_prefix("old-1")) == []
    assert await engine.data.delete_prefix(keys.data_prefix("old-1")) == 0
    info = await engine.info("old-1")
    assert info.status == "failed" and info.failure is not None
    with pytest.raises(RequestStateError, match="intermediate state was dropped"):
        await engine.redrive("old-1")
    assert await engine.sweep() == {"resent": [], "stalled": [], "retired": []}


def _explode(data: bytes) -> bytes:
    raise ValueError(f"cannot take {data!r}")


async def test_an_error_in_the_users_code_says_where_it_happened(
    make_engine: MakeEngine,
) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.dag().node("a").modify(_explode)

    engine = make_engine(define, flow_name="where")
    with pytest.raises(RequestFailedError) as failed:
        await engine.run(b"x", request_id="w-1")
    line = _explode.__code__.co_firstlineno + 1
    assert failed.value.cause.endswith(f"(at test_failures.py:{line} in _explode)")
    (event,) = [e for e in await engine.history("w-1") if e["event"] == "failed"
                and e["kind"] == "node"]
    assert f'test_failures.py", line {line}, in _explode' in event["traceback"]
    assert event["traceback"].endswith("ValueError: cannot take b'x'")


async def test_an_input_over_the_size_limit_is_refused_before_anything_is_stored(
    make_engine: MakeEngine,
) -> None:
    def define(flow: Workflow, context: Context) -> None:
        flow.dag().node("a")

    engine = make_engine(define, flow_name="big", max_input_size=16)
    with pytest.raises(faasflow.RequestError, match=r"17 bytes, more than max_input_size \(16"):
        await engine.submit(b"x" * 17, request_id="big-1")
    with pytest.raises(faasflow.UnknownRequestError):
        await engine.info("big-1")
    assert await engine.run(b"x" * 16) == b"x" * 16
