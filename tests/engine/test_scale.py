"""Reads that cost their answer: a list page, a status, a sweep with nothing due.

The store here counts what each operation reads; the same operation over ten times as
many requests on record must read the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import faasflow
from faasflow import Context, Workflow
from faasflow.stores.base import Entry, WriteOp
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore
from faasflow.transports.base import HopHandler, Transport
from faasflow.wire.hop import Hop


class Counting(MemoryStateStore):
    """A memory store that counts calls and the values and index entries they read."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.read = 0

    def reset(self) -> None:
        self.calls = self.read = 0

    async def get(self, key: str) -> bytes | None:
        self.calls += 1
        self.read += 1
        return await super().get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls += 1
        self.read += len(keys)
        return [await MemoryStateStore.get(self, key) for key in keys]

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        self.calls += 1
        found = await super().keys(prefix, limit=limit)
        self.read += len(found)
        return found

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        self.calls += 1
        items = await super().read_list(key, start=start, stop=stop)
        self.read += len(items)
        return items

    async def index_range(self, index: str, **options: Any) -> list[Entry]:
        self.calls += 1
        found = await super().index_range(index, **options)
        self.read += len(found)
        return found

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        self.calls += 1
        return await super().commit(writes, require=require)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        self.calls += 1
        return await super().compare_and_set(key, expected, new, ttl=ttl)


class Nowhere(Transport):
    """Hops go nowhere: requests stay running, waiting."""

    async def start(self, handler: HopHandler) -> None:
        pass

    async def send(self, hop: Hop) -> None:
        pass

    async def close(self) -> None:
        pass


def chain(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("a").modify(lambda data: data + b"a")
    dag.node("b").modify(lambda data: data + b"b")
    dag.edge("a", "b")


async def test_a_list_page_and_a_status_read_what_they_return() -> None:
    costs = {}
    for count in (30, 300):
        state = Counting()
        async with faasflow.Engine(chain, state_store=state, data_store=MemoryDataStore(),
                                   sweep_interval=None) as engine:
            for i in range(count):
                await engine.run(b"x", request_id=f"r{i:06d}")
            failing = await engine.submit(b"y", request_id="z-last")
            await engine.wait(failing, timeout=10)
            state.reset()
            page = await engine.list_requests(limit=10)
            second = await engine.list_requests(limit=10, before=page.next)
            succeeded = await engine.list_requests(status="succeeded", limit=10)
            await engine.info(page.requests[0].request_id, nodes=True)
            costs[count] = (state.calls, state.read)
        assert [info.request_id for info in page.requests][:2] == ["z-last", f"r{count-1:06d}"]
        assert len(second.requests) == 10 and second.requests[0].created <= (
            page.requests[-1].created)
        assert {info.status for info in succeeded.requests} == {"succeeded"}
    assert costs[300] == costs[30], costs


async def test_a_sweep_with_many_waiting_and_none_due_costs_a_few_calls() -> None:
    state = Counting()
    async with faasflow.Engine(chain, state_store=state, data_store=MemoryDataStore(),
                               transport=Nowhere(), sweep_interval=None,
                               resend_after=60) as engine:
        for i in range(500):
            await engine.submit(b"x", request_id=f"w{i:06d}")
        state.reset()
        report = await engine.sweep()
        assert report == {"resent": [], "stalled": [], "retired": []}
        assert state.calls <= 3, state.calls
        assert state.read == 0
        # Once due (no progress for resend_after by their entries), each is looked at for a
        # few calls and then not again until it may be due once more.
        now = time.time()
        for rid in await engine.executor.requests.unfinished():
            await engine.executor.requests.looked_at(rid, now - 100)
        state.reset()
        report = await engine.sweep()
        assert report["resent"] == []  # not idle long enough: only rescheduled
        assert state.calls <= 3 + 4 * 500, state.calls
        state.reset()
        assert (await engine.sweep())["resent"] == []
        assert state.calls <= 3


async def test_one_process_sweeps_a_flow_at_a_time() -> None:
    state = Counting()
    data = MemoryDataStore()
    one = faasflow.Engine(chain, state_store=state, data_store=data, sweep_interval=None)
    two = faasflow.Engine(chain, state_store=state, data_store=data, sweep_interval=None)
    async with one, two:
        first, second = one.executor, two.executor
        assert await first.requests.lead_sweep(first.owner, ttl=60)
        assert await first.requests.lead_sweep(first.owner, ttl=60)  # renewed
        assert not await second.requests.lead_sweep(second.owner, ttl=60)
        await state.delete("sweep:flow")  # as when the leader's lease runs out
        assert await second.requests.lead_sweep(second.owner, ttl=60)


class Sizes(MemoryStateStore):
    """A memory store that remembers the largest value written."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.largest = max(self.largest, len(value))
        await super().set(key, value, ttl=ttl)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        self.largest = max(self.largest, len(new or b""))
        return await super().compare_and_set(key, expected, new, ttl=ttl)

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        for op in writes:
            self.largest = max(self.largest, len(getattr(op, "value", b"")))
        return await super().commit(writes, require=require)


def wide(width: int) -> Any:
    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("split")
        each = dag.foreach_branch(
            "each", lambda data: {f"item-{i:06d}": b"%d" % i for i in range(width)},
            aggregator=lambda results: b"%d" % len(results),
        )
        each.node("n").modify(lambda data: data)
        dag.edge("split", "each")

    return define


async def test_no_stored_value_grows_with_a_foreach_width() -> None:
    largest = {}
    for width in (2_000, 20_000):
        state = Sizes()
        async with faasflow.Engine(wide(width), state_store=state,
                                   data_store=MemoryDataStore(), sweep_interval=None) as engine:
            assert await engine.run(b"x", timeout=120) == b"%d" % width
        largest[width] = state.largest
    # The branches a foreach chose are kept in chunks of 1000: ten times wider, the
    # largest value the same (about one chunk), far from a megabyte.
    assert largest[20_000] <= largest[2_000] * 1.2 < 200_000, largest


async def test_an_engine_of_another_name_moves_a_request_within_its_own_flows_indexes() -> None:
    # A reader or controller may be opened under another flow name (the CLI's, say):
    # the request's own flow's indexes are the ones that change.
    state, data = MemoryStateStore(), MemoryDataStore()
    async with faasflow.Engine(chain, flow_name="orders", state_store=state, data_store=data,
                               transport=Nowhere(), sweep_interval=None) as engine:
        rid = await engine.submit(b"x")
    async with faasflow.Engine(chain, flow_name="flow", state_store=state, data_store=data,
                               transport=Nowhere(), sweep_interval=None) as other:
        await other.pause(rid)
    async with faasflow.Engine(chain, flow_name="orders", state_store=state, data_store=data,
                               transport=Nowhere(), sweep_interval=None) as engine:
        paused = await engine.list_requests(status="paused")
        assert [info.request_id for info in paused.requests] == [rid]
        assert (await engine.list_requests(status="running")).requests == []
        assert await engine.counts(("running", "paused")) == {"running": 0, "paused": 1}


async def test_the_sweep_prunes_the_indexes_of_requests_that_expired() -> None:
    import asyncio

    from faasflow.engine import _keys as keys

    state = MemoryStateStore()
    async with faasflow.Engine(chain, flow_name="brief", state_store=state,
                               data_store=MemoryDataStore(), sweep_interval=None,
                               result_ttl=0.05) as engine:
        for _ in range(3):
            await engine.run(b"x")
        assert await state.index_size(keys.flow_index("brief")) == 3
        await asyncio.sleep(0.2)  # records expire after twice result_ttl
        await engine.sweep()
        assert await state.index_size(keys.flow_index("brief")) == 0
        assert await state.index_size(keys.status_index("brief", "succeeded")) == 0
        assert (await engine.list_requests()).requests == []
