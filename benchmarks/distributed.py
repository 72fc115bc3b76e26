"""faasflow's distributed runtime (NATS JetStream workers, Redis state) side by side with
Celery (Redis broker, Redis results), on the same work, workers and machine.

Run from the repository root::

    python benchmarks/distributed.py                   # the full run, every side found
    python benchmarks/distributed.py --quick           # a smoke run (few repeats)
    python benchmarks/distributed.py --sides celery    # one side only
    python benchmarks/distributed.py --json out.json   # also write the raw numbers
    python benchmarks/distributed.py --combine a.json b.json c.json
                                                       # median of medians of several runs

The sides (``--sides``, a comma-separated list; by default every side whose module is
in ``benchmarks/``):

* ``celery``: ``celery_side.CelerySide`` (its docstring, and ``celery_tasks.py``'s, give
  the canvas and the configuration: solo pool, late acks, Redis broker and results);
* ``faasflow``: ``faasflow_side.FaasflowSide`` from ``benchmarks/faasflow_side.py``:
  ``faasflow worker`` processes taking hops from NATS JetStream, state in Redis.

A side is anything that follows :class:`Side`: it starts its own private servers and
``--workers`` worker processes (2 by default) in ``start``, and each measurement method
runs one request (or one batch) and returns the answer; the harness times the call, from
the client's submit to the answer in hand, and checks the answer against the expected
bytes outside the timer, so a broken run fails instead of reporting a fast number.

The work (``distributed_common.py``; every node appends one byte to its input):

* **chain_N**, N in 2, 10, 25, 50, 100: per-node cost is the **least-squares slope** of
  the median latency over N (the two-point slope beside it); the intercept is the fixed
  per-request cost (submit, the answer's way back).
* **fanout_W**, W in 10, 100, 1000: W parallel nodes on the same input, then an
  aggregator that concatenates them in order (Celery: ``chord(group(...), aggregate)``).
* **foreach_W**, W in 10, 100, 1000: a split step turns the input into W items at run
  time, each item runs a node, an aggregator joins them in key order (Celery: a task
  that replaces itself with a chord built from its input).
* **concurrent**: 200 chain_5 workflows submitted at once; workflows/s = 200 / the time
  until the last answer.
* **soak**: ``--soak`` requests (10,000; ``--quick`` 500) of chain ``--soak-length``
  (5), in batches of 200 submitted at once, after every other measurement; the RSS of
  each worker process (with its children) before, along the way and after: the
  "memory flat over 10,000 requests" check.

Fairness:

* Every side starts before the first cell and is warm: each cell begins with checked,
  untimed warm-up requests on every side.
* Rounds are interleaved: each round times every side once, in an order rotated from
  round to round, so that drifts in machine load spread over the sides. The other
  side's processes are idle meanwhile (blocked on their broker). The soak runs one side
  at a time.
* ``gc.collect()`` runs in this process before each timed request, outside the timer.
* CPU per request, outside the timer: this process, plus the side's workers (with their
  children) and servers, from psutil; and the cores that *other* processes kept busy
  during each cell (``/proc/stat`` less everything above), since 2 cores are easily
  disturbed.
* The ratio is ``celery / faasflow`` of the times (for the soak, of the end RSS):
  above 1 means faasflow is faster (smaller).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psutil
from distributed_common import (
    PAYLOAD,
    binary_version,
    expected_chain,
    expected_fanout,
    expected_foreach,
)

HERE = Path(__file__).resolve().parent
REFERENCE, SUBJECT = "celery", "faasflow"  # the ratio is REFERENCE / SUBJECT
SIDE_CLASSES = {
    "celery": ("celery_side", "CelerySide"),
    "faasflow": ("faasflow_side", "FaasflowSide"),
}
CALL_TIMEOUT = 900.0  # one request or batch; a side that hangs fails the run

# What the issue quoted for Celery on this machine, printed beside the measured figures.
ISSUE_CELERY = {
    "chain": "~3-6 ms per node",
    "fanout": "4.9 s at W=1000",
    "concurrent": "~100 chain_5 workflows/s at 200 concurrent",
}


# -- the side protocol -----------------------------------------------------------------
@runtime_checkable
class Side(Protocol):
    """One system under test, driven from the harness's event loop.

    The class is built with no arguments (``FaasflowSide()``); ``start`` brings up
    everything. Each measurement method runs one request (``concurrent``: one batch) on
    ``payload`` and returns the answer (``concurrent``: every answer, in submit order);
    the harness times the call and checks the answer. Do per-request work (building a
    flow, a canvas) inside the call: that is part of what a user pays. A blocking client
    belongs on a thread (``loop.run_in_executor``).
    """

    name: str

    async def start(self, workdir: Path, workers: int) -> None:
        """Start private servers and ``workers`` worker processes, files in ``workdir``;
        return once every worker takes work."""
        ...

    async def stop(self) -> None:
        """Stop everything ``start`` started (safe after a failed ``start``)."""
        ...

    async def chain(self, n: int, payload: bytes) -> bytes:
        """A chain of ``n`` nodes."""
        ...

    async def fanout(self, width: int, payload: bytes) -> bytes:
        """``width`` parallel nodes on ``payload`` and a concatenating aggregator."""
        ...

    async def foreach(self, width: int, payload: bytes) -> bytes:
        """A run-time split into ``width`` items, a node per item, a key-order join."""
        ...

    async def concurrent(self, count: int, length: int, payload: bytes) -> list[bytes]:
        """``count`` chains of ``length`` submitted at once; every answer."""
        ...

    def worker_pids(self) -> list[int]:
        """The worker processes (the harness adds their children for RSS and CPU)."""
        ...

    def server_pids(self) -> list[int]:
        """The servers this side started (broker, state store), for CPU accounting."""
        ...

    def versions(self) -> dict[str, str]:
        """Package and server versions, e.g. ``{"celery": "5.7.0"}``."""
        ...

    def settings(self) -> dict[str, str]:
        """The configuration choices that matter for speed and durability."""
        ...


# -- plans -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Sizes, repeats and warm-ups per measurement."""

    chain: dict[int, int]  # size -> timed repeats
    fanout: dict[int, int]
    foreach: dict[int, int]
    concurrent: dict[int, int]  # count -> repeats
    concurrent_length: int
    warmup: int
    soak: int
    soak_length: int
    soak_batch: int


FULL_PLAN = Plan(
    chain={2: 20, 10: 20, 25: 15, 50: 15, 100: 15},
    fanout={10: 15, 100: 10, 1000: 5},
    foreach={10: 15, 100: 10, 1000: 5},
    concurrent={200: 5},
    concurrent_length=5,
    warmup=2,
    soak=10_000,
    soak_length=5,
    soak_batch=200,
)
QUICK_PLAN = Plan(
    chain={2: 3, 10: 3, 25: 3},
    fanout={10: 3, 100: 2},
    foreach={10: 3, 100: 2},
    concurrent={200: 2},
    concurrent_length=5,
    warmup=1,
    soak=500,
    soak_length=5,
    soak_batch=100,
)
MEASUREMENTS = ("chain", "fanout", "foreach", "concurrent")


# -- processes: CPU and memory ---------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (a prefork pool's children); none once it is gone."""
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def pid_cpu(pid: int) -> float:
    """CPU seconds of all the threads of one process, from the scheduler's own accounting
    (``/proc/PID/task/*/schedstat``, in ns: psutil's ``cpu_times`` moves in 10 ms ticks,
    too coarse for one request); 0 once it is gone."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError), open(f"{task.path}/schedstat") as f:
                total += int(f.read().split()[0])
    return total / 1e9


def cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds of these processes."""
    return sum(pid_cpu(pid) for pid in pids)


@dataclass(frozen=True)
class Pids:
    """A side's processes, children included, looked up once per cell (finding children
    scans every process on the machine: too slow to do around each request)."""

    workers: tuple[int, ...]
    servers: tuple[int, ...]

    @classmethod
    def of(cls, side: Side) -> Pids:
        def expand(pids: Sequence[int]) -> tuple[int, ...]:
            return tuple(process.pid for pid in pids for process in tree(pid))

        return cls(expand(side.worker_pids()), expand(side.server_pids()))


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its descendants, in bytes."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far, all cores (``/proc/stat``;
    hypervisor steal counts as busy)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def everything_cpu(pids: Sequence[Pids]) -> float:
    """CPU seconds of this process and of every side's workers and servers."""
    return time.process_time() + sum(cpu_of(p.workers) + cpu_of(p.servers) for p in pids)


# -- samples and statistics --------------------------------------------------------------
@dataclass
class Sample:
    """One timed call: wall seconds and CPU seconds by where they were spent."""

    wall: float
    client: float
    workers: float
    servers: float

    @property
    def cpu(self) -> float:
        return self.client + self.workers + self.servers


@dataclass
class Stats:
    """One side on one cell, in seconds."""

    median: float
    p95: float
    cpu: float  # median CPU per call: this process + the side's workers and servers
    n: int

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Stats:
        walls = [s.wall for s in samples]
        return cls(
            median=statistics.median(walls),
            p95=percentile(walls, 95),
            cpu=statistics.median(s.cpu for s in samples),
            n=len(samples),
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolation percentile (``numpy.percentile``'s default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


Table = dict[str, dict[int, dict[str, Stats]]]
"""measurement -> size -> side -> stats."""


def fit(by_size: dict[int, float]) -> tuple[float, float, float]:
    """(least-squares slope, intercept, two-point slope) of values over size."""
    sizes = sorted(by_size)
    values = [by_size[s] for s in sizes]
    if len(sizes) < 2:
        return float("nan"), float("nan"), float("nan")
    line = statistics.linear_regression(sizes, values)
    two_point = (values[-1] - values[0]) / (sizes[-1] - sizes[0])
    return line.slope, line.intercept, two_point


# -- measuring ---------------------------------------------------------------------------
Answer = bytes | list[bytes]


def call_for(measurement: str, size: int, plan: Plan) -> Callable[[Side], Awaitable[Answer]]:
    """One request of ``measurement`` at ``size`` on a side."""
    if measurement == "chain":
        return lambda side: side.chain(size, PAYLOAD)
    if measurement == "fanout":
        return lambda side: side.fanout(size, PAYLOAD)
    if measurement == "foreach":
        return lambda side: side.foreach(size, PAYLOAD)
    length = plan.concurrent_length
    return lambda side: side.concurrent(size, length, PAYLOAD)


def expected_for(measurement: str, size: int, plan: Plan) -> Answer:
    if measurement == "chain":
        return expected_chain(size)
    if measurement == "fanout":
        return expected_fanout(size)
    if measurement == "foreach":
        return expected_foreach(size)
    return [expected_chain(plan.concurrent_length)] * size


def check(side: Side, what: str, answer: Answer, expected: Answer) -> None:
    """Fail loudly on a wrong answer (outside the timer)."""
    if answer == expected:
        return
    if isinstance(answer, list) and isinstance(expected, list):
        wrong = sum(a != e for a, e in zip(answer, expected, strict=False))
        detail = f"{len(answer)} answers for {len(expected)}, {wrong} wrong"
    else:
        shown = answer[:80] if isinstance(answer, bytes) else type(answer).__name__
        detail = f"{len(answer)} bytes instead of {len(expected)}: {shown!r}..."
    raise AssertionError(f"{side.name} {what}: wrong answer ({detail})")


async def timed(
    side: Side, pids: Pids, call: Callable[[Side], Awaitable[Answer]]
) -> tuple[Sample, Answer]:
    """One call, timed. The CPU marks are taken outside the timer, this process's
    innermost, so that reading the others' counters is not counted as the client's."""
    gc.collect()
    workers, servers = cpu_of(pids.workers), cpu_of(pids.servers)
    client = time.process_time()
    started = time.perf_counter()
    answer = await asyncio.wait_for(call(side), CALL_TIMEOUT)
    wall = time.perf_counter() - started
    client = time.process_time() - client
    sample = Sample(wall, client, cpu_of(pids.workers) - workers, cpu_of(pids.servers) - servers)
    return sample, answer


async def measure_cell(
    sides: Sequence[Side], measurement: str, size: int, plan: Plan, repeats: int
) -> dict[str, list[Sample]]:
    """Warm every side up, then ``repeats`` interleaved rounds; the samples by side."""
    call = call_for(measurement, size, plan)
    expected = expected_for(measurement, size, plan)
    what = f"{measurement} {size}"
    pids = {side.name: Pids.of(side) for side in sides}
    for side in sides:
        for _ in range(plan.warmup):
            _, answer = await timed(side, pids[side.name], call)
            check(side, what, answer, expected)
    samples: dict[str, list[Sample]] = {side.name: [] for side in sides}
    for round_no in range(repeats):
        shift = round_no % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            sample, answer = await timed(side, pids[side.name], call)
            check(side, what, answer, expected)
            samples[side.name].append(sample)
    return samples


@dataclass
class Soak:
    """One side's long run: RSS per worker at checkpoints."""

    requests: int
    length: int
    seconds: float
    done: list[int] = field(default_factory=list)  # requests done at each checkpoint
    rss: list[list[int]] = field(default_factory=list)  # per checkpoint, per worker

    def summary(self) -> dict[str, Any]:
        early = next(i for i, d in enumerate(self.done) if d >= self.requests // 10)
        half = len(self.done) // 2
        slopes = []
        for worker in range(len(self.rss[0])):
            tail = {self.done[i]: float(self.rss[i][worker]) for i in range(half, len(self.done))}
            slope = fit(tail)[0] if len(tail) > 1 else float("nan")
            slopes.append(slope * 1000 / 1024)  # KiB per 1000 requests
        return {
            "requests": self.requests,
            "length": self.length,
            "seconds": self.seconds,
            "start": self.rss[0],
            "early": self.rss[early],
            "end": self.rss[-1],
            "max": [max(r[w] for r in self.rss) for w in range(len(self.rss[0]))],
            "kib_per_1000_second_half": slopes,
        }


async def soak(side: Side, plan: Plan) -> Soak:
    """``plan.soak`` chains in batches of ``plan.soak_batch``, each batch checked; RSS of
    every worker before and after each batch."""
    pids = side.worker_pids()
    result = Soak(plan.soak, plan.soak_length, 0.0, [0], [[tree_rss(p) for p in pids]])
    expected = expected_chain(plan.soak_length)
    done = 0
    started = time.perf_counter()
    while done < plan.soak:
        count = min(plan.soak_batch, plan.soak - done)
        answers = await asyncio.wait_for(
            side.concurrent(count, plan.soak_length, PAYLOAD), CALL_TIMEOUT
        )
        check(side, "soak", answers, [expected] * count)
        done += count
        result.done.append(done)
        result.rss.append([tree_rss(p) for p in pids])
    result.seconds = time.perf_counter() - started
    return result


async def run_all(
    sides: Sequence[Side], plan: Plan, measurements: Sequence[str], do_soak: bool
) -> tuple[dict[str, dict[int, dict[str, list[Sample]]]], dict[str, Soak], dict[str, float]]:
    """Every cell (sides interleaved), then each side's soak; also the cores that other
    processes kept busy during each cell."""
    raw: dict[str, dict[int, dict[str, list[Sample]]]] = {}
    others: dict[str, float] = {}
    for measurement in measurements:
        sizes: dict[int, int] = getattr(plan, measurement)
        raw[measurement] = {}
        for size, repeats in sizes.items():
            everyone = [Pids.of(side) for side in sides]
            started, busy, own = time.perf_counter(), machine_busy(), everything_cpu(everyone)
            raw[measurement][size] = await measure_cell(sides, measurement, size, plan, repeats)
            wall = time.perf_counter() - started
            other = (machine_busy() - busy) - (everything_cpu(everyone) - own)
            others[f"{measurement} {size}"] = max(0.0, other / wall)
            print(
                f"  {measurement} {size}: {wall:.1f}s; other processes kept "
                f"{others[f'{measurement} {size}']:.2f} cores busy",
                file=sys.stderr,
            )
    soaks: dict[str, Soak] = {}
    if do_soak:
        for side in sides:
            soaks[side.name] = await soak(side, plan)
            print(
                f"  soak {side.name}: {plan.soak} x chain_{plan.soak_length} in "
                f"{soaks[side.name].seconds:.1f}s",
                file=sys.stderr,
            )
    return raw, soaks, others


# -- reporting ---------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1e3:,.2f}"


def _ratio(reference: float | None, subject: float | None) -> str:
    if reference is None or subject is None or not subject > 0:
        return "-"
    return f"{reference / subject:,.2f}x"


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    head = line(header)
    return "\n".join([head, "-" * len(head), *(line(row) for row in rows)])


def side_columns(names: Sequence[str]) -> list[str]:
    columns = []
    for name in names:
        columns += [f"{name} med", f"{name} p95", f"{name} CPU"]
    return [*columns, f"{REFERENCE}/{SUBJECT}"]


def cells_rows(
    label: str, by_size: dict[int, dict[str, Stats]], names: Sequence[str]
) -> list[list[str]]:
    rows = []
    for size, by_side in sorted(by_size.items()):
        row = [f"{label}={size}"]
        for name in names:
            stats = by_side.get(name)
            row += [_ms(stats.median), _ms(stats.p95), _ms(stats.cpu)] if stats else ["-"] * 3
        ref, sub = by_side.get(REFERENCE), by_side.get(SUBJECT)
        row.append(_ratio(ref and ref.median, sub and sub.median))
        rows.append(row)
    return rows


def fit_rows(
    by_size: dict[int, dict[str, Stats]], names: Sequence[str], unit: str
) -> list[list[str]]:
    """Slope, intercept and two-point slope of the medians, and the CPU slope."""
    fits = {
        name: fit({size: s[name].median for size, s in by_size.items() if name in s})
        for name in names
    }
    cpu = {
        name: fit({size: s[name].cpu for size, s in by_size.items() if name in s})[0]
        for name in names
    }
    lines = [
        (f"ms per {unit} (LSQ slope)", {n: f[0] for n, f in fits.items()}, True),
        ("intercept ms", {n: f[1] for n, f in fits.items()}, False),
        (f"ms per {unit} (2-point)", {n: f[2] for n, f in fits.items()}, False),
        (f"CPU ms per {unit} (LSQ)", cpu, True),
    ]
    rows = []
    for label, values, with_ratio in lines:
        row = [label]
        for name in names:
            row += [_ms(values[name]), "", ""]
        row.append(_ratio(values.get(REFERENCE), values.get(SUBJECT)) if with_ratio else "")
        rows.append(row)
    return rows


def measurement_report(
    measurement: str, by_size: dict[int, dict[str, Stats]], names: Sequence[str], plan_length: int
) -> str:
    """One table: a row per size (median, p95, CPU per call in ms, per side; the ratio of
    the medians), then the derived rows."""
    labels = {"chain": "N", "fanout": "W", "foreach": "W", "concurrent": "count"}
    titles = {
        "chain": "chain_N: ms per request",
        "fanout": "fan-out/fan-in of W: ms per request",
        "foreach": "foreach over W items (split at run time): ms per request",
        "concurrent": f"concurrent chain_{plan_length} workflows submitted at once: ms per batch",
    }
    header = [titles[measurement], *side_columns(names)]
    rows = cells_rows(labels[measurement], by_size, names)
    if measurement == "chain":
        rows += fit_rows(by_size, names, "node")
    elif measurement in ("fanout", "foreach") and len(by_size) > 1:
        rows += fit_rows(by_size, names, "branch")
    elif measurement == "concurrent":
        for count, by_side in sorted(by_size.items()):
            rates = {n: count / s.median for n, s in by_side.items()}
            row = [f"workflows/s (count={count})"]
            for name in names:
                row += [f"{rates[name]:,.1f}" if name in rates else "-", "", ""]
            # workflows/s: the subject's rate over the reference's (same as the times).
            row.append(_ratio(rates.get(SUBJECT), rates.get(REFERENCE)))
            rows.append(row)
    text = format_rows(header, rows)
    if measurement in ISSUE_CELERY:
        text += f"\nthe issue quoted for Celery on this machine: {ISSUE_CELERY[measurement]}"
    return text


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def soak_report(soaks: dict[str, dict[str, Any]], names: Sequence[str]) -> str:
    """RSS of each worker over the soak."""
    header = ["soak: worker RSS, MiB", "requests", "wf/s", "start", "after 10%", "end", "max",
              "end-start", "KiB/1000 req (2nd half)"]  # fmt: skip
    rows = []
    for name in names:
        found = soaks.get(name)
        if not found:
            continue
        rate = found["requests"] / found["seconds"] if found["seconds"] > 0 else 0.0
        for worker, start in enumerate(found["start"]):
            rows.append([
                f"{name} worker {worker}",
                f"{found['requests']:,} x chain_{found['length']}",
                f"{rate:,.1f}",
                _mib(start),
                _mib(found["early"][worker]),
                _mib(found["end"][worker]),
                _mib(found["max"][worker]),
                _mib(found["end"][worker] - start),
                f"{found['kib_per_1000_second_half'][worker]:,.1f}",
            ])  # fmt: skip
    text = format_rows(header, rows)
    if REFERENCE in soaks and SUBJECT in soaks:
        ends = {n: sum(soaks[n]["end"]) for n in (REFERENCE, SUBJECT)}
        text += (
            f"\nend RSS, all workers: {REFERENCE} {_mib(ends[REFERENCE])} MiB, {SUBJECT} "
            f"{_mib(ends[SUBJECT])} MiB, {REFERENCE}/{SUBJECT} "
            f"{_ratio(ends[REFERENCE], ends[SUBJECT])}"
        )
    return text


def _load(value: Any) -> str:
    """1-minute load average(s): one run's triple, or one triple per combined run."""
    if not value:
        return "?"
    if isinstance(value[0], int | float):
        return f"{value[0]:.2f}"
    return " / ".join(_load(v) for v in value)


def print_report(meta: dict[str, Any], table: Table, soaks: dict[str, dict[str, Any]]) -> None:
    names = [n for n in (REFERENCE, SUBJECT) if n in meta["sides"]]
    names += [n for n in meta["sides"] if n not in names]
    machine = meta["machine"]
    revision = meta.get("revisions") or meta["revision"]
    print(
        f"python {meta['python']}  faasflow {meta['faasflow']} ({revision})  "
        f"redis-server {meta['redis_server']}  nats-server {meta['nats_server']}"
    )
    print(
        f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, "
        f"{machine['memory_gib']:.1f} GiB, {machine['platform']}"
    )
    for name in names:
        info = meta["sides"][name]
        versions = "  ".join(f"{k} {v}" for k, v in info["versions"].items())
        print(f"{name}: {versions}")
        for key, value in info["settings"].items():
            print(f"  {key}: {value}")
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
        print(f"median of medians (and of p95s, CPU, RSS) over {meta['runs']} runs")
    print("med/p95: wall ms per call; CPU: ms of CPU per call (client + workers + servers)")
    print(f"{REFERENCE}/{SUBJECT} > 1: {SUBJECT} faster")
    for measurement in MEASUREMENTS:
        if measurement in table:
            print()
            print(
                measurement_report(
                    measurement, table[measurement], names, meta["plan"]["concurrent_length"]
                )
            )
    if soaks:
        print()
        print(soak_report(soaks, names))


# -- raw numbers in and out ------------------------------------------------------------
def to_json(
    meta: dict[str, Any],
    raw: dict[str, dict[int, dict[str, list[Sample]]]],
    soaks: dict[str, Soak],
) -> str:
    cells: dict[str, Any] = {}
    for measurement, by_size in raw.items():
        cells[measurement] = {
            str(size): {
                name: {**asdict(Stats.of(samples)), "samples": [asdict(s) for s in samples]}
                for name, samples in by_side.items()
            }
            for size, by_side in by_size.items()
        }
    soak_doc = {name: {**s.summary(), "trace": asdict(s)} for name, s in soaks.items()}
    return json.dumps({"meta": meta, "cells": cells, "soak": soak_doc}, indent=1)


def table_from_json(doc: dict[str, Any]) -> Table:
    return {
        measurement: {
            int(size): {
                name: Stats(c["median"], c["p95"], c["cpu"], c["n"]) for name, c in by_side.items()
            }
            for size, by_side in by_size.items()
        }
        for measurement, by_size in doc["cells"].items()
    }


def combine(paths: Sequence[Path]) -> tuple[dict[str, Any], Table, dict[str, dict[str, Any]]]:
    """Median of the medians (and of the p95s, CPU, RSS figures) of several runs."""
    docs = [json.loads(p.read_text()) for p in paths]
    tables = [table_from_json(d) for d in docs]
    merged: Table = {}
    for measurement, by_size in tables[0].items():
        merged[measurement] = {}
        for size, by_side in by_size.items():
            merged[measurement][size] = {}
            for name in by_side:
                runs = [t[measurement][size][name] for t in tables]
                merged[measurement][size][name] = Stats(
                    median=statistics.median(r.median for r in runs),
                    p95=statistics.median(r.p95 for r in runs),
                    cpu=statistics.median(r.cpu for r in runs),
                    n=sum(r.n for r in runs),
                )
    soaks: dict[str, dict[str, Any]] = {}
    for name, first in docs[0].get("soak", {}).items():
        found = [d["soak"][name] for d in docs]
        soaks[name] = {
            "requests": first["requests"],
            "length": first["length"],
            "seconds": statistics.median(f["seconds"] for f in found),
        }
        for key in ("start", "early", "end", "max", "kib_per_1000_second_half"):
            soaks[name][key] = [
                statistics.median(f[key][w] for f in found) for w in range(len(first[key]))
            ]
    meta = dict(docs[0]["meta"])
    meta["runs"] = len(docs)
    meta["revisions"] = ", ".join(d["meta"].get("revision", "?") for d in docs)
    for key in ("loadavg_start", "loadavg_end", "other_load"):
        meta[key] = [d["meta"].get(key) for d in docs]
    return meta, merged, soaks


# -- environment -------------------------------------------------------------------------
def source_revision() -> str:
    """The git commit of the faasflow being measured, ``+dirty`` if ``src/`` has changes."""
    root = HERE.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def machine() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def environment(sides: Sequence[Side], plan: Plan, workers: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "faasflow": _version("faasflow"),
        "revision": source_revision(),
        "redis_server": binary_version("redis-server"),
        "nats_server": binary_version("nats-server"),
        "machine": machine(),
        "workers": workers,
        "sides": {s.name: {"versions": s.versions(), "settings": s.settings()} for s in sides},
        "plan": asdict(plan),
        "loadavg_start": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- main --------------------------------------------------------------------------------
def pick_sides(spec: str) -> list[str]:
    """The side names to run: ``auto`` is every side whose module is present."""
    if spec == "auto":
        names = [n for n, (module, _) in SIDE_CLASSES.items() if (HERE / f"{module}.py").exists()]
        if SUBJECT not in names:
            print(f"note: benchmarks/{SIDE_CLASSES[SUBJECT][0]}.py is absent: "
                  f"running {', '.join(names)} only", file=sys.stderr)  # fmt: skip
        return names
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in SIDE_CLASSES:
            raise SystemExit(f"unknown side {name!r}: choose from {', '.join(SIDE_CLASSES)}")
        module = SIDE_CLASSES[name][0]
        if not (HERE / f"{module}.py").exists():
            raise SystemExit(f"side {name!r} needs benchmarks/{module}.py, which is absent")
    return names


def build_side(name: str, args: argparse.Namespace) -> Side:
    module_name, class_name = SIDE_CLASSES[name]
    module = importlib.import_module(module_name)
    factory: Callable[..., Side] = getattr(module, class_name)
    if name == "celery":
        side = factory(
            pool=args.celery_pool,
            concurrency=args.celery_concurrency,
            prefetch=args.celery_prefetch,
            serializer=args.celery_serializer,
        )
    else:
        side = factory()
    if not isinstance(side, Side):
        wanted = [*Side.__annotations__, *(n for n in vars(Side) if not n.startswith("_"))]
        missing = [n for n in wanted if not hasattr(side, n)]
        raise SystemExit(
            f"{module_name}.{class_name} does not follow distributed.Side: "
            f"missing {', '.join(missing)}"
        )
    return side


async def run_sides(
    names: Sequence[str], args: argparse.Namespace, plan: Plan, tmp: Path
) -> tuple[dict[str, Any], dict[str, dict[int, dict[str, list[Sample]]]], dict[str, Soak]]:
    sides: list[Side] = []
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM unwinds like Ctrl-C: the main task is cancelled, every side stops.
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        for name in names:
            side = build_side(name, args)
            sides.append(side)
            workdir = tmp / name
            workdir.mkdir()
            started = time.perf_counter()
            await side.start(workdir, args.workers)
            print(f"  started {name} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        meta = environment(sides, plan, args.workers)
        measurements = [m for m in MEASUREMENTS if m in args.only]
        raw, soaks, others = await run_all(sides, plan, measurements, "soak" in args.only)
        meta["other_load"] = others
        meta["loadavg_end"] = os.getloadavg()
        return meta, raw, soaks
    finally:
        for side in reversed(sides):
            await side.stop()
        loop.remove_signal_handler(signal.SIGTERM)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the raw numbers here")
    parser.add_argument(
        "--combine", type=Path, nargs="+", metavar="RUN",
        help="print the median of medians of these --json files instead of measuring",
    )  # fmt: skip
    parser.add_argument(
        "--sides", default="auto",
        help=f"comma-separated, from {', '.join(SIDE_CLASSES)}; auto: every side present",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="worker processes per side")
    parser.add_argument(
        "--only", default=",".join([*MEASUREMENTS, "soak"]),
        help="comma-separated measurements to run (default: all)",
    )  # fmt: skip
    parser.add_argument("--soak", type=int, help="soak requests (10,000; --quick: 500)")
    parser.add_argument("--soak-length", type=int, help="chain length in the soak (5)")
    parser.add_argument("--celery-pool", default="solo", choices=("solo", "prefork", "threads"))
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--celery-prefetch", type=int, default=4,
                        help="worker_prefetch_multiplier (4, Celery's default)")  # fmt: skip
    parser.add_argument("--celery-serializer", default="json", choices=("json", "msgpack"))
    args = parser.parse_args(argv)
    args.only = {m.strip() for m in args.only.split(",") if m.strip()}
    unknown = args.only - {*MEASUREMENTS, "soak"}
    if unknown:
        parser.error(f"unknown measurement(s) in --only: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.combine:
        meta, table, soaks = combine(args.combine)
        print_report(meta, table, soaks)
        return 0
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    changes = {}
    if args.soak is not None:
        changes["soak"] = args.soak
    if args.soak_length is not None:
        changes["soak_length"] = args.soak_length
    if changes:
        plan = Plan(**{**asdict(plan), **changes})
    names = pick_sides(args.sides)
    with tempfile.TemporaryDirectory(prefix="faasflow-distributed-") as tmp:
        meta, raw, soaks = asyncio.run(run_sides(names, args, plan, Path(tmp)))
    table: Table = {
        measurement: {
            size: {name: Stats.of(samples) for name, samples in by_side.items()}
            for size, by_side in by_size.items()
        }
        for measurement, by_size in raw.items()
    }
    print_report(meta, table, {name: s.summary() for name, s in soaks.items()})
    if args.json:
        args.json.write_text(to_json(meta, raw, soaks))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process started here was stopped", file=sys.stderr)
        sys.exit(130)
