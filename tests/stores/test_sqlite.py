"""The SQLite stores: the contract, plus durability and several processes on one file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import faasflow
from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import DataStore, StateStore
from faasflow.stores.sqlite import SqliteDataStore, SqliteStateStore

from .contract import DataStoreContract, StateStoreContract, wait_past
from .races import race_between_processes

# -- the contract ----------------------------------------------------------------------


class TestSqliteState(StateStoreContract):
    @pytest.fixture
    async def state_store(self, tmp_path: Path) -> AsyncIterator[StateStore]:
        async with SqliteStateStore(tmp_path / "flow.db") as store:
            yield store


class TestSqliteData(DataStoreContract):
    @pytest.fixture
    async def data_store(self, tmp_path: Path) -> AsyncIterator[DataStore]:
        async with SqliteDataStore(tmp_path / "flow.db") as store:
            yield store


class TestSqliteInMemoryState(StateStoreContract):
    @pytest.fixture
    async def state_store(self) -> AsyncIterator[StateStore]:
        async with SqliteStateStore(":memory:") as store:
            yield store


class TestSqliteInMemoryData(DataStoreContract):
    @pytest.fixture
    async def data_store(self) -> AsyncIterator[DataStore]:
        async with SqliteDataStore(":memory:") as store:
            yield store


# -- helpers ---------------------------------------------------------------------------

_SRC = str(Path(faasflow.__file__).resolve().parents[1])

# Run by child processes: ``python -c CHILD MODE PATH [WORKER]``.
CHILD = r"""
import asyncio, json, sys, time
from faasflow.stores.sqlite import SqliteDataStore, SqliteStateStore

async def write_then_hang(path):
    state, data = SqliteStateStore(path), SqliteDataStore(path)
    for i in range(50):
        await state.set(f"v/{i}", b"value %d" % i)
        await state.add_to_set("s", f"m{i}")
        await state.append("l", b"item %d" % i)
        await data.put(f"d/{i}", bytes([i]) * 10000)
    await state.increment("n", 50)
    assert await state.compare_and_set("cas", None, b"won")
    print("written", flush=True)
    time.sleep(600)  # SIGKILLed here, with both connections open

async def write_forever(path):
    state, data = SqliteStateStore(path), SqliteDataStore(path)
    while True:
        n = await state.increment("n")
        await data.put(f"d/{n}", b"x" * 5000)
        await state.append("l", b"%d" % n)
        print(n, flush=True)

mode, path = sys.argv[1], sys.argv[2]
if mode == "write_then_hang":
    asyncio.run(write_then_hang(path))
else:
    asyncio.run(write_forever(path))
"""


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")]))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert line, f"child {proc.pid} exited early with {await proc.wait()}"
    return line.decode().strip()


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    assert await proc.wait() == -signal.SIGKILL


def row_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


# -- durability ------------------------------------------------------------------------


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    async with SqliteStateStore(path) as state, SqliteDataStore(path) as data:
        await state.set("k", b"v")
        await state.set("timed", b"v", ttl=600)
        for member in ("c", "a", "b"):
            await state.add_to_set("s", member)
        await state.append("l", b"1")
        await state.append("l", b"2")
        await state.increment("n", 3)
        await data.put("d", b"\x00blob")
    async with SqliteStateStore(path) as state, SqliteDataStore(path) as data:
        assert await state.get("k") == b"v"
        assert await state.get("timed") == b"v"
        assert await state.set_members("s") == ["c", "a", "b"]
        assert await state.read_list("l") == [b"1", b"2"]
        assert await state.increment("n") == 4
        assert await data.get("d") == b"\x00blob"


async def test_closed_store_reopens_on_use(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "flow.db")
    await store.set("k", b"v")
    await store.close()
    await store.close()  # twice is fine
    assert await store.get("k") == b"v"
    await store.close()


async def test_writes_of_a_killed_process_survive(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    proc = await spawn("write_then_hang", str(path))
    assert await read_line(proc) == "written"
    await kill(proc)
    async with SqliteStateStore(path) as state, SqliteDataStore(path) as data:
        assert await state.get_many([f"v/{i}" for i in range(50)]) == [
            b"value %d" % i for i in range(50)
        ]
        assert await state.set_members("s") == [f"m{i}" for i in range(50)]
        assert await state.read_list("l") == [b"item %d" % i for i in range(50)]
        assert await state.get("n") == b"50"
        assert await state.get("cas") == b"won"
        for i in range(50):
            assert await data.get(f"d/{i}") == bytes([i]) * 10000


async def test_process_killed_mid_write_leaves_a_sound_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    proc = await spawn("write_forever", str(path))
    last = 0
    while last < 300:
        last = int(await read_line(proc))
    await kill(proc)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with SqliteStateStore(path) as state, SqliteDataStore(path) as data:
        n = int(await state.get("n") or b"0")
        assert n >= last
        items = await state.read_list("l")
        assert items == [b"%d" % i for i in range(1, len(items) + 1)]
        assert len(items) >= last
        assert await data.get(f"d/{last}") == b"x" * 5000
        assert await state.increment("n") == n + 1


# -- several processes -----------------------------------------------------------------


async def test_compare_and_set_race_between_processes(tmp_path: Path) -> None:
    await race_between_processes(f"sqlite:///{tmp_path / 'flow.db'}")


async def test_threads_sharing_one_store(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "flow.db")

    async def worker() -> list[int]:
        values = []
        for i in range(100):
            values.append(await store.increment("n"))
            await store.add_to_set("s", f"m{i}")
        return values

    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(asyncio.run, worker()) for _ in range(4))
        )
        assert sorted(v for values in results for v in values) == list(range(1, 401))
        assert len(await store.set_members("s")) == 100
    finally:
        await store.close()


def test_forked_child_reconnects(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "flow.db")
    asyncio.run(store.set("parent", b"1"))

    async def child() -> None:
        assert await store.get("parent") == b"1"
        await store.set("child", b"2")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            asyncio.run(child())
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(store.get("child")) == b"2"
    asyncio.run(store.close())


# -- the file --------------------------------------------------------------------------


async def test_both_stores_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    async with SqliteStateStore(path) as state, SqliteDataStore(path) as data:
        await state.set("same", b"state")
        await data.put("same", b"data")
        assert await state.get("same") == b"state"
        assert await data.get("same") == b"data"
        assert await data.delete_prefix("") == 1
        assert await state.get("same") == b"state"
    assert set(row_counts(path)) == {
        "ff_data_blobs",
        "ff_state_indexes",
        "ff_state_lists",
        "ff_state_sets",
        "ff_state_values",
    }


async def test_wal_mode_and_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    async with SqliteStateStore(path) as normal, SqliteDataStore(path, synchronous="FULL") as full:
        await normal.set("k", b"v")
        await full.put("k", b"v")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # synchronous is per connection: 1 = NORMAL, 2 = FULL
        assert normal._db.conn is not None and full._db.conn is not None
        assert normal._db.conn.execute("PRAGMA synchronous").fetchone() == (1,)
        assert full._db.conn.execute("PRAGMA synchronous").fetchone() == (2,)


def test_bad_options() -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        SqliteStateStore("x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        SqliteDataStore("x.db", busy_timeout=-1)


async def test_in_memory_stores_are_private() -> None:
    async with SqliteStateStore(":memory:") as one, SqliteStateStore(":memory:") as two:
        await one.set("k", b"1")
        assert await two.get("k") is None
        assert one.path == ":memory:"


async def test_expired_rows_are_purged_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    ttl = 0.05
    async with (
        SqliteStateStore(path, purge_interval=0) as state,
        SqliteDataStore(path, purge_interval=0) as data,
    ):
        await state.set("v", b"x", ttl=ttl)
        await state.add_to_set("s", "a", ttl=ttl)
        await state.add_to_set("s", "b")
        await state.append("l", b"1", ttl=ttl)
        await state.append("l", b"2")
        await state.index_put("x", "a", 1.0, ttl=ttl)
        await data.put("d", b"x", ttl=ttl)
        await state.set("keep", b"x", ttl=600)
        await data.put("keep", b"x")
        assert row_counts(path) == {
            "ff_data_blobs": 2,
            "ff_state_indexes": 1,
            "ff_state_lists": 2,
            "ff_state_sets": 2,
            "ff_state_values": 2,
        }
        await wait_past(ttl)
        await state.set("trigger", b"x")  # any write purges (purge_interval=0)
        await data.put("trigger", b"x")
        assert row_counts(path) == {
            "ff_data_blobs": 2,
            "ff_state_indexes": 0,
            "ff_state_lists": 0,
            "ff_state_sets": 0,
            "ff_state_values": 2,
        }


async def test_purge_waits_for_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"
    async with SqliteStateStore(path, purge_interval=3600) as state:
        await state.set("first", b"x")  # the first write purges, then not for an hour
        for i in range(5):
            await state.set(f"v{i}", b"x", ttl=0.05)
        await wait_past(0.05)
        await state.set("later", b"x")
        assert row_counts(path)["ff_state_values"] == 7
        assert await state.keys("") == ["first", "later"]
        assert await state.purge_expired() == 5
        assert row_counts(path)["ff_state_values"] == 2


async def test_file_size_stays_bounded_under_expiring_data(tmp_path: Path) -> None:
    path = tmp_path / "flow.db"

    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.iterdir())

    sizes = []
    async with SqliteDataStore(path, purge_interval=0) as data:
        for round_ in range(6):
            for i in range(100):
                await data.put(f"r{round_}/{i}", os.urandom(16 * 1024), ttl=0.05)
            await wait_past(0.05)
            await data.put("tick", b"x")  # purges this round's rows
            sizes.append(size())
    assert row_counts(path)["ff_data_blobs"] == 1
    assert sizes[-1] <= sizes[1] * 1.5, sizes


# -- errors ----------------------------------------------------------------------------


async def test_unwritable_path_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a directory should be")
    path = blocker / "flow.db"
    state = SqliteStateStore(path)
    with pytest.raises(StoreError, match=re.escape("not-a-directory/flow.db")):
        await state.open()
    with pytest.raises(StoreError, match="get failed"):
        await state.get("k")
    data = SqliteDataStore(path)
    with pytest.raises(StoreError, match=re.escape("not-a-directory/flow.db")):
        await data.put("k", b"v")


async def test_not_a_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match=re.escape("garbage.db")):
        async with SqliteStateStore(path) as state:
            await state.get("k")


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    async with SqliteStateStore(tmp_path / "flow.db") as state:
        await state.set("n", b"not a number")
        with pytest.raises(ValueError):
            await state.increment("n")
        assert await state.get("n") == b"not a number"
        assert await state.increment("m") == 1  # no transaction left open
