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
    """A state store whose ``commit`` fails ``failures`` times (then works)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        if self.failures > 0:
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
    async with faasflow.Engine(chain, state_store=state, data_store=MemoryDataStore(),
                               transport=transport) as engine:
        with pytest.raises(RequestFailedError, match="state store unreachable") as failed:
            await engine.run(b">", timeout=10)
        assert failed.value.node == "a"
        info = await engine.info((await engine.requests())[0])
    assert info.status == "failed"
    assert info.failure is not None and info.failure.node == "a"
