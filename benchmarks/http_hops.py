"""Per-node overhead of the HTTP hop path (a chain through the local gateway), beside the
embedded path, in the same run.

Run from the repository root::

    python benchmarks/http_hops.py                  # the full run (about 1.5 minutes)
    python benchmarks/http_hops.py --quick          # a smoke run (few repeats)
    python benchmarks/http_hops.py --json out.json  # also write the raw numbers
    python benchmarks/http_hops.py --combine a.json b.json c.json
                                                    # median of medians of several runs
    python benchmarks/http_hops.py --profile DIR    # py-spy on the servers (pip install py-spy)

What runs, all on this machine's loopback:

* one real ``faasflow gateway`` subprocess (``--port 0``, its defaults otherwise:
  ``--async-concurrency 10``, ``--async-queue-size 1000``), with one
  ``--register NAME=URL`` per flow server;
* one ``faasflow serve`` subprocess per (chain length, store): this very file's
  :func:`serve_define`, which reads the chain length from ``FAASFLOW_BENCH_CHAIN`` in
  ``define``; the default gateway transport (every hop signed with
  ``faasflow_hmac_secret`` and posted to the gateway's async route); state and data in a
  SQLite file in a temporary directory (``http sqlite``) or in memory (``http memory``).

The graph is **chain_N**, N in 1, 2, 5, 10, 50, 100: ``n0 -> n1 -> ... -> n{N-1}``, every
node a pass-through node (no operation: the node hands its input on, so the numbers are
pure engine and transport overhead), on a 100-byte payload.

The contenders, on the same graph, interleaved in the same run:

* ``http sqlite`` / ``http memory``: ``POST {gateway}/function/NAME`` with
  ``X-Faas-Flow-Wait: 60``, so the answer is 200 with the result. Every node is a hop:
  the flow server signs the hop and posts it to ``/async-function/NAME/flow/ID/forward``
  (202), the gateway's queue worker takes it and calls its own synchronous route in
  process, which proxies it over HTTP to the flow server's forward route, which checks
  the signature and runs the node, then settles it and sends the next hop the same way.
  The timer runs from the client's call to the last byte of the answer. A one-node flow
  is a *sync flow* on the HTTP path (it runs inside the caller's request, no hop), so
  N=1 is reported but left out of the fit.
* ``embedded sqlite`` / ``embedded memory``: ``faasflow.Engine`` in this process, on the
  same ``define`` and the same stores (``engine.submit`` then ``engine.wait``, which is
  what ``engine.run`` does), hops through the in-process transport.

Fairness, as in ``benchmarks/embedded.py``:

* Every server and engine is warm: all processes start before the first cell, and each
  cell begins with warm-up requests (checked, then discarded). One HTTP client with
  keep-alive; the gateway's and the flow server's clients keep their connections too.
* Rounds are interleaved: each round times every contender once, in an order rotated from
  round to round, so drifts in machine load spread over all of them.
* In this process ``gc.freeze()`` runs after warm-up and ``gc.collect()`` before each
  timed request; the servers run as they would (their own GC). Logging at WARNING.
* Every output is checked (status 200 and the payload back), outside the timer.
* The cores that *other* processes kept busy during each cell (the machine's busy time
  from ``/proc/stat``, steal included, less the CPU of this process and its servers) are
  printed: the HTTP path needs both cores of a 2-core machine, so it is sensitive to them.

What is reported:

* Median and p95 latency per N; **per-node overhead is the least-squares slope** of the
  medians over N = 2..100 (the two-point slope ``(t(100) - t(2)) / 98`` beside it); the
  intercept is the per-request cost (the client's call, the gateway's proxy, the request
  record, the wait).
* CPU per node, as the least-squares slope of the mean CPU per request over N: for the
  HTTP path, the gateway's and the flow server's (``/proc/PID/task/*/schedstat``, in ns)
  and this process's; for the embedded path, this process's (``time.process_time``).
* ``x embedded``: the HTTP slope over the embedded slope on the same store.
* **One hop, broken down** from the request's history (the flow server's SQLite file,
  read after the cell; the embedded engine's own history): ``node`` is a node's claim to
  its done record, ``hop`` is one node's done record to the next node's claim (settle,
  sign, the async post, the queue, the proxy, the forward route); ``in`` is the client's
  call to the first node's claim, ``out`` the last node's done record to the client
  holding the answer. All are ``time.time()`` on one machine's clock. Not available for
  ``http memory`` (its history lives in the server's memory).
* Round trips on the same servers, after the cells: ``GET /healthz`` on a flow server
  directly with a minimal asyncio client (the floor) and with httpx, the same through the
  gateway (``/function/NAME/healthz``), and ``POST /async-function/NAME`` (the 202 a flow
  waits for when it sends a hop; ``NAME`` is not registered, so the gateway's queue
  worker then logs a 503 in its log, which nobody reads).

``--profile DIR`` runs only ``http sqlite`` at the largest N for 20 s while ``py-spy
record`` samples the gateway and the flow server (200/s, on-CPU samples only), then
prints, per process, the share of samples inside each stage of a hop (inclusive) and the
self time by package, each also in µs of CPU per node (the share times the process's CPU
per node from schedstat). py-spy pauses the process to sample it, so latency is a little
higher while it runs; the shares are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from embedded import _load, format_rows, percentile, source_revision

import faasflow

PAYLOAD = b"x" * 100
CHAIN_SIZES = (1, 2, 5, 10, 50, 100)
FIT_FROM = 2  # a one-node flow is a sync flow on the HTTP path (no hop): not in the fit
STORES = ("sqlite", "memory")
CHAIN_ENV = "FAASFLOW_BENCH_CHAIN"
WAIT_SECONDS = "60"
TARGET_MS_PER_NODE = 5.0
SINK = "bench-sink"  # an async target that is not registered: the 202 alone
HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0
START_TIMEOUT = 90.0

Define = Callable[[faasflow.Workflow, faasflow.Context], None]


# -- the flow --------------------------------------------------------------------------
def _chain(flow: faasflow.Workflow, n: int) -> None:
    dag = flow.dag()
    previous = None
    for index in range(n):
        name = f"n{index}"
        dag.node(name)
        if previous is not None:
            dag.edge(previous, name)
        previous = name


def chain_define(n: int) -> Define:
    """``define`` for a chain of ``n`` pass-through nodes (the embedded contenders)."""

    def define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
        _chain(flow, n)

    return define


def serve_define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
    """The flow served by ``faasflow serve``: the chain length is read from the
    environment, so one file serves every length."""
    _chain(flow, int(os.environ[CHAIN_ENV]))


# -- processes -------------------------------------------------------------------------
def free_port() -> int:
    from faasflow.gateway.flows import free_port as pick

    return pick(HOST)


@dataclass
class Child:
    """A subprocess this benchmark started; its output goes to files in the temp dir."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                text += "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
        return text

    def cpu_ns(self) -> int:
        """CPU time of all the process's threads, in ns (0 once it is gone)."""
        total = 0
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{self.process.pid}/task"):
                with (
                    contextlib.suppress(OSError, ValueError),
                    open(f"{task.path}/schedstat") as handle,
                ):
                    total += int(handle.read().split()[0])
        return total


@dataclass
class FlowServer:
    """One ``faasflow serve`` process: a chain length on a store."""

    n: int
    store: str
    name: str
    port: int
    state_url: str
    db_path: Path | None
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class Cluster:
    """The gateway and the flow servers; every process is stopped on exit, whatever
    happened (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``)."""

    def __init__(self, tmp: Path, sizes: Sequence[int], stores: Sequence[str]) -> None:
        self.tmp = tmp
        self.secret = secrets.token_hex(32)
        self.children: list[Child] = []
        self.gateway: Child | None = None
        self.gateway_url = ""
        self.flows: dict[tuple[int, str], FlowServer] = {}
        for n in sizes:
            for store in stores:
                db = tmp / f"chain{n}.db" if store == "sqlite" else None
                self.flows[n, store] = FlowServer(
                    n=n,
                    store=store,
                    name=f"chain{n}-{store}",
                    port=free_port(),
                    state_url=f"sqlite:///{db}" if db is not None else "memory://",
                    db_path=db,
                )

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, label: str, args: list[str], env: dict[str, str]) -> Child:
        stdout = self.tmp / f"{label}.out"
        stderr = self.tmp / f"{label}.err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "faasflow", *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches this process only,
                # which then stops the children itself, in order.
                start_new_session=True,
            )
        child = Child(label, process, stdout, stderr)
        self.children.append(child)
        return child

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("faasflow_control_token", "authenticate_request", "flow_name"):
            env.pop(name, None)
        env["faasflow_hmac_secret"] = self.secret
        env["secret_mount_path"] = str(self.tmp / "no-secrets")
        return env

    def start(self) -> None:
        registrations: list[str] = []
        for flow in self.flows.values():
            registrations += ["--register", f"{flow.name}={flow.url}"]
        self.gateway = self._spawn(
            "gateway",
            ["gateway", "--host", HOST, "--port", "0", *registrations],
            self._env(),
        )
        self.gateway_url = self._wait_listening(self.gateway)
        for flow in self.flows.values():
            env = self._env()
            env[CHAIN_ENV] = str(flow.n)
            flow.child = self._spawn(
                flow.name,
                [
                    "serve", f"{Path(__file__).resolve()}:serve_define",
                    "--name", flow.name, "--host", HOST, "--port", str(flow.port),
                    "--gateway", self.gateway_url, "--state", flow.state_url,
                ],
                env,
            )  # fmt: skip
        self._wait_healthy()

    def _wait_listening(self, child: Child) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = child.stdout.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("faasflow gateway listening on "):
                    return line.rsplit(" ", 1)[1].strip()
            if child.process.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{child.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"the gateway did not start in {START_TIMEOUT}s:\n{child.tail()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(self.flows.values())
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                flow = waiting[0]
                assert flow.child is not None
                if flow.child.process.poll() is not None:
                    raise RuntimeError(f"{flow.name} exited:\n{flow.child.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{flow.url}/healthz").status_code == 200:
                        waiting.pop(0)
                        continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{flow.name} not healthy:\n{flow.child.tail()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM every child (the flow servers first, then the gateway), wait, then
        SIGKILL what is left; only the processes started here, by their pid."""
        order = [c for c in self.children if c is not self.gateway]
        order += [c for c in self.children if c is self.gateway]
        for child in order:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in order:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                child.process.wait()
        self.children = []


# -- contenders ------------------------------------------------------------------------
@dataclass
class Sample:
    """One timed request: wall seconds, CPU seconds by process, and the wall-clock
    bounds and request id for the breakdown."""

    wall: float
    cpu: dict[str, float]
    sent: float = 0.0
    received: float = 0.0
    rid: str = ""


@dataclass
class Contender:
    """One way of running the chain: ``sample()`` times one request."""

    name: str
    sample: Callable[[], Awaitable[Sample]]
    history: Callable[[Sequence[str]], Awaitable[list[list[dict[str, Any]]]]] | None = None
    open: Callable[[], Awaitable[None]] | None = None
    close: Callable[[], Awaitable[None]] | None = None


def http_contender(flow: FlowServer, cluster: Cluster, client: httpx.AsyncClient) -> Contender:
    gateway, server = cluster.gateway, flow.child
    assert gateway is not None and server is not None
    url = f"{cluster.gateway_url}/function/{flow.name}"
    headers = {"X-Faas-Flow-Wait": WAIT_SECONDS, "Content-Type": "application/octet-stream"}

    async def sample() -> Sample:
        gw0, fl0, cl0 = gateway.cpu_ns(), server.cpu_ns(), time.process_time()
        sent = time.time()
        start = time.perf_counter()
        answer = await client.post(url, content=PAYLOAD, headers=headers)
        wall = time.perf_counter() - start
        received = time.time()
        cpu = {
            "client": time.process_time() - cl0,
            "gateway": (gateway.cpu_ns() - gw0) / 1e9,
            "flow": (server.cpu_ns() - fl0) / 1e9,
        }
        if answer.status_code != 200 or answer.content != PAYLOAD:
            raise AssertionError(
                f"{flow.name}: answer {answer.status_code} {answer.content[:200]!r}"
            )
        return Sample(wall, cpu, sent, received, answer.headers.get("X-Faas-Flow-Reqid", ""))

    history = None
    if flow.db_path is not None:
        db_path = flow.db_path

        async def read_history(rids: Sequence[str]) -> list[list[dict[str, Any]]]:
            return await sqlite_histories(db_path, rids)

        history = read_history
    return Contender(f"http {flow.store}", sample, history)


async def sqlite_histories(path: Path, rids: Sequence[str]) -> list[list[dict[str, Any]]]:
    """The requests' histories, read from a flow server's SQLite file (WAL: the server
    keeps writing meanwhile)."""
    from faasflow.engine import _keys as keys
    from faasflow.stores.sqlite import SqliteStateStore

    store = SqliteStateStore(path)
    try:
        return [
            [json.loads(item) for item in await store.read_list(keys.history(rid))] for rid in rids
        ]
    finally:
        await store.close()


def embedded_contender(n: int, store: str, tmp: Path) -> Contender:
    url = f"sqlite:///{tmp / f'embedded{n}.db'}" if store == "sqlite" else "memory://"
    engine = faasflow.Engine(chain_define(n), state_store=url, flow_name=f"chain{n}")

    async def sample() -> Sample:
        cl0 = time.process_time()
        sent = time.time()
        start = time.perf_counter()
        rid = await engine.submit(PAYLOAD)
        out = await engine.wait(rid)
        wall = time.perf_counter() - start
        received = time.time()
        cpu = {"client": time.process_time() - cl0}
        if out != PAYLOAD:
            raise AssertionError(f"embedded {store}: wrong output ({len(out)} bytes)")
        return Sample(wall, cpu, sent, received, rid)

    async def history(rids: Sequence[str]) -> list[list[dict[str, Any]]]:
        return [await engine.history(rid) for rid in rids]

    return Contender(f"embedded {store}", sample, history, engine.start, engine.close)


# -- measuring -------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Warm-ups, timed repeats by chain length, and the round trips' repeats."""

    warmup: int
    repeats: dict[int, int]
    round_trips: int


FULL_PLAN = Plan(
    warmup=5, repeats={1: 300, 2: 300, 5: 200, 10: 150, 50: 60, 100: 40}, round_trips=300
)
QUICK_PLAN = Plan(warmup=1, repeats={1: 5, 2: 5, 5: 5, 10: 3, 50: 2, 100: 2}, round_trips=10)


@dataclass
class Breakdown:
    """One hop, from the histories of one cell's timed requests (seconds)."""

    entry: list[float] = field(default_factory=list)
    node: list[float] = field(default_factory=list)
    hop: list[float] = field(default_factory=list)
    exit: list[float] = field(default_factory=list)

    def add(self, sample: Sample, history: list[dict[str, Any]], n: int) -> None:
        nodes = {
            e["node"]: e
            for e in history
            if e.get("kind") == "node" and e.get("event") == "finished"
        }
        found = [nodes.get(f"n{i}") for i in range(n)]
        chain = [e for e in found if e is not None and "started" in e]
        if len(chain) != n:
            return
        self.entry.append(chain[0]["started"] - sample.sent)
        self.exit.append(sample.received - chain[-1]["finished"])
        for e in chain:
            self.node.append(e["finished"] - e["started"])
        for before, after in itertools.pairwise(chain):
            self.hop.append(after["started"] - before["finished"])

    def summary(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for name in ("entry", "node", "hop", "exit"):
            values: list[float] = getattr(self, name)
            if values:
                found[f"{name}_median"] = statistics.median(values)
                found[f"{name}_p95"] = percentile(values, 95)
        found["requests"] = len(self.entry)
        return found


@dataclass
class Cell:
    """One chain length: samples and breakdown by contender."""

    samples: dict[str, list[Sample]]
    breakdown: dict[str, dict[str, float]]


async def measure_cell(contenders: list[Contender], n: int, plan: Plan) -> Cell:
    opened: list[Contender] = []
    try:
        for contender in contenders:
            if contender.open is not None:
                await contender.open()
            opened.append(contender)
        for contender in contenders:
            for _ in range(plan.warmup):
                await contender.sample()
        gc.collect()
        gc.freeze()
        samples: dict[str, list[Sample]] = {c.name: [] for c in contenders}
        for round_no in range(plan.repeats[n]):
            shift = round_no % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                gc.collect()
                samples[contender.name].append(await contender.sample())
        gc.unfreeze()
        breakdown: dict[str, dict[str, float]] = {}
        for contender in contenders:
            if contender.history is None:
                continue
            found = samples[contender.name]
            histories = await contender.history([s.rid for s in found])
            parts = Breakdown()
            for sample, history in zip(found, histories, strict=True):
                parts.add(sample, history, n)
            breakdown[contender.name] = parts.summary()
        return Cell(samples, breakdown)
    finally:
        for contender in opened:
            if contender.close is not None:
                await contender.close()
        gc.unfreeze()
        gc.collect()


async def raw_client(
    url: str, path: str
) -> tuple[Callable[[], Awaitable[int]], asyncio.StreamWriter]:
    """A minimal keep-alive HTTP/1.1 GET over asyncio streams: the floor under httpx."""
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def call() -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    return call, writer


async def round_trips(
    cluster: Cluster, client: httpx.AsyncClient, repeats: int
) -> dict[str, float]:
    """Median seconds of plain HTTP calls on the same servers."""
    flow = cluster.flows[min(n for n, _ in cluster.flows), STORES[0]]
    raw, writer = await raw_client(flow.url, "/healthz")

    async def status(call: Awaitable[httpx.Response]) -> int:
        return (await call).status_code

    calls: dict[str, Callable[[], Awaitable[int]]] = {
        "GET flow /healthz, direct, minimal asyncio client": raw,
        "GET flow /healthz, direct, httpx": lambda: status(client.get(f"{flow.url}/healthz")),
        "GET gateway /function/NAME/healthz, httpx": lambda: status(
            client.get(f"{cluster.gateway_url}/function/{flow.name}/healthz")
        ),
        "POST gateway /async-function/NAME (202), httpx": lambda: status(
            client.post(f"{cluster.gateway_url}/async-function/{SINK}", content=PAYLOAD)
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    try:
        for call in calls.values():
            for _ in range(max(3, repeats // 20)):
                await call()
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                code = await call()
                times[name].append(time.perf_counter() - start)
                if code not in (200, 202):
                    raise AssertionError(f"{name}: {code}")
    finally:
        writer.close()
    return {name: statistics.median(found) for name, found in times.items()}


# -- statistics ------------------------------------------------------------------------
@dataclass
class Stats:
    """One contender at one chain length: seconds."""

    median: float
    p95: float
    cpu_mean: dict[str, float]
    n: int

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Stats:
        walls = [s.wall for s in samples]
        return cls(
            median=statistics.median(walls),
            p95=percentile(walls, 95),
            cpu_mean={k: statistics.fmean(s.cpu[k] for s in samples) for k in samples[0].cpu},
            n=len(samples),
        )


Table = dict[str, dict[int, Stats]]
"""contender name -> chain length -> stats."""


def fit(by_size: dict[int, float]) -> tuple[float, float, float]:
    """(least-squares slope, intercept, two-point slope) over chain length, from
    ``FIT_FROM`` nodes on."""
    sizes = sorted(n for n in by_size if n >= FIT_FROM)
    values = [by_size[s] for s in sizes]
    line = statistics.linear_regression(sizes, values)
    two_point = (values[-1] - values[0]) / (sizes[-1] - sizes[0])
    return line.slope, line.intercept, two_point


def wall_fit(by_size: dict[int, Stats]) -> tuple[float, float, float]:
    return fit({n: s.median for n, s in by_size.items()})


def cpu_slope(by_size: dict[int, Stats], process: str) -> float | None:
    if any(process not in s.cpu_mean for s in by_size.values()):
        return None
    return fit({n: s.cpu_mean[process] for n, s in by_size.items()})[0]


# -- reporting -------------------------------------------------------------------------
def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.1f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.2f}"


def chain_report(table: Table) -> str:
    sizes = sorted(next(iter(table.values())))
    header = [
        "chain: contender",
        *(f"N={n} med ms" for n in sizes),
        f"N={sizes[-1]} p95",
        "us/node (LSQ)",
        "2-point",
        "intercept ms",
        "x embedded",
        "CPU us/node: gw",
        "flow",
        "this proc",
    ]
    rows = []
    for name, by_size in table.items():
        slope, intercept, two_point = wall_fit(by_size)
        store = name.split()[-1]
        base = table.get(f"embedded {store}")
        ratio = "-"
        if name.startswith("http") and base is not None:
            ratio = f"{slope / wall_fit(base)[0]:,.1f}x"
        rows.append(
            [
                name,
                *(_ms(by_size[n].median) for n in sizes),
                _ms(by_size[sizes[-1]].p95),
                _us(slope),
                _us(two_point),
                _ms(intercept),
                ratio,
                _us(cpu_slope(by_size, "gateway")),
                _us(cpu_slope(by_size, "flow")),
                _us(cpu_slope(by_size, "client")),
            ]
        )
    return format_rows(header, rows)


def breakdown_report(breakdown: dict[str, dict[str, float]], n: int) -> str:
    header = [
        f"one hop, N={n}: contender",
        "in ms",
        "node us",
        "hop us",
        "hop p95 us",
        "node+hop us",
        "out ms",
        "requests",
    ]
    rows = []
    for name, found in breakdown.items():
        if "hop_median" not in found:
            continue
        rows.append(
            [
                name,
                _ms(found["entry_median"]),
                _us(found["node_median"]),
                _us(found["hop_median"]),
                _us(found["hop_p95"]),
                _us(found["node_median"] + found["hop_median"]),
                _ms(found["exit_median"]),
                f"{found['requests']:.0f}",
            ]
        )
    return format_rows(header, rows)


def round_trip_report(trips: dict[str, float]) -> str:
    return format_rows(
        ["round trip (median)", "us"], [[name, _us(value)] for name, value in trips.items()]
    )


def targets_report(table: Table) -> str:
    lines = [f"target: <= {TARGET_MS_PER_NODE:g} ms/node on the HTTP hop path (loopback)"]
    for name, by_size in table.items():
        if not name.startswith("http"):
            continue
        slope = wall_fit(by_size)[0]
        verdict = "meets" if slope * 1e3 <= TARGET_MS_PER_NODE else "MISSES"
        lines.append(f"  {name:<12} {slope * 1e3:6.2f} ms/node [{verdict}]")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "faasflow": faasflow.__version__,
        "revision": source_revision(),
        "packages": {
            name: _version(name)
            for name in ("uvicorn", "starlette", "httpx", "h11", "httptools", "uvloop", "orjson")
        },
        "sqlite": sqlite3.sqlite_version,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def print_report(
    meta: dict[str, Any],
    table: Table,
    breakdown: dict[str, dict[str, float]],
    trips: dict[str, float],
) -> None:
    revision = meta.get("revisions") or meta.get("revision")
    packages = "  ".join(f"{k} {v}" for k, v in meta["packages"].items())
    print(
        f"python {meta['python']}  faasflow {meta['faasflow']} ({revision})  "
        f"sqlite {meta['sqlite']}  cpus {meta['cpu_count']}  {meta['platform']}"
    )
    print(packages)
    print(
        f"1-min load average at start {_load(meta.get('loadavg_start'))}, "
        f"at end {_load(meta.get('loadavg_end'))}"
    )
    other = meta.get("other_load")
    if other:
        runs = other if isinstance(other, list) else [other]
        print(
            "cores kept busy by other processes during the cells (mean, max): "
            + " / ".join(
                f"{statistics.fmean(r.values()):.2f}, {max(r.values()):.2f}" for r in runs if r
            )
        )
    if "runs" in meta:
        print(f"median of medians (and of p95s, CPU means, breakdowns) over {meta['runs']} runs")
    print()
    print(chain_report(table))
    print()
    top = max(next(iter(table.values())))
    print(breakdown_report(breakdown, top))
    print()
    print(round_trip_report(trips))
    print()
    print(targets_report(table))


# -- raw numbers in and out ------------------------------------------------------------
def to_json(meta: dict[str, Any], cells: dict[int, Cell], trips: dict[str, float]) -> str:
    results: dict[str, Any] = {}
    for n, cell in cells.items():
        for name, samples in cell.samples.items():
            results.setdefault(name, {})[str(n)] = {
                **asdict(Stats.of(samples)),
                "wall": [s.wall for s in samples],
                "cpu": [s.cpu for s in samples],
                "breakdown": cell.breakdown.get(name, {}),
            }
    return json.dumps({"meta": meta, "results": results, "round_trips": trips}, indent=1)


def from_json(doc: dict[str, Any]) -> tuple[Table, dict[str, dict[str, float]]]:
    table: Table = {}
    breakdown: dict[str, dict[str, float]] = {}
    for name, by_size in doc["results"].items():
        table[name] = {
            int(n): Stats(c["median"], c["p95"], c["cpu_mean"], c["n"]) for n, c in by_size.items()
        }
        top = max(by_size, key=int)
        if by_size[top]["breakdown"]:
            breakdown[name] = by_size[top]["breakdown"]
    return table, breakdown


def combine(
    paths: Sequence[Path],
) -> tuple[dict[str, Any], Table, dict[str, dict[str, float]], dict[str, float]]:
    """Median of the medians (and of the p95s, CPU means, breakdowns) of several runs."""
    docs = [json.loads(p.read_text()) for p in paths]
    runs = [from_json(d) for d in docs]
    table: Table = {}
    for name, by_size in runs[0][0].items():
        table[name] = {}
        for n in by_size:
            found = [r[0][name][n] for r in runs]
            table[name][n] = Stats(
                median=statistics.median(s.median for s in found),
                p95=statistics.median(s.p95 for s in found),
                cpu_mean={
                    k: statistics.median(s.cpu_mean[k] for s in found) for k in found[0].cpu_mean
                },
                n=sum(s.n for s in found),
            )
    breakdown = {
        name: {k: statistics.median(r[1][name][k] for r in runs) for k in parts}
        for name, parts in runs[0][1].items()
    }
    trips = {
        name: statistics.median(d["round_trips"][name] for d in docs)
        for name in docs[0]["round_trips"]
    }
    meta = dict(docs[0]["meta"])
    meta["runs"] = len(docs)
    meta["revisions"] = ", ".join(d["meta"].get("revision", "?") for d in docs)
    meta["loadavg_start"] = [d["meta"].get("loadavg_start") for d in docs]
    meta["loadavg_end"] = [d["meta"].get("loadavg_end") for d in docs]
    meta["other_load"] = [d["meta"].get("other_load", {}) for d in docs]
    return meta, table, breakdown, trips


# -- profiling -------------------------------------------------------------------------
PROFILE_SECONDS = 20
PROFILE_RATE = 200

PROFILE_GROUPS: tuple[tuple[str, str], ...] = (
    ("(h11/", "h11 (HTTP/1.1, pure Python)"),
    ("(httptools/", "httptools"),
    ("(httpcore/", "httpcore (httpx's connections)"),
    ("(httpx/", "httpx"),
    ("(uvicorn/", "uvicorn"),
    ("(starlette/", "starlette"),
    ("(anyio/", "anyio"),
    ("(faasflow/gateway/", "faasflow.gateway"),
    ("(faasflow/server/", "faasflow.server (routes, signing)"),
    ("(faasflow/transports/", "faasflow.transports"),
    ("(faasflow/stores/", "faasflow.stores (with sqlite3's C calls)"),
    ("(faasflow/engine/", "faasflow.engine"),
    ("(faasflow/", "faasflow (other)"),
    ("(selectors.py", "event loop: epoll"),
    ("(asyncio/", "asyncio (loop, transports, socket calls)"),
    ("(uvloop/", "asyncio (loop, transports, socket calls)"),
    ("(contextlib.py", "stdlib (contextlib, email, http, json, ...)"),
    ("(email/", "stdlib (contextlib, email, http, json, ...)"),
    ("(http/", "stdlib (contextlib, email, http, json, ...)"),
    ("(urllib/", "stdlib (contextlib, email, http, json, ...)"),
    ("(json/", "stdlib (contextlib, email, http, json, ...)"),
    ("(logging/", "logging"),
)

_PARSE = ("H11Protocol.data_received (", "HttpToolsProtocol.data_received (")
_LOOP = ("EpollSelector.select (",)

PROFILE_MARKERS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "gateway": (
        ("accept a hop: POST /async-function, 202", ("Gateway._enqueue (",)),
        ("queue worker: /function/NAME in process (httpx ASGITransport)",
         ("Gateway._run_queued (",)),
        ("  the route /function/NAME (Gateway._invoke)", ("Gateway._invoke (",)),
        ("    the proxy's httpx call to the flow (Proxy._send_http)", ("Proxy._send_http (",)),
        ("  relaying the flow's answer (_relay)", ("_relay (",)),
        ("uvicorn: parsing incoming bytes", _PARSE),
        ("event loop: epoll", _LOOP),
    ),
    "flow": (
        ("forward route (_FlowServer._forward)", ("_FlowServer._forward (",)),
        ("  signature check (open_hop)", ("open_hop (",)),
        ("  engine step (Executor.handle)", ("Executor.handle (",)),
        ("    sending the next hop (OpenFaaSTransport.send)", ("OpenFaaSTransport.send (",)),
        ("      of which httpx (AsyncClient.post)", ("AsyncClient.post (",)),
        ("  define + compile per hop (build_flow)", ("build_flow (",)),
        ("SQLite store calls, anywhere", ("SqliteStateStore.", "SqliteDataStore.")),
        ("new request route (_FlowServer._new_request)", ("_FlowServer._new_request (",)),
        ("uvicorn: parsing incoming bytes", _PARSE),
        ("event loop: epoll", _LOOP),
    ),
}  # fmt: skip


def profile_group(frame: str) -> str:
    """The package of one py-spy frame, ``function (path/file.py:line)``."""
    for needle, group in PROFILE_GROUPS:
        if needle in frame:
            return group
    return "other"


def read_raw_profile(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` (collapsed stacks): ``(frames, samples)``, root first."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def profile_report(label: str, stacks: list[tuple[list[str], int]], cpu_per_node: float) -> str:
    """Where one process's on-CPU samples are: inclusive shares of the stages of a hop,
    then self time by package; in % of samples and in us of CPU per node."""
    total = sum(count for _, count in stacks) or 1
    inclusive: dict[str, int] = {}
    by_group: dict[str, int] = {}
    for frames, count in stacks:
        for name, prefixes in PROFILE_MARKERS[label]:
            if any(frame.startswith(prefixes) for frame in frames):
                inclusive[name] = inclusive.get(name, 0) + count
        group = profile_group(frames[-1])
        by_group[group] = by_group.get(group, 0) + count

    def row(name: str, found: int) -> list[str]:
        return [name, f"{100 * found / total:.1f}", _us(cpu_per_node * found / total)]

    stages = [row(name, inclusive.get(name, 0)) for name, _ in PROFILE_MARKERS[label]]
    groups = [row(g, n) for g, n in sorted(by_group.items(), key=lambda kv: -kv[1])]
    return "\n\n".join(
        [
            format_rows([f"{label}: stage (inclusive)", "%", "us/node"], stages),
            format_rows([f"{label}: self time by package", "%", "us/node"], groups),
        ]
    )


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


def start_spy(child: Child, directory: Path, label: str) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``child`` for ``PROFILE_SECONDS``: raw stacks in ``directory``."""
    command = [
        py_spy(), "record", "--pid", str(child.process.pid),
        "--duration", str(PROFILE_SECONDS), "--rate", str(PROFILE_RATE),
        "--format", "raw", "--output", str(directory / f"{label}.txt"),
    ]  # fmt: skip
    with open(directory / f"{label}.py-spy.log", "wb") as log:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)


async def run_profile(cluster: Cluster, n: int, directory: Path) -> tuple[list[Sample], int]:
    """Drive ``http sqlite`` requests while py-spy samples the gateway and the flow."""
    flow = cluster.flows[n, "sqlite"]
    assert cluster.gateway is not None and flow.child is not None
    targets = {"gateway": cluster.gateway, "flow": flow.child}
    samples: list[Sample] = []
    spies: list[subprocess.Popen[bytes]] = []
    async with httpx.AsyncClient(timeout=120.0) as client:
        contender = http_contender(flow, cluster, client)
        for _ in range(5):
            await contender.sample()
        try:
            for label, child in targets.items():
                spies.append(start_spy(child, directory, label))
            while any(spy.poll() is None for spy in spies):
                samples.append(await contender.sample())
        finally:
            for spy in spies:
                if spy.poll() is None:
                    spy.terminate()
                spy.wait()
    return samples, sum(spy.returncode != 0 for spy in spies)


def profile_main(directory: Path) -> int:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    n = max(CHAIN_SIZES)
    with (
        tempfile.TemporaryDirectory(prefix="faasflow-http-") as tmp,
        Cluster(Path(tmp), [n], ["sqlite"]) as cluster,
    ):
        samples, failed = asyncio.run(run_profile(cluster, n, directory))
    if failed:
        print(f"py-spy failed: see {directory}/*.py-spy.log", file=sys.stderr)
        return 1
    nodes = len(samples) * n
    print(
        f"chain {n}, http sqlite, {len(samples)} requests while py-spy sampled "
        f"{PROFILE_RATE}/s for {PROFILE_SECONDS}s: median "
        f"{statistics.median(s.wall for s in samples) * 1e3:.1f} ms "
        f"({statistics.median(s.wall for s in samples) / n * 1e3:.2f} ms/node)"
    )
    for label in ("gateway", "flow"):
        cpu = sum(s.cpu[label] for s in samples) / nodes
        print()
        print(f"{label}: {cpu * 1e6:,.0f} us CPU per node (schedstat)")
        print(profile_report(label, read_raw_profile(directory / f"{label}.txt"), cpu))
    return 0


# -- main ------------------------------------------------------------------------------
def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far, all cores (``/proc/stat``;
    hypervisor steal counts as busy)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu(cluster: Cluster) -> float:
    """CPU seconds used by this process and the servers it started."""
    return time.process_time() + sum(c.cpu_ns() for c in cluster.children) / 1e9


async def run_all(
    plan: Plan, cluster: Cluster, tmp: Path, sizes: Sequence[int]
) -> tuple[dict[int, Cell], dict[str, float], dict[str, float]]:
    """Every cell, then the round trips; also the cores other processes kept busy
    during each cell (the machine's busy time less this benchmark's)."""
    cells: dict[int, Cell] = {}
    others: dict[str, float] = {}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        for n in sizes:
            started, busy, own = time.perf_counter(), machine_busy(), own_cpu(cluster)
            contenders = [http_contender(cluster.flows[n, s], cluster, client) for s in STORES]
            contenders += [embedded_contender(n, s, tmp) for s in STORES]
            cells[n] = await measure_cell(contenders, n, plan)
            wall = time.perf_counter() - started
            other = (machine_busy() - busy) - (own_cpu(cluster) - own)
            others[str(n)] = max(0.0, other / wall)
            print(
                f"  measured chain {n}: {wall:.1f}s; other processes kept "
                f"{others[str(n)]:.2f} cores busy",
                file=sys.stderr,
            )
        trips = await round_trips(cluster, client, plan.round_trips)
    return cells, trips, others


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the raw numbers here")
    parser.add_argument(
        "--combine", type=Path, nargs="+", metavar="RUN",
        help="print the median of medians of these --json files instead of measuring",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="instead: sample the gateway and one flow server with py-spy (raw stacks in DIR)",
    )  # fmt: skip
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM: unwind like Ctrl-C, so every child is stopped on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faasflow").setLevel(logging.WARNING)
    if args.combine:
        print_report(*combine(args.combine))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    if args.profile:
        return profile_main(args.profile)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    meta = environment()
    meta["plan"] = asdict(plan)
    sizes = list(CHAIN_SIZES)
    with (
        tempfile.TemporaryDirectory(prefix="faasflow-http-") as tmp,
        Cluster(Path(tmp), sizes, STORES) as cluster,
    ):
        meta["gateway_url"] = cluster.gateway_url
        cells, trips, others = asyncio.run(run_all(plan, cluster, Path(tmp), sizes))
    meta["other_load"] = others
    meta["loadavg_end"] = os.getloadavg()
    table: Table = {}
    for n, cell in cells.items():
        for name, samples in cell.samples.items():
            table.setdefault(name, {})[n] = Stats.of(samples)
    breakdown = cells[max(sizes)].breakdown
    print_report(meta, table, breakdown, trips)
    if args.json:
        args.json.write_text(to_json(meta, cells, trips))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process started here was stopped", file=sys.stderr)
        sys.exit(130)
