"""Does a request get slower as finished requests pile up in the stores?

Run from the repository root::

    python benchmarks/retention.py                  # memory and SQLite, up to 20,000
    python benchmarks/retention.py --upto 5000 --stores memory

A finished request leaves its record, history, index entry and result in the stores
until ``result_ttl`` (a week by default), so a long-lived engine holds many of them. This
runs one warm engine per store on ``chain_1`` (one pass-through node, the cheapest
request, so any per-request cost that grows with what is stored shows up clearly) and,
at each checkpoint, times ``--samples`` requests and prints their median. The requests
between checkpoints are not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from embedded import PAYLOAD, chain_define

import faasflow

CHECKPOINTS = (100, 1_000, 5_000, 10_000, 20_000)


async def latencies(url: str, upto: int, samples: int) -> list[tuple[int, float]]:
    """(finished requests so far, median seconds of ``samples`` more) per checkpoint."""
    points: list[tuple[int, float]] = []
    done = 0
    async with faasflow.Engine(chain_define(1, "pass"), state_store=url) as engine:
        for checkpoint in (c for c in CHECKPOINTS if c <= upto):
            while done < checkpoint:
                await engine.run(PAYLOAD)
                done += 1
            timed = []
            for _ in range(samples):
                started = time.perf_counter()
                await engine.run(PAYLOAD)
                timed.append(time.perf_counter() - started)
            done += samples
            points.append((done, statistics.median(timed)))
            print(f"  {url}: {done} finished, {points[-1][1] * 1e6:,.0f} us", file=sys.stderr)
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="request latency vs finished requests kept")
    parser.add_argument("--upto", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--stores", nargs="+", default=["memory", "sqlite"],
                        choices=["memory", "sqlite"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="faasflow-retention-") as tmp:
        for store in args.stores:
            url = "memory://" if store == "memory" else f"sqlite:///{Path(tmp) / 'r.db'}"
            points = asyncio.run(latencies(url, args.upto, args.samples))
            print(f"{store}: chain_1 median latency by finished requests kept")
            for done, seconds in points:
                print(f"  {done:>7,}  {seconds * 1e6:>9,.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
