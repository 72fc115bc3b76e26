"""Stores that go away: transient failures are retried, lasting ones fail clearly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

import faasflow
from faasflow import Context, RequestFailedError, StoreError, Workflow
from faasflow.stores.base import WriteOp
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore
from faasflow.transports.inprocess import InProcessTransport


class BrokenCommits(MemoryStateStore):
    """A state store whose commits of node records fail ``failures`` times (then work):
    the request is created, its nodes cannot record their ends."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        if self.failures > 0 and any("/n/" in key for key in require or {}):
            self.failures -= 1
            raise StoreError("state store unreachable")
        return await super().commit(writes, require=require)


def chain(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("a").modify(lambda d: d + b"a")
    dag.node("b").modify(lambda d: d + b"b")
    dag.edge("a", "b")


async def test_a_transient_store_failure_is_retried() -> None:
    state = BrokenCommits(failures=2)
    transport = InProcessTransport(redelivery_delay=0.01)
    async with faasflow.Engine(chain, state_store=state, data_store=MemoryDataStore(),
                               transport=transport) as engine:
        assert await engine.run(b">", timeout=10) == b">ab"
    assert state.failures == 0


async def test_a_lasting_store_failure_fails_the_request_clearly() -> None:
    state = BrokenCommits(failures=10**6)
    transport = InProcessTransport(max_redeliveries=2, redelivery_delay=0.01)
    # A step whose function ran keeps trying to record it for store_patience seconds.
    async with faasflow.Engine(chain, state_store=state, data_store=MemoryDataStore(),
                               transport=transport, store_patience=0.3) as engine:
        with pytest.raises(RequestFailedError, match="state store unreachable") as failed:
            await engine.run(b">", timeout=10)
        assert failed.value.node == "a"
        info = await engine.info((await engine.requests())[0])
    assert info.status == "failed"
    assert info.failure is not None and info.failure.node == "a"


class LostReplies(MemoryStateStore):
    """A state store whose first ``failures`` conditional writes of node records (the
    claims and the commits that record a node as done) land but answer with an error,
    as when a reply is lost on its way back."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def _lose(self, keys: list[str]) -> None:
        if self.failures > 0 and any("/n/" in key for key in keys):
            self.failures -= 1
            raise StoreError("connection lost before the reply")

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        done = await super().commit(writes, require=require)
        self._lose(list(require or {}))
        return done

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        done = await super().compare_and_set(key, expected, new, ttl=ttl)
        self._lose([key])
        return done


def counted_chain(calls: list[str]) -> faasflow.engine.definition.Define:
    def define(flow: Workflow, context: Context) -> None:
        def step(name: str):  # type: ignore[no-untyped-def]
            def run(data: bytes) -> bytes:
                calls.append(name)
                return data + name.encode()

            return run

        dag = flow.dag()
        dag.node("a").modify(step("a"))
        dag.node("b").modify(step("b"))
        dag.edge("a", "b")

    return define


async def test_a_result_that_cannot_be_recorded_for_a_while_is_kept_not_recomputed() -> None:
    # The store refuses the commits that record "a" as done for a while (shorter than
    # the lease): the step keeps its result and tries again; "a" runs once.
    calls: list[str] = []
    state = BrokenCommits(failures=4)
    async with faasflow.Engine(counted_chain(calls), state_store=state,
                               data_store=MemoryDataStore()) as engine:
        assert await engine.run(b">", timeout=10) == b">ab"
    assert calls == ["a", "b"]


async def test_writes_whose_replies_were_lost_count_as_done_once() -> None:
    # Every first write of a step lands but answers with an error: the engine reads
    # back what it wrote instead of repeating it; each function runs once, and the
    # history has each node finished once.
    calls: list[str] = []
    state = LostReplies(failures=10)
    async with faasflow.Engine(counted_chain(calls), state_store=state,
                               data_store=MemoryDataStore()) as engine:
        rid = await engine.submit(b">")
        assert await engine.wait(rid, timeout=10) == b">ab"
        history = await engine.history(rid)
    assert calls == ["a", "b"]
    finished = [e["node"] for e in history if e["event"] == "finished"]
    assert finished == ["a", "b"]


class FailingSubmissions(MemoryStateStore):
    """A state store whose commits that create requests fail; with ``land``, after
    they were applied (the reply is what got lost)."""

    def __init__(self, *, land: bool) -> None:
        super().__init__()
        self.land = land
        self.failed = 0

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        creates = any(value is None and key.count("/") == 1 for key, value in
                      (require or {}).items())
        if creates and not self.failed:
            self.failed += 1
            if self.land:
                await super().commit(writes, require=require)
            raise StoreError("connection lost")
        return await super().commit(writes, require=require)


async def test_a_refused_submission_leaves_nothing_behind() -> None:
    calls: list[str] = []
    state = FailingSubmissions(land=False)
    async with faasflow.Engine(counted_chain(calls), state_store=state,
                               data_store=MemoryDataStore(), flow_name="f") as engine:
        with pytest.raises(StoreError, match="connection lost"):
            await engine.submit(b">", request_id="r-1")
        with pytest.raises(faasflow.UnknownRequestError):
            await engine.info("r-1")
        assert await engine.requests() == []
        # The same id can be submitted again, and runs once.
        await engine.submit(b">", request_id="r-1")
        assert await engine.wait("r-1", timeout=10) == b">ab"
    assert calls == ["a", "b"]


async def test_a_submission_whose_reply_was_lost_counts_as_made() -> None:
    calls: list[str] = []
    state = FailingSubmissions(land=True)
    async with faasflow.Engine(counted_chain(calls), state_store=state,
                               data_store=MemoryDataStore(), flow_name="f") as engine:
        rid = await engine.submit(b">", request_id="r-2")
        assert await engine.wait(rid, timeout=10) == b">ab"
        with pytest.raises(faasflow.DuplicateRequestError):
            await engine.submit(b">", request_id="r-2")
    assert calls == ["a", "b"]
