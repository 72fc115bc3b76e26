"""Compare-and-set, set and counter races between OS processes, for any state store URL.

Each backend's test module calls :func:`race_between_processes` with a URL of a fresh,
empty namespace of its store: four processes open the store from that URL and hammer
the same keys at once, then the parent checks that every atomic operation counted once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import faasflow
from faasflow.stores.urls import state_store_from_url

_SRC = str(Path(faasflow.__file__).resolve().parents[1])
ROUNDS = 200

# Run by each child: ``python -c CHILD URL WORKER``.
CHILD = r"""
import asyncio, json, sys
from faasflow.stores.urls import state_store_from_url

async def race(url, worker, rounds):
    async with state_store_from_url(url) as state:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
        wins, removed, sizes = 0, 0, []
        for i in range(rounds):
            current = await state.get("counter")
            new = str(int(current or b"0") + 1).encode()
            if await state.compare_and_set("counter", current, new):
                wins += 1
            sizes.append(await state.add_to_set("joined", f"shared{i % 50}"))
            sizes.append(await state.add_to_set("joined", f"w{worker}-{i % 10}"))
            if await state.remove_from_set("doomed", f"m{i % 100}"):
                removed += 1
            await state.increment("incs")
        print(json.dumps({"wins": wins, "removed": removed, "sizes": sizes}), flush=True)

asyncio.run(race(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def _read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    assert line, f"child {proc.pid} exited early with {await proc.wait()}"
    return line.decode().strip()


async def race_between_processes(url: str, workers: int = 4, rounds: int = ROUNDS) -> None:
    """Race ``workers`` processes on the store at ``url`` and check every count."""
    async with state_store_from_url(url) as state:
        for i in range(100):
            await state.add_to_set("doomed", f"m{i}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")]))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, url, str(worker), str(rounds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        for worker in range(workers)
    ]
    try:
        for proc in procs:
            assert await _read_line(proc) == "ready"
        for proc in procs:  # every worker starts at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        results = [json.loads(await _read_line(proc)) for proc in procs]
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    wins = sum(result["wins"] for result in results)
    sizes = {size for result in results for size in result["sizes"]}
    async with state_store_from_url(url) as state:
        # every successful compare-and-set incremented the counter exactly once
        assert await state.get("counter") == str(wins).encode()
        assert wins >= rounds
        assert await state.get("incs") == str(workers * rounds).encode()
        # 50 shared members and 10 of each worker's, each counted once
        members = await state.set_members("joined")
        expected = 50 + 10 * workers
        assert len(members) == len(set(members)) == expected
        assert sizes == set(range(1, expected + 1))
        # each member of "doomed" was removed by exactly one caller
        assert sum(result["removed"] for result in results) == 100
        assert await state.set_members("doomed") == []
