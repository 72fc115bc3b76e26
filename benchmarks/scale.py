"""Scale: what reading one request, a page of requests or a sweep costs as the store fills.

    python benchmarks/scale.py --store sqlite                  # 1k, 10k, 100k on record
    python benchmarks/scale.py --store redis --sizes 1000,1000000
    python benchmarks/scale.py --store postgresql --waiting 100000 --json out.json

For each size N it bulk-loads N finished requests of a 3-node flow (5 % failed, the rest
succeeded) and ``--waiting`` running ones whose next check is an hour away, through the
store API and the engine's own key layout and records — what real requests leave: the
record, the history (5 events), the flow's indexes, the result — in batched commits.
Then it times, each the median of ``--repeat`` runs:

* ``info`` — ``Engine.info(id, nodes=True)`` of a finished request (what ``faasflow
  status`` and the dashboard's request view ask);
* ``page`` — the first page of 50 of ``list_requests``; ``deep`` — the 21st page;
  ``failed`` — a page filtered on a status some requests have; ``none`` — filtered on
  one nobody has (``paused``);
* ``counts`` — ``Engine.counts(("running", "paused"))``, what the dashboard's flow list
  asks each refresh;
* ``sweep`` — one sweep with every waiting request not yet due;
* ``bytes/request`` — what the store holds per request (Redis ``used_memory``, the
  SQLite file, PostgreSQL's relations).

The loads add up: sizes are reached one after the other in the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import PostgresService, RedisService

import faasflow
from faasflow.engine import HistoryEntry, RequestRecord, StepRecord
from faasflow.engine import _keys as keys
from faasflow.engine.views import FAILED, SUCCEEDED
from faasflow.runtime import Engine
from faasflow.stores.base import (
    Append,
    DataStore,
    IndexPut,
    Put,
    StateStore,
    WriteOp,
)
from faasflow.stores.urls import data_store_from_url, state_store_from_url

FLOW = "scale"
NODES = ("a", "b", "c")
BATCH = 200


def define(flow: faasflow.Workflow, context: faasflow.Context) -> None:
    dag = flow.dag()
    for name in NODES:
        dag.node(name).modify(lambda data: data)
    dag.edge("a", "b")
    dag.edge("b", "c")


def finished_writes(rid: str, created: float, failed: bool) -> list[WriteOp]:
    """What a finished request of the flow leaves in the state store."""
    status = FAILED if failed else SUCCEEDED
    record = RequestRecord(FLOW, status, created, created + 0.01)
    history = [HistoryEntry(created, "request", "", "started", size=100)]
    for number, name in enumerate(NODES):
        step = StepRecord("done", started=created + number * 0.002,
                          finished=created + number * 0.002 + 0.001, size_in=100,
                          size_out=100, calls=1)
        history.append(HistoryEntry.of_step(name, "finished", step))
    history.append(HistoryEntry(created + 0.01, "request", "", status, size=100))
    return [
        Put(keys.request(rid), record.encode()),
        IndexPut(keys.flow_index(FLOW), rid, created),
        IndexPut(keys.status_index(FLOW, status), rid, created),
        *(Append(keys.history(rid), entry.encode()) for entry in history),
    ]


def waiting_writes(rid: str, created: float) -> list[WriteOp]:
    """A running request whose next check is an hour away (nothing due)."""
    record = RequestRecord(FLOW, "running", created, created)
    return [
        Put(keys.request(rid), record.encode()),
        IndexPut(keys.flow_index(FLOW), rid, created),
        IndexPut(keys.status_index(FLOW, "running"), rid, created),
        IndexPut(keys.due_index(FLOW), rid, time.time() + 3600),
        Append(keys.history(rid), HistoryEntry(created, "request", "", "started").encode()),
    ]


async def load(state: StateStore, data: DataStore, first: int, count: int,
               waiting: bool = False) -> None:
    """Requests ``first`` to ``first + count`` (finished, or waiting), in batches."""
    base = time.time() - 86400
    for start in range(first, first + count, BATCH):
        writes: list[WriteOp] = []
        for number in range(start, min(first + count, start + BATCH)):
            rid = f"{'w' if waiting else 'r'}{number:09d}"
            created = base + number * 0.001
            if waiting:
                writes += waiting_writes(rid, created)
            else:
                writes += finished_writes(rid, created, failed=number % 20 == 0)
        await state.commit(writes)
        if not waiting:
            for number in range(start, min(first + count, start + BATCH)):
                if number % 20:
                    await data.put(keys.result(f"r{number:09d}"), b"x" * 100, ttl=86400)


async def median(repeat: int, call: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        await call()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


async def measure(engine: Engine, size: int, repeat: int) -> dict[str, float]:
    some = f"r{size // 2:09d}"
    deep = None
    page = await engine.list_requests(limit=50)
    cursor = page.next
    for _ in range(19):
        cursor = (await engine.list_requests(limit=50, before=cursor)).next
    deep = cursor
    return {
        "info": await median(repeat, lambda: engine.info(some, nodes=True)),
        "page": await median(repeat, lambda: engine.list_requests(limit=50)),
        "deep": await median(repeat, lambda: engine.list_requests(limit=50, before=deep)),
        "failed": await median(repeat, lambda: engine.list_requests(status="failed", limit=50)),
        "none": await median(repeat, lambda: engine.list_requests(status="paused", limit=50)),
        "counts": await median(repeat, lambda: engine.counts(("running", "paused"))),
        "sweep": await median(repeat, engine.sweep),
    }


def store_bytes(kind: str, url: str, path: Path | None) -> int:
    if kind == "sqlite":
        assert path is not None
        return sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
    if kind == "redis":
        port = url.split(":")[2].split("/")[0]
        out = subprocess.run(["redis-cli", "-p", port, "info", "memory"], capture_output=True,
                             text=True, check=True).stdout
        return int(next(line.split(":")[1] for line in out.splitlines()
                        if line.startswith("used_memory:")))
    out = subprocess.run(
        ["psql", url, "-At", "-c", "select sum(pg_total_relation_size(c.oid)) from pg_class c "
         "join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' and "
         "n.nspname not in ('pg_catalog', 'information_schema')"],
        capture_output=True, text=True, check=True).stdout
    return int(out.strip() or 0)


async def run(args: argparse.Namespace, folder: Path) -> list[dict[str, float]]:
    service = None
    path = None
    if args.store == "sqlite":
        path = folder / "scale.db"
        url = f"sqlite:///{path}"
    elif args.store == "redis":
        service = RedisService(folder)
        url = service.url
    else:
        service = PostgresService()
        url = service.url
    if service is not None:
        service.start()
    rows: list[dict[str, float]] = []
    try:
        state, data = state_store_from_url(url), data_store_from_url(url)
        async with state, data:
            begin = time.perf_counter()
            await load(state, data, 0, args.waiting, waiting=True)
            print(f"loaded {args.waiting} waiting in {time.perf_counter() - begin:.0f} s",
                  file=sys.stderr)
            empty = store_bytes(args.store, url, path)
            loaded = 0
            for size in args.sizes:
                begin = time.perf_counter()
                await load(state, data, loaded, size - loaded)
                loaded = size
                print(f"loaded {size} finished in {time.perf_counter() - begin:.0f} s",
                      file=sys.stderr)
                async with Engine(define, flow_name=FLOW, state_store=state_store_from_url(url),
                                  data_store=data_store_from_url(url), sweep_interval=None,
                                  resend_after=30) as engine:
                    row = await measure(engine, size, args.repeat)
                row["size"] = size
                row["bytes/request"] = (store_bytes(args.store, url, path) - empty) / size
                rows.append(row)
                print(format_row(row), file=sys.stderr)
    finally:
        if service is not None:
            service.close()
    return rows


COLUMNS = ("info", "page", "deep", "failed", "none", "counts", "sweep")


def format_row(row: dict[str, float]) -> str:
    cells = [f"{int(row['size']):>9,}"] + [f"{row[c] * 1000:8.2f}" for c in COLUMNS]
    return " | ".join(cells) + f" | {row['bytes/request']:9.0f}"


def table(store: str, rows: list[dict[str, float]], waiting: int) -> str:
    head = (f"{store}, {waiting:,} waiting requests; milliseconds (median), bytes per request\n"
            "| on record | " + " | ".join(COLUMNS) + " | bytes/request |\n"
            "|---|" + "---|" * (len(COLUMNS) + 1))
    return head + "\n" + "\n".join(f"| {format_row(row)} |" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "postgresql"], default="sqlite")
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="requests on record, comma-separated, growing")
    parser.add_argument("--waiting", type=int, default=10000,
                        help="running requests loaded first, none of them due")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.sizes = sorted(int(size) for size in args.sizes.split(","))
    if args.store == "redis" and shutil.which("redis-cli") is None:
        parser.error("redis-cli is needed to read Redis's memory use")
    with tempfile.TemporaryDirectory(prefix="faasflow-scale-") as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False, cwd=Path(__file__).parent).stdout.strip()
    print(f"commit {commit}, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(table(args.store, rows, args.waiting))
    if args.json:
        args.json.write_text(json.dumps({"store": args.store, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
