"""Chaos soak: requests on ``faasflow worker`` processes while workers, the store and the
broker fail at random. Anyone can run it; it starts everything it needs::

    python benchmarks/chaos.py --store redis                # 300 requests, 3 workers, 60 s
    python benchmarks/chaos.py --store postgresql --seconds 120 --requests 600
    python benchmarks/chaos.py --store redis --seed 7 --json out.json

What runs: a private ``nats-server -js`` and a private store — ``redis-server`` with its
append-only file synced on every write, or a PostgreSQL cluster (``initdb``; ``fsync``
on) — that hold state and data; ``--workers`` worker processes, each going by a host
name of its own (so a dead worker's claims end by their leases, as between machines)
and restarted a second after being killed, as a supervisor would; and a client in this
process that submits ``--requests`` fan-out/join requests (``benchmarks/chaos_flow.py``:
``start → b0…b3 → join``, ``--node-seconds`` per node, 20 ms by default) evenly over
``--seconds``.

Meanwhile, one fault at a time, an exponentially distributed pause apart (mean
``--every`` seconds): a random worker SIGKILLed (half the faults), the store SIGKILLed
and started again 0.5 to 3 s later, or nats-server SIGKILLed and started again 0.5 to 2 s later.
The client retries what the store or the broker refused (the same request id).

Then it waits up to ``--grace`` seconds for every request to end and prints:

* how many requests succeeded (with the right result), failed, or are still running
  (stuck);
* duplicated effects: node functions that ran more than once for a request, by cause —
  the worker running it was killed (the one duplication the engine allows), a store
  outage, a broker restart, or none of these (a bug);
* time to recover: for each request that a fault overlapped, from the end of the last
  such fault until the request ended; p50, p99 and max, next to the bound the docs
  promise (ack_wait + lease + 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

import chaos_flow
from distributed_common import (
    HOST,
    free_port,
    require_binary,
    stop_process,
    wait_until_ready,
)

import faasflow
from faasflow.errors import DuplicateRequestError, StoreError, TransportError
from faasflow.workers import Client

FLOW = "chaos"
FLOW_FILE = Path(__file__).resolve().parent / "chaos_flow.py"


# -- servers that can crash and come back ------------------------------------------------
class Service(Protocol):
    url: str

    def start(self) -> None: ...

    def crash(self) -> None: ...

    def close(self) -> None: ...


def _port_answers(port: int) -> bool:
    import socket

    with socket.create_connection((HOST, port), timeout=0.5):
        return True


@dataclass
class Daemon:
    """A server process started again with the same arguments after each crash."""

    argv: list[str]
    port: int
    what: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        wait_until_ready(self.process, lambda: _port_answers(self.port), self.what)

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class RedisService:
    """``redis-server``, every write in its append-only file before it answers."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.url = f"redis://{HOST}:{port}/0"
        self.daemon = Daemon(
            [require_binary("redis-server", "redis-server"), "--port", str(port), "--bind",
             HOST, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
             str(workdir)],
            port, "redis-server",
        )  # fmt: skip
        self.start, self.crash, self.close = self.daemon.start, self.daemon.crash, self.daemon.close


class NatsService:
    """``nats-server -js``, its streams in a folder."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.url = f"nats://{HOST}:{port}"
        self.daemon = Daemon(
            [require_binary("nats-server", "nats-server"), "-js", "-a", HOST, "-p", str(port),
             "-sd", str(workdir)],
            port, "nats-server",
        )  # fmt: skip
        self.start, self.crash, self.close = self.daemon.start, self.daemon.crash, self.daemon.close


class PostgresService:
    """A PostgreSQL cluster of its own (``initdb``, ``pg_ctl``); a crash is ``pg_ctl stop
    -m immediate``. As root, its programs run as the ``postgres`` user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faasflow-chaos-pg-"))
        self.port = free_port()
        self.url = f"postgresql://chaos@{HOST}:{self.port}/chaos"
        pg_ctl = shutil.which("pg_ctl") or next(
            iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))), None
        )
        if pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = Path(os.path.realpath(pg_ctl)).parent
        self.sudo = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.sudo:
            shutil.chown(self.root, "postgres", "postgres")
        self.created = False

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.sudo, str(self.bindir / program), *args], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        if not self.created:
            self._run("initdb", "-D", str(self.root / "data"), "-U", "chaos", "--auth",
                      "trust", "--no-sync")
        options = (f"-c listen_addresses={HOST} -c port={self.port} "
                   f"-c unix_socket_directories={self.root} -c max_connections=300")
        self._run("pg_ctl", "start", "-w", "-D", str(self.root / "data"), "-l",
                  str(self.root / "log"), "-o", options)
        if not self.created:
            self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", "chaos", "chaos")
            self.created = True

    def crash(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.root / "data"))

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.crash()
        shutil.rmtree(self.root, ignore_errors=True)


# -- workers --------------------------------------------------------------------------------
class Workers:
    """``count`` worker processes, each on a "host" of its own; a killed one is started
    again after ``restart_after`` seconds."""

    def __init__(self, count: int, nats: str, store: str, log: Path, ack_wait: float,
                 folder: Path, node_seconds: float) -> None:
        self.nats, self.store, self.log, self.ack_wait, self.folder = (
            nats, store, log, ack_wait, folder)
        self.node_seconds = node_seconds
        self.processes: list[subprocess.Popen[bytes]] = []
        self.started = 0
        for _ in range(count):
            self.processes.append(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        env = dict(os.environ, FAASFLOW_HOST=f"chaos-{self.started}", CHAOS_LOG=str(self.log),
                   CHAOS_NODE_SECONDS=str(self.node_seconds))
        err = (self.folder / f"worker-{self.started}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "faasflow", "worker", str(FLOW_FILE), "--name", FLOW,
             "--nats", self.nats, "--state", self.store, "--data-store", self.store,
             "--ack-wait", str(self.ack_wait), "--concurrency", "16"],
            stdout=subprocess.DEVNULL, stderr=err, env=env,
        )  # fmt: skip

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        for number in range(1, self.started + 1):
            path = self.folder / f"worker-{number}.log"
            while b"ready" not in path.read_bytes():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {number} not ready: {path.read_text()[-2000:]}")
                await asyncio.sleep(0.05)

    def kill(self, index: int) -> int:
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait()
        return process.pid

    def restart(self, index: int) -> None:
        self.processes[index] = self._spawn()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the run ----------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str  # "worker killed", "store outage", "broker restart"
    start: float
    end: float
    pid: int | None = None


@dataclass
class Outcome:
    settings: dict[str, object]
    succeeded: int = 0
    wrong_result: int = 0
    failed: int = 0
    stuck: int = 0
    submit_retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    recovery: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def submit_all(client: Client, count: int, seconds: float, outcome: Outcome,
                     submitted: dict[str, float]) -> None:
    begin = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, begin + i * seconds / count - time.monotonic()))
        rid = f"c{i:06d}"
        submitted[rid] = time.time()
        while True:
            try:
                await client.submit(f"r{i}".encode(), request_id=rid)
                break
            except DuplicateRequestError:
                break  # an earlier try landed, its answer was lost
            except (StoreError, TransportError):
                outcome.submit_retries += 1
                await asyncio.sleep(0.2)


async def cause_chaos(until: float, every: float, rng: random.Random, store: Service,
                      broker: Service, workers: Workers, faults: list[Fault]) -> None:
    while True:
        await asyncio.sleep(rng.expovariate(1 / every))
        if time.monotonic() >= until:
            return
        roll = rng.random()
        start = time.time()
        if roll < 0.5:
            index = rng.randrange(len(workers.processes))
            pid = workers.kill(index)
            faults.append(Fault("worker killed", start, time.time(), pid))
            await asyncio.sleep(1.0)
            workers.restart(index)
        elif roll < 0.75:
            await asyncio.to_thread(store.crash)
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await asyncio.to_thread(store.start)
            faults.append(Fault("store outage", start, time.time()))
        else:
            await asyncio.to_thread(broker.crash)
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await asyncio.to_thread(broker.start)
            faults.append(Fault("broker restart", start, time.time()))


async def await_ends(client: Client, rids: list[str], grace: float
                     ) -> dict[str, tuple[str, float]]:
    """Each request's status and, once ended, its end time (from its history)."""
    ends: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + grace
    while len(ends) < len(rids) and time.monotonic() < deadline:
        for rid in rids:
            if rid in ends:
                continue
            try:
                info = await client.info(rid)
                if info.status in ("running", "paused"):
                    continue
                history = await client.history(rid)
                ends[rid] = info.status, max(e["t"] for e in history if e["kind"] == "request")
            except (StoreError, faasflow.UnknownRequestError):
                continue
        await asyncio.sleep(0.5)
    return ends


def executions(log: Path) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """``(request, node)`` → ``(start time, pid)`` of each run of its function."""
    runs: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, rid, node, pid, stamp = line.split()
        if kind == "B":
            runs[(rid, node)].append((float(stamp), int(pid)))
    return runs


def cause_of(run: tuple[float, int], next_start: float, faults: list[Fault]) -> str:
    """Why a function that ran at ``run`` had to run again (at ``next_start``)."""
    started, pid = run
    for fault in faults:
        if fault.kind == "worker killed" and fault.pid == pid and fault.start >= started:
            return "worker killed"
    for kind in ("store outage", "broker restart"):
        if any(f.kind == kind and f.start <= next_start and f.end >= started for f in faults):
            return kind
    return "unexplained"


def analyse(outcome: Outcome, submitted: dict[str, float], ends: dict[str, tuple[str, float]],
            runs: dict[tuple[str, str], list[tuple[float, int]]], faults: list[Fault]) -> None:
    outcome.faults = Counter(f.kind for f in faults)
    for rid, began in submitted.items():
        if rid not in ends:
            outcome.stuck += 1
            continue
        status, ended = ends[rid]
        if status != "succeeded":
            outcome.failed += 1
            continue
        overlapping = [f.end for f in faults if f.start < ended and f.end > began]
        finished_after = [end for end in overlapping if end <= ended]
        if finished_after:
            outcome.recovery.append(ended - max(finished_after))
    for (_, _), starts in runs.items():
        ordered = sorted(starts)
        for earlier, later in itertools.pairwise(ordered):
            outcome.duplicates[cause_of(earlier, later[0], faults)] += 1


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def report(outcome: Outcome) -> str:
    s = outcome.settings
    lines = [
        f"chaos soak: {s['requests']} requests on {s['workers']} workers, store {s['store']}, "
        f"{s['seconds']} s of faults (one every ~{s['every']} s), {s['node_seconds']} s per node, "
        f"ack_wait {s['ack_wait']} s, "
        f"lease {s['lease']} s, seed {s['seed']}, commit {s['commit']}",
        "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.faults.items())),
        f"requests: succeeded {outcome.succeeded}, wrong result {outcome.wrong_result}, "
        f"failed {outcome.failed}, stuck {outcome.stuck} "
        f"(client retried {outcome.submit_retries} submissions)",
        "duplicated effects: " + (", ".join(
            f"{k} {v}" for k, v in sorted(outcome.duplicates.items())) or "none"),
        f"time to recover ({len(outcome.recovery)} requests a fault overlapped): "
        f"p50 {percentile(outcome.recovery, 50):.2f} s, "
        f"p99 {percentile(outcome.recovery, 99):.2f} s, "
        f"max {max(outcome.recovery, default=0.0):.2f} s (bound {s['bound']:.0f} s)",
    ]
    lines += [f"  {failure}" for failure in outcome.failures[:10]]
    return "\n".join(lines)


async def soak(args: argparse.Namespace, folder: Path) -> Outcome:
    rng = random.Random(args.seed)
    lease = args.ack_wait / 2
    outcome = Outcome(settings={
        "store": args.store, "requests": args.requests, "workers": args.workers,
        "seconds": args.seconds, "every": args.every, "ack_wait": args.ack_wait,
        "lease": lease, "seed": args.seed, "node_seconds": args.node_seconds,
        "bound": args.ack_wait + lease + 5,
        "commit": _commit(),
    })
    broker = NatsService(folder / "nats")
    store: Service = RedisService(folder) if args.store == "redis" else PostgresService()
    services: list[Service] = []
    workers: Workers | None = None
    try:
        for service in (broker, store):
            service.start()
            services.append(service)
        log = folder / "effects.log"
        workers = Workers(args.workers, broker.url, store.url, log, args.ack_wait, folder,
                          args.node_seconds)
        await workers.ready()
        submitted: dict[str, float] = {}
        faults: list[Fault] = []
        async with Client(chaos_flow.define, flow_name=FLOW, nats=broker.url,
                          state_store=store.url, data_store=store.url) as client:
            until = time.monotonic() + args.seconds
            await asyncio.gather(
                submit_all(client, args.requests, args.seconds, outcome, submitted),
                cause_chaos(until, args.every, rng, store, broker, workers, faults),
            )
            ends = await await_ends(client, list(submitted), args.grace)
            for rid, (status, _) in ends.items():
                if status == "succeeded":
                    index = int(rid[1:])
                    if await client.result(rid) == chaos_flow.expected(f"r{index}".encode()):
                        outcome.succeeded += 1
                    else:
                        outcome.wrong_result += 1
                else:
                    info = await client.info(rid)
                    outcome.failures.append(f"{rid} {status}: {info.failure}")
        analyse(outcome, submitted, ends, executions(log), faults)
        outcome.failed = len([1 for status, _ in ends.values() if status != "succeeded"])
        outcome.stuck = len(submitted) - len(ends)
        return outcome
    finally:
        if workers is not None:
            workers.close()
        for service in services:
            service.close()


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


def main() -> None:
    # The client's own reconnection notices would drown the report.
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["redis", "postgresql"], default="redis")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--every", type=float, default=4.0, help="mean seconds between faults")
    parser.add_argument("--ack-wait", type=float, default=4.0)
    parser.add_argument("--node-seconds", type=float, default=0.02,
                        help="how long each node's function takes")
    parser.add_argument("--grace", type=float, default=120.0,
                        help="seconds to wait for the last requests once faults stop")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faasflow-chaos-") as tmp:
        folder = Path(tmp)
        (folder / "nats").mkdir()
        outcome = asyncio.run(soak(args, folder))
    print(report(outcome))
    if args.json:
        figures = {**vars(outcome), "faults": dict(outcome.faults),
                   "duplicates": dict(outcome.duplicates)}
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
