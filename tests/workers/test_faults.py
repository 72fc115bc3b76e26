"""Faults with real processes: ``faasflow worker`` processes killed, Redis and NATS restarted.

Workers run as separate OS processes, each claiming to be on its own host
(``FAASFLOW_HOST``), so a dead worker's claims are released only by their leases, as
between machines. The flow (``flows/fanout.py``) logs every node execution with its pid,
which is how each test counts effects across processes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import faasflow
from faasflow.engine.views import SUCCEEDED
from faasflow.errors import StoreError
from faasflow.workers import Client
from servers import free_port
from servers.nats import nats_server
from servers.redis import redis_server

from .support import FLOWS, WorkerProcess, executions, until

sys.path.insert(0, str(FLOWS))
import fanout

_names = itertools.count()


@pytest.fixture
def setup(tmp_path: Path, nats_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    """A flow name and Redis namespace of the test's own; workers stopped at the end."""
    flow = f"faults{next(_names)}"
    workers: list[WorkerProcess] = []

    def start(
        *extra: str, nats: str = nats_url, state: str = "", same_host: bool = False
    ) -> WorkerProcess:
        worker = WorkerProcess(
            flow, nats, state or f"{redis_url}?namespace={flow}:", tmp_path, *extra,
            same_host=same_host,
        )
        workers.append(worker)
        return worker

    yield {"flow": flow, "start": start, "nats": nats_url,
           "state": f"{redis_url}?namespace={flow}:", "tmp": tmp_path}
    for worker in workers:
        worker.kill()


async def test_a_worker_killed_mid_node_leaves_the_request_to_another(
    setup: dict[str, Any],
) -> None:
    tmp = setup["tmp"]
    one, two = setup["start"](), setup["start"]()
    await one.ready()
    await two.ready()
    log, marker, gate = tmp / "log", tmp / "marker", tmp / "gate"
    query = urlencode({"log": log, "marker": marker, "gate": gate})
    async with Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                      state_store=setup["state"]) as client:
        rid = await client.submit(b"in", query=query)
        await until(marker.exists)
        victim_pid = int(marker.read_text())
        victim = one if one.process.pid == victim_pid else two
        survivor = two if victim is one else one
        marker.unlink()
        victim.kill()
        gate.touch()  # the next run of b1 goes straight through
        out = await client.wait(rid, timeout=60, poll=0.05)
        info = await client.info(rid)
        history = await client.history(rid)

    assert out == fanout.expected(b"in")
    assert info.status == SUCCEEDED
    ran = executions(log)
    counts = Counter(name for name, _ in ran)
    # b1 ran twice: killed, then again elsewhere; every other node, the join included, once
    assert counts == {"start": 1, "b0": 1, "b1": 2, "b2": 1, "b3": 1, "join": 1}
    assert [pid for name, pid in ran if name == "b1"] == [victim_pid, survivor.process.pid]
    attempts = {e["node"]: e["attempt"] for e in history if e["event"] == "finished"}
    assert attempts["b1"] == 2
    # Another node may have been claimed by the victim just before it died: then its
    # record says attempt 2 although its function ran once (counted above).
    assert set(attempts) == {"start", "b0", "b1", "b2", "b3", "join"}


async def test_a_node_that_keeps_killing_its_worker_fails_the_request_clearly(
    setup: dict[str, Any],
) -> None:
    log = setup["tmp"] / "log"
    query = urlencode({"log": log, "die": "b2"})
    async with Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                      state_store=setup["state"]) as client:
        rid = await client.submit(b"x", query=query)
        # Each run of b2 kills its worker; the third worker finds the hop delivered, or
        # the step started, twice without finishing, and fails the request.
        for _ in range(2):
            worker = setup["start"]("--max-deliveries", "2")
            await until(lambda w=worker: w.process.poll() is not None)
            assert worker.process.returncode == 3
        setup["start"]("--max-deliveries", "2")
        with pytest.raises(faasflow.RequestFailedError) as caught:
            await client.wait(rid, timeout=60, poll=0.05)
    # Branches the dying workers had taken died with them too; whichever came back a
    # third time first fails the request, saying why.
    assert caught.value.node in fanout.BRANCHES
    assert re.search(r"(delivered|started) 2 times and never finished", caught.value.cause)
    assert Counter(name for name, _ in executions(log))["b2"] == 2


async def _status_despite_outage(client: Client, rid: str, timeout: float) -> str:
    """The request's final status, asking again while the store is unreachable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = (await client.info(rid)).status
        except StoreError:
            status = "unknown"
        if status not in ("running", "unknown"):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"request {rid} still running after {timeout}s")


async def test_redis_stopped_mid_flow_and_started_again(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    log, marker, gate = tmp_path / "log", tmp_path / "marker", tmp_path / "gate"
    with redis_server(folder, port, persist=True) as url:
        state = f"{url}?namespace=x:"
        worker = setup["start"]("--max-deliveries", "10", state=state)
        await worker.ready()
        client = Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                        state_store=state)
        await client.start()
        gated = await client.submit(b"g", query=urlencode(
            {"log": log, "marker": marker, "gate": gate}))
        others = [await client.submit(f"r{i}".encode()) for i in range(10)]
        await until(marker.exists)
    # Redis is down while b1 of the gated request runs and the others are in flight.
    gate.touch()
    await asyncio.sleep(1.5)
    try:
        with redis_server(folder, port, persist=True):
            statuses = [await _status_despite_outage(client, rid, 90)
                        for rid in [gated, *others]]
            results = {rid: await client.result(rid) for rid in [gated, *others]}
    finally:
        await client.close()
    assert statuses == [SUCCEEDED] * 11
    assert results[gated] == fanout.expected(b"g")
    for i, rid in enumerate(others):
        assert results[rid] == fanout.expected(f"r{i}".encode())
    assert Counter(name for name, _ in executions(log))["join"] == 1


RESEND_AFTER, SWEEP_INTERVAL = 2.0, 1.0
"""How soon the workers of the NATS restart test send again a hop the restart lost (a
hop published while JetStream was recovering its stream is dropped by the server)."""
STALL = 30.0
"""Seconds without any progress (a node recorded, a request ended) after which a fault
test gives up: far above ack_wait + resend_after + sweep_interval, so only hops that
nobody will ever send again fail it, however slow the machine."""


async def _progress(client: Client, rids: list[str]) -> tuple[int, int]:
    """How far ``rids`` got: their history events, and how many ended."""
    events = ended = 0
    for rid in rids:
        events += len(await client.history(rid))
        ended += (await client.info(rid)).status not in ("running", "paused")
    return events, ended


async def _until_all_end(client: Client, rids: list[str]) -> None:
    """Wait for every request to end, failing once none made progress for :data:`STALL`
    seconds (a deadline on progress, not on the total: a busy runner is slow, not stuck)."""
    seen, since = (-1, -1), time.monotonic()
    while True:
        now = await _progress(client, rids)
        if now[1] == len(rids):
            return
        if now != seen:
            seen, since = now, time.monotonic()
        assert time.monotonic() - since < STALL, (
            f"no progress for {STALL:g} s: {len(rids) - now[1]} of {len(rids)} requests "
            "still running"
        )
        await asyncio.sleep(0.05)


async def test_nats_restarted_mid_flow(setup: dict[str, Any], tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "nats"
    log, marker, gate = tmp_path / "log", tmp_path / "marker", tmp_path / "gate"
    with nats_server(folder, port) as url:
        worker = setup["start"]("--resend-after", f"{RESEND_AFTER:g}",
                                "--sweep-interval", f"{SWEEP_INTERVAL:g}", nats=url)
        await worker.ready()
        client = Client(fanout.define, flow_name=setup["flow"], nats=url,
                        state_store=setup["state"])
        await client.start()
        gated = await client.submit(b"g", query=urlencode(
            {"log": log, "marker": marker, "gate": gate}))
        others = [await client.submit(f"r{i}".encode()) for i in range(10)]
        await until(marker.exists)
    gate.touch()

    async def b1_done() -> bool:
        nodes = (await client.info(gated, nodes=True)).nodes
        return nodes.get("b1", {}).get("state") == "done"

    try:
        # b1 finishes while NATS is down: its successor waits to be published.
        deadline = time.monotonic() + STALL
        while not await b1_done():
            assert time.monotonic() < deadline, "b1 did not finish while NATS was down"
            await asyncio.sleep(0.02)
        with nats_server(folder, port):
            await _until_all_end(client, [gated, *others])
            outs = [await client.result(rid) for rid in [gated, *others]]
    finally:
        await client.close()
    assert outs[0] == fanout.expected(b"g")
    assert outs[1:] == [fanout.expected(f"r{i}".encode()) for i in range(10)]
    assert Counter(name for name, _ in executions(log))["join"] == 1


async def test_a_stopped_worker_finishes_its_running_nodes(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    log, marker, gate = tmp / "log", tmp / "marker", tmp / "gate"
    worker = setup["start"]()
    await worker.ready()
    async with Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                      state_store=setup["state"]) as client:
        rid = await client.submit(b"s", query=urlencode(
            {"log": log, "marker": marker, "gate": gate}))
        await until(marker.exists)
        worker.process.terminate()  # SIGTERM while b1 runs: it finishes, then exits
        await asyncio.sleep(0.3)
        gate.touch()
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        replacement = setup["start"]()
        await replacement.ready()
        out = await client.wait(rid, timeout=60, poll=0.05)
    assert out == fanout.expected(b"s")
    assert Counter(name for name, _ in executions(log))["b1"] == 1


async def _ends(client: Client, rids: list[str], timeout: float) -> dict[str, tuple[str, float]]:
    """Each request's final status and when it ended (wall clock, from its history),
    asking again while the store is away."""
    ends: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    while len(ends) < len(rids):
        assert time.monotonic() < deadline, f"{len(rids) - len(ends)} requests still running"
        for rid in rids:
            if rid in ends:
                continue
            try:
                status = (await client.info(rid)).status
                if status not in ("running", "paused"):
                    history = await client.history(rid)
                    ends[rid] = status, max(e["t"] for e in history if e["kind"] == "request")
            except StoreError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)
    return ends


def _zombie(pid: int) -> bool:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2] == "Z"


ACK_WAIT, LEASE = 2.0, 1.0  # a worker's lease is half its ack_wait
BOUND = ACK_WAIT + LEASE + 5


async def test_workers_killed_and_left_unreaped_hold_no_request(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    # Three workers on this host, 30 fan-out requests of 50 ms nodes; two workers are
    # SIGKILLed mid-flight and not reaped (zombies whose pids still exist). Every
    # request finishes on the third within ack_wait + lease + 5 s of the kill.
    workers = [setup["start"]("--ack-wait", str(ACK_WAIT), same_host=True) for _ in range(3)]
    for worker in workers:
        await worker.ready()
    log = tmp_path / "log"
    async with Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                      state_store=setup["state"]) as client:
        rids = [await client.submit(f"k{i}".encode(),
                                    query=urlencode({"log": log, "pause": 0.05}))
                for i in range(30)]
        await until(lambda: len(executions(log)) >= 40)
        victims = workers[:2]
        for victim in victims:
            os.kill(victim.process.pid, signal.SIGKILL)  # nobody waits for them yet
        killed = time.time()
        ends = await _ends(client, rids, timeout=BOUND + 60)
        for i, rid in enumerate(rids):
            assert await client.result(rid) == fanout.expected(f"k{i}".encode())
    assert all(_zombie(v.process.pid) for v in victims), "the killed workers were reaped"
    assert {status for status, _ in ends.values()} == {SUCCEEDED}
    late = max(ended for _, ended in ends.values()) - killed
    assert late <= BOUND, f"the last request ended {late:.1f}s after the kill (bound {BOUND}s)"
    # Only nodes running in a killed worker ran again; the join of each request once.
    assert Counter(name for name, _ in executions(log))["join"] == 30


async def test_a_store_outage_with_four_workers_delays_requests_within_the_bound(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    # Four workers, 20 fan-out requests of 50 ms nodes; Redis is stopped for 3 s while
    # nodes run and commit. Every request finishes within ack_wait + lease + 5 s of
    # Redis coming back, and every node of every request ran exactly once: a step whose
    # function ran keeps its result until the store takes it.
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    log = tmp_path / "log"
    with redis_server(folder, port, persist=True) as url:
        state = f"{url}?namespace=o:"
        workers = [setup["start"]("--ack-wait", str(ACK_WAIT), state=state) for _ in range(4)]
        for worker in workers:
            await worker.ready()
        client = Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
                        state_store=state)
        await client.start()
        rids = [await client.submit(f"o{i}".encode(),
                                    query=urlencode({"log": log, "pause": 0.05}))
                for i in range(20)]
        await until(lambda: len(executions(log)) >= 30)
    try:
        await asyncio.sleep(3)
        with redis_server(folder, port, persist=True):
            back = time.time()
            ends = await _ends(client, rids, timeout=BOUND + 60)
            results = [await client.result(rid) for rid in rids]
    finally:
        await client.close()
    assert {status for status, _ in ends.values()} == {SUCCEEDED}
    assert results == [fanout.expected(f"o{i}".encode()) for i in range(20)]
    late = max(ended for _, ended in ends.values()) - back
    assert late <= BOUND, f"the last request ended {late:.1f}s after Redis came back"
    runs = Counter(name for name, _ in executions(log))
    assert runs == {name: 20 for name in ["start", *fanout.BRANCHES, "join"]}
