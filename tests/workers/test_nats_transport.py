"""The NATS JetStream transport against a real ``nats-server -js`` the suite starts."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest

from faasflow.errors import ConfigurationError, TransportError
from faasflow.transports.nats import NatsTransport
from faasflow.wire.hop import Hop
from servers import free_port
from servers.nats import nats_server

from .support import until

_flows = itertools.count()


def hop(rid: str, path: str = "n", trace: str | None = None) -> Hop:
    return Hop(request_id=rid, flow="f", path=path, inputs=(("", f"{rid}/in"),), trace=trace)


@pytest.fixture
def flow() -> str:
    """A flow name (subject and durable consumer) of this test's own."""
    return f"t{next(_flows)}"


@pytest.fixture
async def transports(nats_url: str) -> AsyncIterator[Callable[..., Awaitable[NatsTransport]]]:
    made: list[NatsTransport] = []

    async def make(
        flow: str, handler: Callable[[Hop], Awaitable[None]] | None = None, **options: object
    ) -> NatsTransport:
        transport = NatsTransport(nats_url, flow_name=flow, **options)  # type: ignore[arg-type]
        made.append(transport)

        async def ignore(_: Hop) -> None:
            return None

        await transport.start(handler or ignore)
        return transport

    yield make
    for transport in made:
        await transport.close()


async def test_each_hop_reaches_one_worker_once(transports, flow: str) -> None:
    seen: Counter[str] = Counter()
    by_worker: Counter[int] = Counter()

    def handler_of(worker: int) -> Callable[[Hop], Awaitable[None]]:
        async def handle(h: Hop) -> None:
            seen[h.request_id] += 1
            by_worker[worker] += 1
            await asyncio.sleep(0.002)  # long enough for the other worker to take some

        return handle

    # Started at once: both create the durable consumer (a race that once left the
    # second worker listening where the consumer never delivered).
    await asyncio.gather(transports(flow, handler_of(1)), transports(flow, handler_of(2)))
    sender = await transports(flow, consume=False)
    for i in range(300):
        await sender.send(hop(f"r{i}"))
    await until(lambda: sum(seen.values()) >= 300)
    await asyncio.sleep(0.2)  # any duplicate would arrive now
    assert seen == Counter({f"r{i}": 1 for i in range(300)})
    assert by_worker[1] > 0 and by_worker[2] > 0  # the queue group shares the work


async def test_hops_round_trip_with_their_trace_header(transports, flow: str) -> None:
    got: list[Hop] = []

    async def handle(h: Hop) -> None:
        got.append(h)

    await transports(flow, handle)
    sender = await transports(flow, consume=False)
    sent = hop("r1", "C[a]/F[k%2F]/n", trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    await sender.send(sent)
    await until(lambda: bool(got))
    assert got == [sent]
    assert got[0].trace == sent.trace
    assert got[0].inputs == sent.inputs


async def test_a_failing_hop_is_redelivered_then_given_up(transports, flow: str) -> None:
    attempts: list[float] = []
    given_up: list[tuple[Hop, Exception]] = []

    async def handle(h: Hop) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError("store away")

    worker = await transports(flow, handle, max_deliveries=3, redelivery_delay=0.1)

    async def record(h: Hop, exc: Exception) -> None:
        given_up.append((h, exc))

    worker.on_undeliverable = record
    sender = await transports(flow, consume=False)
    await sender.send(hop("r1"))
    await until(lambda: bool(given_up))
    await asyncio.sleep(0.5)  # acked after giving up: nothing more arrives
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.09  # backoff 0.1 s, then 0.2 s
    assert attempts[2] - attempts[1] >= 0.19
    assert given_up[0][0] == hop("r1")
    assert "store away" in str(given_up[0][1])


async def test_a_long_hop_is_not_redelivered_while_its_worker_lives(
    transports, flow: str
) -> None:
    runs: list[str] = []

    async def slow(h: Hop) -> None:
        runs.append(h.request_id)
        await asyncio.sleep(2.5)  # five times ack_wait: progress signals keep it ours

    await transports(flow, slow, ack_wait=0.5)
    await transports(flow, slow, ack_wait=0.5)
    sender = await transports(flow, consume=False)
    await sender.send(hop("r1"))
    await asyncio.sleep(3.5)
    assert runs == ["r1"]


async def test_a_hop_of_a_dead_worker_goes_to_another(transports, flow: str) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def hang(h: Hop) -> None:
        started.set()
        await asyncio.Event().wait()

    async def finish(h: Hop) -> None:
        finished.append(h.request_id)

    dying = await transports(flow, hang, ack_wait=0.5)
    sender = await transports(flow, consume=False)
    await sender.send(hop("r1"))
    await asyncio.wait_for(started.wait(), 10)
    # The worker vanishes without a word: no ack, no progress signal, no drain.
    assert dying._nc is not None
    dying._closing = True
    for task in list(dying._tasks):
        task.cancel()
    await dying._nc.close()
    await transports(flow, finish, ack_wait=0.5)
    await until(lambda: finished == ["r1"])


async def test_a_malformed_message_is_dropped(transports, flow: str, nats_url: str) -> None:
    got: list[Hop] = []

    async def handle(h: Hop) -> None:
        got.append(h)

    await transports(flow, handle)
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(f"faasflow.{flow}", b"{not json")
    finally:
        await client.close()
    sender = await transports(flow, consume=False)
    await sender.send(hop("after"))
    await until(lambda: bool(got))
    await asyncio.sleep(0.3)
    assert [h.request_id for h in got] == ["after"]


async def test_a_confirmed_send_waits_out_a_short_outage_then_fails(tmp_path: Path) -> None:
    port = free_port()
    with nats_server(tmp_path, port) as url:
        sender = NatsTransport(
            url, flow_name="outage", consume=False, publish_timeout=1.0, confirm=True
        )
        await sender.start(lambda h: asyncio.sleep(0))
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match="could not publish hop"):
            await sender.send(hop("r1"))
        assert time.monotonic() - started >= 0.9
        with nats_server(tmp_path, port):  # back, with its stream on disk
            await sender.send(hop("r2"))
    finally:
        await sender.close()


async def test_an_unreachable_server_is_a_transport_error() -> None:
    transport = NatsTransport(f"nats://127.0.0.1:{free_port()}", flow_name="x", connect_timeout=1)
    with pytest.raises(TransportError, match="cannot start"):
        await transport.start(lambda h: asyncio.sleep(0))


@pytest.mark.parametrize("name", ["a.b", "a*", ">", "with space", ""])
def test_flow_names_must_be_subject_tokens(name: str) -> None:
    with pytest.raises(ConfigurationError, match="NATS subject token"):
        NatsTransport("nats://127.0.0.1:4222", flow_name=name)
