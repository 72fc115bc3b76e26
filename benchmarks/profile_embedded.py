"""Where the time of one benchmark cell goes: cProfile over warm requests.

Run from the repository root::

    python benchmarks/profile_embedded.py chain 1000 memory pass
    python benchmarks/profile_embedded.py fanout 1000 sqlite sync --requests 5 --top 40

It builds the same engine and graph as ``benchmarks/embedded.py``, warms it up with one
request, then profiles ``--requests`` more and prints the functions with the most own
time (``tottime``) and the most cumulative time. Profiling slows Python code down
(roughly 2x here), so read shares, not absolute times; ``--sort`` picks the order.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from embedded import (
    PAYLOAD,
    Graph,
    NodeKind,
    chain_define,
    expected_output,
    fanout_define,
    sqlite_url,
)

import faasflow


def store_url(store: str, tmp: Path, graph: Graph, size: int, kind: NodeKind) -> str:
    if store == "memory":
        return "memory://"
    return sqlite_url(tmp, graph, size, kind, "FULL" if store == "sqlite-full" else "NORMAL")


async def profile_cell(
    graph: Graph, size: int, store: str, kind: NodeKind, requests: int, tmp: Path
) -> tuple[cProfile.Profile, float]:
    """Profile ``requests`` warm requests; the profile and the mean seconds per request."""
    define = chain_define(size, kind) if graph == "chain" else fanout_define(size, kind)
    url = store_url(store, tmp, graph, size, kind)
    profiler = cProfile.Profile()
    async with faasflow.Engine(define, state_store=url, flow_name="profiled") as engine:
        assert await engine.run(PAYLOAD) == expected_output(graph, size)
        started = time.perf_counter()
        profiler.enable()
        for _ in range(requests):
            await engine.run(PAYLOAD)
        profiler.disable()
        elapsed = (time.perf_counter() - started) / requests
    return profiler, elapsed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="cProfile one cell of benchmarks/embedded.py")
    parser.add_argument("graph", choices=["chain", "fanout"])
    parser.add_argument("size", type=int)
    parser.add_argument("store", choices=["memory", "sqlite", "sqlite-full"])
    parser.add_argument("kind", choices=["pass", "sync", "async"])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    parser.add_argument("--out", type=Path, help="also dump the raw profile here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    graph, kind = cast(Graph, args.graph), cast(NodeKind, args.kind)
    with tempfile.TemporaryDirectory(prefix="faasflow-prof-") as tmp:
        profiler, elapsed = asyncio.run(
            profile_cell(graph, args.size, args.store, kind, args.requests, Path(tmp))
        )
    print(
        f"{graph} {args.size} {args.store} {kind}: {elapsed * 1e3:.2f} ms per request "
        f"under the profiler ({elapsed / args.size * 1e6:.1f} us per node)"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    if args.out:
        stats.dump_stats(str(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
