"""Per-node overhead of the embedded engine, side by side with Dask and plain calls.

Run from the repository root::

    python benchmarks/embedded.py                 # the full run (a few minutes)
    python benchmarks/embedded.py --quick         # a smoke run (few repeats)
    python benchmarks/embedded.py --json out.json # also write the raw numbers
    python benchmarks/embedded.py --combine a.json b.json c.json
                                                  # median of medians of several runs

What is measured, in one process, on one event loop, on the same graphs:

* **chain_N** (N in 1, 10, 100, 1000): ``n0 -> n1 -> ... -> n{N-1}``, each node a no-op
  on a 100-byte payload. Per-node overhead is the **least-squares slope** of the median
  latency over the four N values (the two-point slope ``(t(1000) - t(1)) / 999`` is
  reported as well); the intercept is the fixed per-request cost.
* **fanout_W** (W in 10, 100, 1000): ``src -> W parallel no-ops -> agg``, where ``agg``
  joins the W outputs (``b"".join``, parents in declaration order). The makespan is
  reported; the slope over W gives the cost per branch.

The contenders, all on the same graph:

* faasflow ``Engine`` with three kinds of node:
  ``pass`` — nodes with no operation (they pass their input through: pure engine
  overhead); ``sync`` — ``modify(noop)`` with a ``def noop`` (it runs on the engine's
  worker threads, so this is what a user's synchronous callable costs); ``async`` —
  ``modify(anoop)`` with an ``async def`` (it runs on the event loop). The fan-out's
  aggregator is a ``def`` in ``pass``/``sync`` and an ``async def`` in ``async``.
* on three stores: ``memory://``; ``sqlite:///<tmp>/x.db`` at its default, WAL with
  ``synchronous=NORMAL`` — every commit survives the process being killed at any point,
  but not a power loss; and (``pass`` only, skipped by ``--quick``) the same file with
  ``synchronous=FULL``, which fsyncs every commit so it also survives a power loss.
* Dask's local schedulers on a graph dict of the same no-op tasks: ``dask.threaded.get``
  (its thread pool, default size = CPU count) and ``dask.local.get_sync`` (one thread:
  the floor of Dask's scheduler). The dict is built once, outside the timing, like the
  warm engine (which, by design, still calls ``define`` once per request). A third row,
  ``dask delayed``, builds the graph with ``dask.delayed`` inside the timing and calls
  ``.compute(scheduler="threads")``: what a Dask user typically writes.
* ``floor``: plain sequential Python calls of the same no-op (and the same join).

Fairness:

* One warm engine per (graph, store, node kind), built once and serving every request of
  that cell; Dask's thread pool is warm too. Warm-up runs (checked for the right output)
  are excluded; every timed run is checked as well, outside the timer.
* Rounds are interleaved: each round times every contender once, in an order rotated
  from round to round, so that drifts in machine load spread over all contenders rather
  than landing on one.
* After warm-up the heap is frozen (``gc.freeze()``) and ``gc.collect()`` runs before each
  timed run (outside the timer); collections inside a run are counted.
* Logging at WARNING; no tracing; each engine at its defaults (64 async hop workers,
  32 threads for sync callables); Dask at its defaults (``num_workers`` = CPU count).
* Wall time is ``time.perf_counter`` from the call (``await engine.run(...)``,
  ``dask.threaded.get(...)``) to its result; CPU time is ``time.process_time`` (all
  threads of the process) over the same span, less sensitive to other processes.
* Medians and p95 are over the timed repeats (more repeats for small graphs).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import dask
import dask.local
import dask.threaded
from dask.delayed import delayed

import faasflow

PAYLOAD = b"x" * 100
CHAIN_SIZES = (1, 10, 100, 1000)
FANOUT_WIDTHS = (10, 100, 1000)
Graph = Literal["chain", "fanout"]
NodeKind = Literal["pass", "sync", "async"]
DaskGraph = dict[str, Any]

# The reference contender for the "how many times faster than Dask" ratio.
DASK_REF = "dask threaded"
FLOOR = "floor"


# -- the work every contender does ----------------------------------------------------
def noop(data: bytes) -> bytes:
    """The node body: hand the data on."""
    return data


async def anoop(data: bytes) -> bytes:
    """The node body as an ``async def``."""
    return data


def join(results: dict[str, bytes]) -> bytes:
    """The fan-in: the branches' outputs joined, in order."""
    return b"".join(results.values())


async def ajoin(results: dict[str, bytes]) -> bytes:
    """The fan-in as an ``async def``."""
    return b"".join(results.values())


def join_parts(*parts: bytes) -> bytes:
    """The fan-in as a Dask task (arguments instead of a dict)."""
    return b"".join(parts)


def expected_output(graph: Graph, size: int) -> bytes:
    return PAYLOAD if graph == "chain" else PAYLOAD * size


# -- faasflow definitions ----------------------------------------------------------------
def _with_op(node: faasflow.Node, kind: NodeKind) -> None:
    if kind == "sync":
        node.modify(noop)
    elif kind == "async":
        node.modify(anoop)


def chain_define(n: int, kind: NodeKind) -> Callable[[faasflow.Workflow, faasflow.Context], None]:
    """``define`` for a chain of ``n`` nodes of ``kind``."""
    names = [f"n{i}" for i in range(n)]

    def define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
        dag = flow.dag()
        for index, name in enumerate(names):
            _with_op(dag.node(name), kind)
            if index:
                dag.edge(names[index - 1], name)

    return define


def fanout_define(
    width: int, kind: NodeKind
) -> Callable[[faasflow.Workflow, faasflow.Context], None]:
    """``define`` for ``src -> width branches -> agg`` with nodes of ``kind``."""
    names = [f"b{i}" for i in range(width)]
    aggregator = ajoin if kind == "async" else join

    def define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
        dag = flow.dag()
        _with_op(dag.node("src"), kind)
        dag.node("agg", aggregator=aggregator)
        for name in names:
            _with_op(dag.node(name), kind)
            dag.edge("src", name)
            dag.edge(name, "agg")

    return define


# -- Dask graphs and the floor -----------------------------------------------------------
def chain_dask(n: int) -> tuple[DaskGraph, str]:
    graph: DaskGraph = {"n0": (noop, PAYLOAD)}
    for i in range(1, n):
        graph[f"n{i}"] = (noop, f"n{i - 1}")
    return graph, f"n{n - 1}"


def fanout_dask(width: int) -> tuple[DaskGraph, str]:
    names = [f"b{i}" for i in range(width)]
    graph: DaskGraph = {"src": (noop, PAYLOAD)}
    for name in names:
        graph[name] = (noop, "src")
    graph["agg"] = (join_parts, *names)
    return graph, "agg"


def chain_delayed(n: int) -> bytes:
    value: Any = PAYLOAD
    for _ in range(n):
        value = delayed(noop)(value)
    return bytes(value.compute(scheduler="threads"))


def fanout_delayed(width: int) -> bytes:
    src = delayed(noop)(PAYLOAD)
    parts = [delayed(noop)(src) for _ in range(width)]
    return bytes(delayed(join_parts)(*parts).compute(scheduler="threads"))


def chain_floor(n: int) -> Callable[[], bytes]:
    def run() -> bytes:
        value = PAYLOAD
        for _ in range(n):
            value = noop(value)
        return value

    return run


def fanout_floor(width: int) -> Callable[[], bytes]:
    names = [f"b{i}" for i in range(width)]

    def run() -> bytes:
        src = noop(PAYLOAD)
        return join({name: noop(src) for name in names})

    return run


# -- contenders --------------------------------------------------------------------------
@dataclass
class Sample:
    wall: float
    cpu: float


@dataclass
class Contender:
    """One way of running the graph: ``sample()`` times one run."""

    name: str
    run: Callable[[], Awaitable[bytes]] | Callable[[], bytes]
    is_async: bool
    open: Callable[[], Awaitable[None]] | None = None
    close: Callable[[], Awaitable[None]] | None = None

    async def sample(self) -> tuple[Sample, bytes]:
        if self.is_async:
            run_async: Callable[[], Awaitable[bytes]] = self.run  # type: ignore[assignment]
            wall, cpu = time.perf_counter(), time.process_time()
            out = await run_async()
        else:
            run_sync: Callable[[], bytes] = self.run  # type: ignore[assignment]
            wall, cpu = time.perf_counter(), time.process_time()
            out = run_sync()
        return Sample(time.perf_counter() - wall, time.process_time() - cpu), out


def faasflow_contender(
    graph: Graph, size: int, kind: NodeKind, store: str, url: str
) -> Contender:
    define = chain_define(size, kind) if graph == "chain" else fanout_define(size, kind)
    engine = faasflow.Engine(define, state_store=url, flow_name=f"{graph}{size}{kind}")

    async def run() -> bytes:
        return await engine.run(PAYLOAD)

    return Contender(f"faasflow {store} {kind}", run, True, engine.start, engine.close)


def sqlite_url(tmp: Path, graph: Graph, size: int, kind: NodeKind, sync: str) -> str:
    path = tmp / f"{graph}{size}-{kind}-{sync.lower()}.db"
    suffix = "" if sync == "NORMAL" else f"?synchronous={sync}"
    return f"sqlite:///{path}{suffix}"


def contenders_for(graph: Graph, size: int, tmp: Path, full_sync: bool) -> list[Contender]:
    """Every contender for one graph, in a fixed order (the table's)."""
    kinds: tuple[NodeKind, ...] = ("pass", "sync", "async")
    found: list[Contender] = []
    for kind in kinds:
        found.append(faasflow_contender(graph, size, kind, "memory", "memory://"))
    for kind in kinds:
        url = sqlite_url(tmp, graph, size, kind, "NORMAL")
        found.append(faasflow_contender(graph, size, kind, "sqlite", url))
    if full_sync:
        url = sqlite_url(tmp, graph, size, "pass", "FULL")
        found.append(faasflow_contender(graph, size, "pass", "sqlite-FULL", url))
    dask_graph, target = chain_dask(size) if graph == "chain" else fanout_dask(size)
    build = chain_delayed if graph == "chain" else fanout_delayed
    floor = chain_floor(size) if graph == "chain" else fanout_floor(size)
    found += [
        Contender(DASK_REF, lambda: dask.threaded.get(dask_graph, target), False),
        Contender("dask get_sync", lambda: dask.local.get_sync(dask_graph, target), False),
        Contender("dask delayed", lambda: build(size), False),
        Contender(FLOOR, floor, False),
    ]
    return found


# -- measuring ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How many runs: warm-ups, and timed repeats by graph size."""

    warmup: int
    repeats: dict[int, int]
    full_sync: bool


FULL_PLAN = Plan(warmup=3, repeats={1: 300, 10: 200, 100: 60, 1000: 20}, full_sync=True)
QUICK_PLAN = Plan(warmup=1, repeats={1: 5, 10: 5, 100: 3, 1000: 2}, full_sync=False)


async def checked_sample(contender: Contender, expected: bytes) -> Sample:
    sample, out = await contender.sample()
    if out != expected:
        raise AssertionError(f"{contender.name}: wrong output ({len(out)} bytes)")
    return sample


async def measure_cell(
    graph: Graph, size: int, plan: Plan, tmp: Path
) -> dict[str, list[Sample]]:
    """Time every contender on one graph, interleaved; the samples by contender."""
    contenders = contenders_for(graph, size, tmp, plan.full_sync)
    expected = expected_output(graph, size)
    opened: list[Contender] = []
    try:
        for contender in contenders:
            if contender.open is not None:
                await contender.open()
            opened.append(contender)
        for contender in contenders:
            for _ in range(plan.warmup):
                await checked_sample(contender, expected)
        gc.collect()
        gc.freeze()
        samples: dict[str, list[Sample]] = {c.name: [] for c in contenders}
        for round_no in range(plan.repeats[size]):
            shift = round_no % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                gc.collect()
                samples[contender.name].append(await checked_sample(contender, expected))
        return samples
    finally:
        for contender in opened:
            if contender.close is not None:
                await contender.close()
        gc.unfreeze()
        gc.collect()


# -- statistics --------------------------------------------------------------------------
@dataclass
class Stats:
    """One contender on one graph: seconds."""

    median: float
    p95: float
    cpu_median: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Stats:
        walls = [s.wall for s in samples]
        return cls(
            median=statistics.median(walls),
            p95=percentile(walls, 95),
            cpu_median=statistics.median(s.cpu for s in samples),
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


Table = dict[str, dict[int, Stats]]
"""contender name -> graph size -> stats."""


def slopes(by_size: dict[int, Stats], cpu: bool = False) -> tuple[float, float, float]:
    """(least-squares slope, intercept, two-point slope) of the medians over size."""
    sizes = sorted(by_size)
    values = [by_size[s].cpu_median if cpu else by_size[s].median for s in sizes]
    fit = statistics.linear_regression(sizes, values)
    two_point = (values[-1] - values[0]) / (sizes[-1] - sizes[0])
    return fit.slope, fit.intercept, two_point


# -- reporting ---------------------------------------------------------------------------
def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}"


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:,.2f}x" if denominator > 0 else "-"


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


def chain_report(table: Table) -> str:
    sizes = sorted(next(iter(table.values())))
    ref, _, _ = slopes(table[DASK_REF])
    floor, _, _ = slopes(table[FLOOR])
    header = [
        "chain: contender",
        *(f"N={n} med ms" for n in sizes),
        f"N={sizes[-1]} p95",
        "us/node (LSQ)",
        "2-point",
        "CPU us/node",
        "Dask thr/this",
        "this/floor",
    ]
    rows = []
    for name, by_size in table.items():
        slope, _, two_point = slopes(by_size)
        cpu_slope, _, _ = slopes(by_size, cpu=True)
        rows.append(
            [
                name,
                *(_ms(by_size[n].median) for n in sizes),
                _ms(by_size[sizes[-1]].p95),
                _us(slope),
                _us(two_point),
                _us(cpu_slope),
                _ratio(ref, slope),
                _ratio(slope, floor),
            ]
        )
    return format_rows(header, rows)


def fanout_report(table: Table) -> str:
    widths = sorted(next(iter(table.values())))
    top = widths[-1]
    ref = table[DASK_REF][top].median
    floor = table[FLOOR][top].median
    header = [
        "fan-out: contender",
        *(f"W={w} med ms" for w in widths),
        f"W={top} p95",
        "us/branch (LSQ)",
        f"CPU ms W={top}",
        "Dask thr/this",
        "this/floor",
    ]
    rows = []
    for name, by_width in table.items():
        slope, _, _ = slopes(by_width)
        rows.append(
            [
                name,
                *(_ms(by_width[w].median) for w in widths),
                _ms(by_width[top].p95),
                _us(slope),
                _ms(by_width[top].cpu_median),
                _ratio(ref, by_width[top].median),
                _ratio(by_width[top].median, floor),
            ]
        )
    return format_rows(header, rows)


def targets_report(chain: Table, fanout: Table) -> str:
    """The issue's targets, checked for every faasflow row."""
    ref_slope, _, _ = slopes(chain[DASK_REF])
    top = max(next(iter(fanout.values())))
    ref_fan = fanout[DASK_REF][top].median
    lines = ["targets: <= 50 us/node (memory), <= 300 us/node (SQLite), >= 2x faster than "
             f"{DASK_REF} on the chain slope and the W={top} makespan"]
    for name in chain:
        if not name.startswith("faasflow"):
            continue
        slope, _, _ = slopes(chain[name])
        limit = 50e-6 if " memory " in name else 300e-6
        chain_x = ref_slope / slope
        fan_x = ref_fan / fanout[name][top].median
        lines.append(
            f"  {name:<26} {_us(slope):>7} us/node "
            f"[{'meets' if slope <= limit else 'MISSES'} <= {_us(limit)}]   "
            f"chain {chain_x:.2f}x [{'meets' if chain_x >= 2 else 'MISSES'}]   "
            f"fan-out {fan_x:.2f}x [{'meets' if fan_x >= 2 else 'MISSES'}]"
        )
    return "\n".join(lines)


def source_revision() -> str:
    """The git commit of the faasflow being measured, ``+dirty`` if ``src/`` has changes."""
    root = Path(faasflow.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "faasflow": faasflow.__version__,
        "revision": source_revision(),
        "dask": importlib.metadata.version("dask"),
        "sqlite": sqlite3.sqlite_version,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _load(value: Any) -> str:
    """1-minute load average(s): one run's triple, or one triple per combined run."""
    if not value:
        return "?"
    if isinstance(value[0], int | float):
        return f"{value[0]:.2f}"
    return " / ".join(_load(v) for v in value)


def print_report(meta: dict[str, Any], chain: Table, fanout: Table) -> None:
    revision = meta.get("revisions") or meta.get("revision")
    print(
        f"python {meta['python']}  faasflow {meta['faasflow']} ({revision})  "
        f"dask {meta['dask']}  sqlite {meta['sqlite']}  cpus {meta['cpu_count']}  "
        f"{meta['platform']}"
    )
    print(
        f"1-min load average at start {_load(meta.get('loadavg_start'))}, "
        f"at end {_load(meta.get('loadavg_end'))}"
    )
    if "runs" in meta:
        print(f"median of medians (and of p95s) over {meta['runs']} runs")
    print()
    print(chain_report(chain))
    print()
    print(fanout_report(fanout))
    print()
    print(targets_report(chain, fanout))


# -- raw numbers in and out -----------------------------------------------------------
def to_json(meta: dict[str, Any], raw: dict[str, dict[str, dict[int, list[Sample]]]]) -> str:
    cells: dict[str, Any] = {}
    for graph, table in raw.items():
        cells[graph] = {
            name: {
                str(size): {
                    **asdict(Stats.of(samples)),
                    "wall": [s.wall for s in samples],
                    "cpu": [s.cpu for s in samples],
                }
                for size, samples in by_size.items()
            }
            for name, by_size in table.items()
        }
    return json.dumps({"meta": meta, "results": cells}, indent=1)


def tables_from_json(doc: dict[str, Any]) -> dict[str, Table]:
    return {
        graph: {
            name: {
                int(size): Stats(c["median"], c["p95"], c["cpu_median"], c["n"])
                for size, c in by_size.items()
            }
            for name, by_size in table.items()
        }
        for graph, table in doc["results"].items()
    }


def combine(paths: Sequence[Path]) -> tuple[dict[str, Any], dict[str, Table]]:
    """Median of the medians (and of the p95s) of several runs' JSON files."""
    docs = [json.loads(p.read_text()) for p in paths]
    tables = [tables_from_json(d) for d in docs]
    merged: dict[str, Table] = {}
    for graph, first in tables[0].items():
        merged[graph] = {}
        for name, by_size in first.items():
            merged[graph][name] = {}
            for size in by_size:
                runs = [t[graph][name][size] for t in tables]
                merged[graph][name][size] = Stats(
                    median=statistics.median(r.median for r in runs),
                    p95=statistics.median(r.p95 for r in runs),
                    cpu_median=statistics.median(r.cpu_median for r in runs),
                    n=sum(r.n for r in runs),
                )
    meta = dict(docs[0]["meta"])
    meta["runs"] = len(docs)
    meta["revisions"] = ", ".join(d["meta"].get("revision", "?") for d in docs)
    meta["loadavg_start"] = [d["meta"].get("loadavg_start") for d in docs]
    meta["loadavg_end"] = [d["meta"].get("loadavg_end") for d in docs]
    return meta, merged


# -- main --------------------------------------------------------------------------------
async def run_all(plan: Plan, tmp: Path) -> dict[str, dict[str, dict[int, list[Sample]]]]:
    raw: dict[str, dict[str, dict[int, list[Sample]]]] = {"chain": {}, "fanout": {}}
    cells: list[tuple[Graph, int]] = [("chain", n) for n in CHAIN_SIZES]
    cells += [("fanout", w) for w in FANOUT_WIDTHS]
    for graph, size in cells:
        started = time.perf_counter()
        samples = await measure_cell(graph, size, plan, tmp)
        for name, found in samples.items():
            raw[graph].setdefault(name, {})[size] = found
        print(
            f"  measured {graph} {size}: {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
    return raw


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the raw numbers here")
    parser.add_argument(
        "--combine", type=Path, nargs="+", metavar="RUN",
        help="print the median of medians of these --json files instead of measuring",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faasflow").setLevel(logging.WARNING)
    if args.combine:
        meta, tables = combine(args.combine)
        print_report(meta, tables["chain"], tables["fanout"])
        return 0
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    meta = environment()
    meta["plan"] = asdict(plan)
    with tempfile.TemporaryDirectory(prefix="faasflow-bench-") as tmp:
        raw = asyncio.run(run_all(plan, Path(tmp)))
    meta["loadavg_end"] = os.getloadavg()
    tables = {graph: {n: {s: Stats.of(v) for s, v in t.items()} for n, t in table.items()}
              for graph, table in raw.items()}
    print_report(meta, tables["chain"], tables["fanout"])
    if args.json:
        args.json.write_text(to_json(meta, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
