"""Workers and clients on a real NATS server and Redis: duplicates, stalls, bounded state."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

import faasflow
from faasflow import Context, Workflow
from faasflow.errors import ConfigurationError
from faasflow.transports.nats import NatsTransport
from faasflow.wire.hop import Hop
from faasflow.workers import Client, Worker

_names = itertools.count()
BRANCHES = [f"b{i}" for i in range(6)]


class Effects:
    """Counts executions of each (request, node) across the workers of one test."""

    def __init__(self) -> None:
        self.runs: Counter[tuple[str, str]] = Counter()
        self.aggregations: Counter[str] = Counter()

    def define(self, flow: Workflow, context: Context) -> None:
        rid = context.request_id

        def node(name: str) -> Any:
            async def run(data: bytes) -> bytes:
                self.runs[(rid, name)] += 1
                await asyncio.sleep(0.001)
                return data + name.encode()

            return run

        def aggregate(parts: dict[str, bytes]) -> bytes:
            self.aggregations[rid] += 1
            return b",".join(parts.values())

        dag = flow.dag()
        dag.node("start").modify(node("start"))
        dag.node("join", aggregator=aggregate).modify(node("join"))
        for branch in BRANCHES:
            dag.node(branch).modify(node(branch))
            dag.edge("start", branch)
            dag.edge(branch, "join")


def expected(data: bytes) -> bytes:
    return b",".join(data + b"start" + b.encode() for b in BRANCHES) + b"join"


class DuplicatingTransport(NatsTransport):
    """Publishes every hop twice: each is delivered (at least) twice, through NATS."""

    async def send(self, hop: Hop) -> None:
        await super().send(hop)
        await super().send(hop)


class LosingTransport(NatsTransport):
    """Loses every hop it is asked to send (a crash between recording and publishing)."""

    async def send(self, hop: Hop) -> None:
        return None


def on(
    transport: type[NatsTransport], effects: Effects, options: dict[str, Any], consume: bool = True
) -> faasflow.Engine:
    """A worker (or, with ``consume=False``, a client) whose hops go through ``transport``:
    a :class:`Worker` is an engine with a NATS transport and leases."""
    return faasflow.Engine(
        effects.define,
        flow_name=options["flow_name"],
        state_store=options["state_store"],
        transport=transport(options["nats"], flow_name=options["flow_name"], consume=consume),
        lease_ttl=15.0,
        sweep_interval=None,
    )


@pytest.fixture
def options(nats_url: str, redis_url: str) -> dict[str, Any]:
    flow = f"w{next(_names)}"
    return {"flow_name": flow, "nats": nats_url, "state_store": f"{redis_url}?namespace={flow}:"}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_duplicate_deliveries_have_no_double_effects(options: dict[str, Any]) -> None:
    effects = Effects()
    async with (
        on(DuplicatingTransport, effects, options),
        on(DuplicatingTransport, effects, options),
        on(DuplicatingTransport, effects, options, consume=False) as client,
    ):
        rids = [await client.submit(f"in{i}".encode()) for i in range(20)]
        outs = [await client.wait(rid, timeout=60, poll=0.02) for rid in rids]
    assert outs == [expected(f"in{i}".encode()) for i in range(20)]
    for rid in rids:
        assert {name: effects.runs[(rid, name)] for name in ["start", *BRANCHES, "join"]} == {
            name: 1 for name in ["start", *BRANCHES, "join"]
        }
        assert effects.aggregations[rid] == 1


async def test_a_request_whose_hop_was_lost_is_resent(options: dict[str, Any]) -> None:
    effects = Effects()
    async with (
        Worker(effects.define, resend_after=0.5, sweep_interval=0.2, **options),
        on(LosingTransport, effects, options, consume=False) as client,
    ):
        rid = await client.submit(b"lost")
        assert await client.wait(rid, timeout=30, poll=0.05) == expected(b"lost")


async def test_the_stall_detector_fails_a_request_stuck_past_its_deadline(
    options: dict[str, Any],
) -> None:
    effects = Effects()
    async with (
        Worker(effects.define, resend_after=None, stall_after=0.5, sweep_interval=0.2,
               **options),
        on(LosingTransport, effects, options, consume=False) as client,
    ):
        rid = await client.submit(b"stuck")
        with pytest.raises(faasflow.RequestFailedError, match="stalled") as caught:
            await client.wait(rid, timeout=30, poll=0.05)
        info = await client.info(rid)
    assert info.status == "failed"
    assert info.failure is not None and "no progress for more than 0.5s" in info.failure.cause
    assert "stalled" in caught.value.cause


async def test_finished_requests_leave_only_result_and_history_which_expire(
    options: dict[str, Any], redis: aioredis.Redis
) -> None:
    effects = Effects()
    namespace = f"{options['flow_name']}:"
    async with (
        Worker(effects.define, result_ttl=120, **options),
        Worker(effects.define, result_ttl=120, **options),
        Client(effects.define, **options) as client,
    ):
        rids = [await client.submit(f"r{i}".encode()) for i in range(10)]
        for rid in rids:
            await client.wait(rid, timeout=60, poll=0.02)
    left: dict[str, int] = {}
    async for key in redis.scan_iter(match=f"{namespace}*"):
        left[key.decode()[len(namespace):]] = await redis.pttl(key)
    # The Redis store's kinds: v: values, l: lists, d: data; each key's folder (one
    # request's) in braces, its Redis Cluster hash tag.
    flow = options["flow_name"]
    kept = {f"v:{{r/{rid}}}" for rid in rids} | {f"l:{{h/{rid}}}" for rid in rids}
    kept |= {f"d:{{result:{rid}}}" for rid in rids}
    # The flow's indexes (x: entries, y: each member's score), for listings: kept, and
    # pruned by the sweep once a request's record has expired.
    indexes = {f"{kind}:{{{name}}}" for kind in "xy"
               for name in (f"f:{flow}", f"s:{flow}/succeeded")}
    assert set(left) == kept | indexes, sorted(set(left) ^ (kept | indexes))
    # The record outlives the result (twice its TTL), so an expired result reads as
    # expired rather than unknown.
    limit = {key: 240_000 if key.startswith("v:") else 120_000 for key in kept}
    assert {key: left[key] for key in kept if not 0 < left[key] <= limit[key]} == {}
    async with Client(**{k: v for k, v in options.items() if k != "nats"}) as reader:
        listed = await reader.list_requests(status="succeeded", limit=20)
    assert sorted(info.request_id for info in listed.requests) == sorted(rids)


async def test_a_client_without_nats_reads_but_cannot_send(options: dict[str, Any]) -> None:
    effects = Effects()
    async with (
        Worker(effects.define, **options),
        Client(effects.define, **options) as sender,
    ):
        rid = await sender.submit(b"x")
        await sender.wait(rid, timeout=30, poll=0.02)
        reader_options = {k: v for k, v in options.items() if k != "nats"}
        async with Client(**reader_options) as reader:
            assert await reader.result(rid) == expected(b"x")
            assert (await reader.info(rid)).status == "succeeded"
            with pytest.raises(ConfigurationError, match="without the flow's define"):
                await reader.submit(b"y")


def test_a_worker_or_client_on_a_store_no_other_process_sees_is_refused() -> None:
    # A worker on memory:// would take hops nobody else can see the requests of.
    for make in (Worker, Client):
        with pytest.raises(ConfigurationError, match="memory store lives inside one process"):
            make(sys_define, nats="nats://127.0.0.1:4222", state_store="memory://")
        with pytest.raises(ConfigurationError, match="data_store memory://"):
            make(sys_define, nats="nats://127.0.0.1:4222", state_store="sqlite:////tmp/x.db",
                 data_store="memory://")


def test_workers_and_clients_name_the_flow_after_its_file_as_the_cli_does() -> None:
    # `faasflow worker flows/fanout.py` serves the flow "fanout": so do Python workers and
    # clients given the same define without a name, and they meet on the same subject.
    from .support import FLOWS

    sys.path.insert(0, str(FLOWS))
    import fanout

    url = "nats://127.0.0.1:4222"
    worker = Worker(fanout.define, nats=url, state_store="sqlite:////tmp/w.db")
    client = Client(fanout.define, nats=url, state_store="sqlite:////tmp/w.db")
    assert worker.flow_name == client.flow_name == "fanout"
    assert Client(state_store="sqlite:////tmp/w.db").flow_name == "flow"


def sys_define(flow: Workflow, context: Context) -> None:
    flow.dag().node("a")
