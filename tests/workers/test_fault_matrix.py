"""The fault matrix: each phase of a hop by each fault, on ``faasflow worker`` processes.

Two workers (on this host, so their pids are there to check) run the fan-out flow
``start → b0…b3 → join`` on NATS JetStream and Redis, both private to the test so they
can be stopped. A failpoint (``faasflow._failpoints``) holds the worker that runs ``b1``
at one phase of its hop — claim, call, settle, announce, ack — while the test brings
one fault about:

* ``killed``: the worker is SIGKILLed and left unreaped (a zombie, as under a
  supervisor that has not waited for it yet);
* ``pid reused``: the worker is SIGKILLed, reaped, and its pid given to an unrelated
  process;
* ``store outage``: Redis is stopped for 3 s while the worker goes on;
* ``nats restart``: nats-server is stopped and started again while the worker goes on;
* ``duplicate``: the same hop is delivered again while the first delivery is held.

Every cell asserts what the docs promise: the request succeeds within ack_wait + lease
+ 5 s of the fault ending, and every node's function ran once — except one whose worker
died after calling it, which runs again on the survivor: ``b1`` at the ``settle`` phase
of the killing faults, and the join when the worker was killed while running it (after
``b1``'s hop was handled).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import nats
import orjson
import pytest

from faasflow._failpoints import PHASES
from faasflow.errors import StoreError
from faasflow.workers import Client
from servers import free_port
from servers.nats import nats_server
from servers.redis import redis_server

from .support import FLOWS, WorkerProcess, executions, start_at_pid, until

sys.path.insert(0, str(FLOWS))
import fanout

ACK_WAIT = 2.0
LEASE = ACK_WAIT / 2  # a worker's default
BOUND = ACK_WAIT + LEASE + 5
FAULTS = ["killed", "pid reused", "store outage", "nats restart", "duplicate"]
_flows = itertools.count()


@dataclass
class Bench:
    """Private servers that can be stopped and started again, two workers, a client."""

    tmp: Path
    flow: str = field(default_factory=lambda: f"matrix{next(_flows)}")
    redis_port: int = field(default_factory=free_port)
    nats_port: int = field(default_factory=free_port)
    workers: list[WorkerProcess] = field(default_factory=list)
    strangers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: AbstractContextManager[str] | None = None
    nats: AbstractContextManager[str] | None = None

    @property
    def failpoints(self) -> Path:
        return self.tmp / "failpoints"

    @property
    def state_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0?namespace={self.flow}:"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def start_redis(self) -> None:
        self.redis = redis_server(self.tmp / "redis", self.redis_port, persist=True)
        self.redis.__enter__()

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.__exit__(None, None, None)
        self.redis = None

    def start_nats(self) -> None:
        self.nats = nats_server(self.tmp / "nats", self.nats_port)
        self.nats.__enter__()

    def stop_nats(self) -> None:
        assert self.nats is not None
        self.nats.__exit__(None, None, None)
        self.nats = None

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()  # reaps the zombies too
        for stranger in self.strangers:
            stranger.kill()
            stranger.wait()
        if self.redis is not None:
            self.stop_redis()
        if self.nats is not None:
            self.stop_nats()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(tmp_path)
    for folder in ("redis", "nats", "failpoints"):
        (tmp_path / folder).mkdir()
    with ExitStack() as stack:
        stack.callback(bench.close)
        bench.start_redis()
        bench.start_nats()
        yield bench


@pytest.fixture
async def client(bench: Bench) -> AsyncIterator[Client]:
    async with Client(fanout.define, flow_name=bench.flow, nats=bench.nats_url,
                      state_store=bench.state_url) as client:
        yield client


async def _start_workers(bench: Bench, count: int) -> None:
    env = {"FAASFLOW_FAILPOINTS": str(bench.failpoints)}
    for _ in range(count):
        bench.workers.append(WorkerProcess(
            bench.flow, bench.nats_url, bench.state_url, bench.tmp,
            "--ack-wait", str(ACK_WAIT), same_host=True, env=env,
        ))
    for worker in bench.workers:
        await worker.ready()


async def _hold(bench: Bench, phase: str, node: str) -> dict[str, object]:
    """Arm ``phase`` for ``node``; once a worker holds there, what it wrote."""
    (bench.failpoints / f"{phase}.arm").write_text(node)
    hit = bench.failpoints / f"{phase}.hit"
    await until(hit.exists, timeout=30)
    found: dict[str, object] = orjson.loads(hit.read_bytes())
    return found


async def _recorded(client: Client, rid: str, nodes: list[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        table = (await client.info(rid, nodes=True)).nodes
        if all(table.get(node, {}).get("state") == "done" for node in nodes):
            return
        assert time.monotonic() < deadline, f"{nodes} not all done: {table}"
        await asyncio.sleep(0.02)


def _go(bench: Bench, phase: str) -> None:
    (bench.failpoints / f"{phase}.go").touch()


async def _end(client: Client, rid: str, timeout: float) -> tuple[str, float]:
    """The request's final status and the wall-clock time it ended (from its history),
    asking again while the store is away."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = (await client.info(rid)).status
            if status not in ("running", "paused"):
                history = await client.history(rid)
                return status, max(e["t"] for e in history if e["kind"] == "request")
        except StoreError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {rid} did not end within {timeout:g}s")


async def _bring_about(fault: str, bench: Bench, phase: str, pid: int, hop: str) -> None:
    """Bring ``fault`` about while a worker (``pid``) holds ``hop`` at ``phase``; returns
    when the fault is over."""
    if fault == "killed":
        os.kill(pid, signal.SIGKILL)  # and nobody waits for it: it stays a zombie
        await until(lambda: _state(pid) == "Z", timeout=10)
    elif fault == "pid reused":
        victim = next(w for w in bench.workers if w.process.pid == pid)
        victim.kill()
        bench.strangers.append(start_at_pid(pid, ["sleep", "600"]))
    elif fault == "store outage":
        bench.stop_redis()
        _go(bench, phase)
        await asyncio.sleep(3)
        bench.start_redis()
    elif fault == "nats restart":
        bench.stop_nats()
        _go(bench, phase)
        await asyncio.sleep(1)
        bench.start_nats()
    else:
        connection = await nats.connect(bench.nats_url)
        try:
            await connection.publish(f"faasflow.{bench.flow}", hop.encode())
            await connection.flush()
        finally:
            await connection.close()
        _go(bench, phase)


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def _expected_runs(fault: str, phase: str, ran: list[tuple[str, int]], pid: int) -> Counter[str]:
    runs = Counter({"start": 1, "b0": 1, "b1": 1, "b2": 1, "b3": 1, "join": 1})
    if fault in ("killed", "pid reused"):
        if phase == "settle":
            runs["b1"] = 2  # its worker died after calling it, before recording it
        # Once b1's hop is handled (ack), the join may already run in that worker: if it
        # was killed during the join, the join runs again (its worker died in the call).
        joins = [who for name, who in ran if name == "join"]
        if phase == "ack" and len(joins) == 2 and joins[0] == pid:
            runs["join"] = 2
    return runs


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("phase", PHASES)
async def test_a_fault_at_each_phase_of_a_hop(
    bench: Bench, client: Client, phase: str, fault: str
) -> None:
    await _start_workers(bench, 2)
    log = bench.tmp / "log"
    rid = await client.submit(b"m", query=urlencode({"log": log}))
    held = await _hold(bench, phase, "b1")
    pid, hop = held["pid"], held["hop"]
    # The other branches run beside b1: let them be recorded first, so that the fault
    # strikes b1's hop alone (a busy machine could otherwise kill a worker mid-b2).
    await _recorded(client, rid, ["start", "b0", "b2", "b3"])
    assert isinstance(pid, int) and isinstance(hop, str)
    await _bring_about(fault, bench, phase, pid, hop)
    over = time.time()
    _go(bench, phase)
    status, ended = await _end(client, rid, timeout=BOUND + 30)

    assert status == "succeeded"
    assert await client.result(rid) == fanout.expected(b"m")
    assert ended - over <= BOUND, f"ended {ended - over:.1f}s after the fault, bound {BOUND}s"
    ran = executions(log)
    assert Counter(name for name, _ in ran) == _expected_runs(fault, phase, ran, pid), ran
