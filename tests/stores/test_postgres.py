"""The PostgreSQL stores against a real cluster that the test suite starts."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import Append, DataStore, IndexDrop, IndexPut, Put, StateStore
from faasflow.stores.postgres import PostgresDataStore, PostgresStateStore
from faasflow.stores.urls import data_store_from_url, state_store_from_url
from servers import free_port
from servers.postgres import postgres_cluster

from .contract import (
    LONG_TTL,
    DataStoreContract,
    StateStoreContract,
    eventually,
    wait_past,
)
from .races import race_between_processes

_prefixes = itertools.count()


def _prefix() -> str:
    # One cluster for the session; each test's tables under their own prefix.
    return f"t{os.getpid()}_{next(_prefixes)}_"


class TestPostgresState(StateStoreContract):
    @pytest.fixture
    async def state_store(self, postgres_url: str) -> AsyncIterator[StateStore]:
        async with PostgresStateStore(postgres_url, table_prefix=_prefix()) as store:
            yield store


class TestPostgresData(DataStoreContract):
    @pytest.fixture
    async def data_store(self, postgres_url: str) -> AsyncIterator[DataStore]:
        async with PostgresDataStore(postgres_url, table_prefix=_prefix()) as store:
            yield store


async def test_compare_and_set_race_between_processes(postgres_url: str) -> None:
    await race_between_processes(f"{postgres_url}?table_prefix={_prefix()}&pool_max=4")


async def _count_rows(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return count
    finally:
        await conn.close()


# -- opening ---------------------------------------------------------------------------


async def test_stores_opening_at_once_create_the_tables_once(postgres_url: str) -> None:
    # Separate pools, so the DDL really runs concurrently (under the advisory lock).
    prefix = _prefix()
    states = [PostgresStateStore(postgres_url, table_prefix=prefix) for _ in range(4)]
    datas = [PostgresDataStore(postgres_url, table_prefix=prefix) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in [*states, *datas]))
        await states[0].set("k", b"v")
        await datas[0].put("k", b"d")
        assert [await state.get("k") for state in states] == [b"v"] * 4
        assert [await data.get("k") for data in datas] == [b"d"] * 4
    finally:
        for store in [*states, *datas]:
            await store.close()


async def test_operations_open_the_store_on_first_use(postgres_url: str) -> None:
    store = PostgresStateStore(postgres_url, table_prefix=_prefix())
    try:
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()
    async with store:  # closed stores open again
        assert await store.get("k") == b"v"


async def test_a_schema_holds_the_tables(postgres_url: str) -> None:
    prefix, schema = _prefix(), f"s{_prefix()}"
    async with PostgresStateStore(postgres_url, table_prefix=prefix, schema=schema) as inside, \
            PostgresStateStore(postgres_url, table_prefix=prefix) as outside, \
            PostgresDataStore(postgres_url, table_prefix=prefix, schema=schema) as data:
        await inside.set("k", b"in")
        await data.put("k", b"data")
        assert await outside.get("k") is None
        assert await _count_rows(postgres_url, f"{schema}.{prefix}values") == 1
        assert await _count_rows(postgres_url, f"{schema}.{prefix}blobs") == 1


# -- stores apart ----------------------------------------------------------------------


async def test_table_prefixes_keep_stores_apart(postgres_url: str) -> None:
    one_prefix, two_prefix = _prefix(), _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=one_prefix) as one, \
            PostgresStateStore(postgres_url, table_prefix=two_prefix) as two, \
            PostgresDataStore(postgres_url, table_prefix=one_prefix) as data_one, \
            PostgresDataStore(postgres_url, table_prefix=two_prefix) as data_two:
        await one.set("k", b"1")
        await one.add_to_set("s", "m")
        await one.append("l", b"i")
        await data_one.put("k", b"d")
        assert await two.get("k") is None
        assert await two.set_members("s") == []
        assert await two.read_list("l") == []
        assert await data_two.get("k") is None
        assert await two.delete_prefix("") == 0
        assert await data_two.delete_prefix("") == 0
        assert await one.get("k") == b"1"
        assert await data_one.get("k") == b"d"


# -- semantics beyond the contract -----------------------------------------------------


async def test_keys_sort_by_code_point(postgres_url: str) -> None:
    keys = ["a", "Z", "é", "z", "\U0001f600", "\uffff", "a b", "a\x01", "~"]
    async with PostgresStateStore(postgres_url, table_prefix=_prefix()) as store:
        for key in keys:
            await store.set(key, b"v")
        assert await store.keys("") == sorted(keys)
        assert await store.keys("a") == sorted(k for k in keys if k.startswith("a"))


async def test_commit_requiring_absence_races_compare_and_set(postgres_url: str) -> None:
    # A required-absent key is held by a placeholder row: a creator waits for the commit.
    async with PostgresStateStore(postgres_url, table_prefix=_prefix()) as store:
        for i in range(20):
            key = f"k{i}"
            committed, created = await asyncio.gather(
                store.commit([Put(key, b"commit")], require={key: None}),
                store.compare_and_set(key, None, b"cas"),
            )
            assert committed != created
            assert await store.get(key) == (b"commit" if committed else b"cas")


async def test_failed_commit_leaves_no_rows(postgres_url: str) -> None:
    prefix = _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as store:
        await store.set("present", b"x")
        assert not await store.commit([Put("a", b"1")], require={"absent": None, "present": b"y"})
        assert await store.commit([Put("a", b"1")], require={"absent": None, "present": b"x"})
        assert await _count_rows(postgres_url, f"{prefix}values") == 2  # present, a


async def test_expired_rows_are_purged(postgres_url: str) -> None:
    prefix = _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as state, \
            PostgresDataStore(postgres_url, table_prefix=prefix) as data:
        await state.set("v", b"x", ttl=0.05)
        await state.add_to_set("s", "m", ttl=0.05)
        await state.append("l", b"i", ttl=0.05)
        await state.index_put("x", "m", 1.0, ttl=0.05)
        await state.set("keep", b"x", ttl=LONG_TTL)
        await state.index_put("emptied", "m", 1.0)
        await state.index_drop("emptied", "m")
        await data.put("d", b"x", ttl=0.05)
        await wait_past(0.05)
        assert await state.purge_expired() == 4
        assert await data.purge_expired() == 1
        for table, rows in [("values", 1), ("set_heads", 0), ("set_members", 0),
                            ("list_heads", 0), ("list_items", 0), ("index_heads", 0),
                            ("index_entries", 0), ("blobs", 0)]:
            assert await _count_rows(postgres_url, f"{prefix}{table}") == rows, table


async def test_purge_runs_in_the_background(postgres_url: str) -> None:
    prefix = _prefix()
    async with PostgresStateStore(
        postgres_url, table_prefix=prefix, purge_interval=0.01
    ) as store:
        await store.set("v", b"x", ttl=0.05)
        await wait_past(0.05)

        async def purged() -> bool:
            await store.set("other", b"x")  # any operation may start the purge
            return await _count_rows(postgres_url, f"{prefix}values") == 1

        assert await eventually(purged, 10)


async def test_url_options_reach_the_server(postgres_url: str) -> None:
    url = (f"{postgres_url}?table_prefix={_prefix()}&application_name=flows"
           "&options=-c%20statement_timeout%3D12345")
    async with state_store_from_url(url) as store:
        assert isinstance(store, PostgresStateStore)
        pool = await store._ready("test")
        assert await pool.fetchval("SHOW statement_timeout") == "12345ms"
        assert await pool.fetchval("SHOW application_name") == "flows"


async def _scanned(pool: asyncpg.Pool, sql: str, *args: object) -> list[tuple[str, int]]:
    """The tables or indexes the plan of ``sql`` reads, with the rows each returned."""
    (plan,) = json.loads(await pool.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))
    found: list[tuple[str, int]] = []

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Index Name") or node.get("Relation Name")
        if isinstance(name, str):
            found.append((name, int(node["Actual Rows"])))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return found


async def test_pages_and_ranges_read_only_what_they_return(postgres_url: str) -> None:
    prefix = _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as store:
        await store.commit([Append("l", b"%d" % n) for n in range(500)])
        # Every entry with one score: only the member bound tells where a range starts.
        await store.commit([IndexPut("ix", f"m{n:04d}", 0.0) for n in range(500)])
        pool = await store._ready("test")
        await pool.execute("ANALYZE")
        sql = store._sql
        reads = [
            (sql.read_list, ("l", 250, 260), f"{prefix}list_items_pos", 10),
            (sql.read_list, ("l", -1, None), f"{prefix}list_items_pos", 1),
            (sql.index_ranges[True, False, False], ("ix", 0.0, "m0250", 10),
             f"{prefix}index_entries_order", 10),
            (sql.index_ranges[False, True, True], ("ix", 0.0, "m0250", 10),
             f"{prefix}index_entries_order", 10),
        ]
        for statement, args, index, rows in reads:
            scanned = await _scanned(pool, statement, *args)
            assert (index, rows) in scanned, scanned
            assert all(n <= rows for table, n in scanned if "heads" not in table), scanned
        assert await store.read_list("l", start=250, stop=253) == [b"250", b"251", b"252"]
        assert await store.index_range("ix", before=(0.0, "m0250"), limit=2,
                                       descending=True) == [(0.0, "m0249"), (0.0, "m0248")]


async def test_a_version_1_schema_is_brought_up_to_date(postgres_url: str) -> None:
    # Version 1 had lists without positions or lengths, and no ordered indexes. Make
    # that layout (from today's, taking away what version 2 added), with lists in it.
    prefix = _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as store:
        await store.open()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"""
            DROP TABLE {prefix}index_heads, {prefix}index_entries;
            DROP INDEX {prefix}list_items_pos;
            ALTER TABLE {prefix}list_items DROP COLUMN pos;
            ALTER TABLE {prefix}list_heads DROP COLUMN size;
            COMMENT ON TABLE {prefix}values IS 'faasflow state store schema 1';
            INSERT INTO {prefix}list_heads (key) VALUES ('l'), ('m');
            INSERT INTO {prefix}list_items (key, value)
                VALUES ('l', 'a'), ('m', '1'), ('l', 'b'), ('l', 'c'), ('m', '2');
        """)
    finally:
        await conn.close()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as store:
        assert await store.read_list("l") == [b"a", b"b", b"c"]
        assert await store.read_list("l", start=-2) == [b"b", b"c"]
        assert await store.list_length("m") == 2
        await store.append("l", b"d")
        assert await store.read_list("l", start=2) == [b"c", b"d"]
        await store.index_put("ix", "m", 1.0)
        assert await store.index_range("ix", limit=5) == [(1.0, "m")]


async def test_writers_of_one_index_run_side_by_side(postgres_url: str) -> None:
    async with PostgresStateStore(postgres_url, table_prefix=_prefix(), pool_max=8) as store:
        members = [f"m{n:02d}" for n in range(40)]
        await asyncio.gather(*(store.index_put("ix", m, float(n)) for n, m in enumerate(members)))
        assert await store.index_size("ix") == 40
        # Moves and drops at once, each in a commit with other writes.
        await asyncio.gather(*(
            store.commit([Put(f"k{n}", b"x"), IndexDrop("ix", m) if n % 2 else
                          IndexPut("ix", m, -float(n))])
            for n, m in enumerate(members)
        ))
        expected = sorted((-float(n), m) for n, m in enumerate(members) if n % 2 == 0)
        assert await store.index_range("ix", limit=100) == expected


async def test_writers_of_an_expired_index_start_it_again_once(postgres_url: str) -> None:
    async with PostgresStateStore(postgres_url, table_prefix=_prefix(), pool_max=8) as store:
        await store.index_put("ix", "old", 1.0, ttl=0.05)
        await wait_past(0.05)
        fresh = [f"m{n:02d}" for n in range(20)]
        await asyncio.gather(*(store.index_put("ix", m, 2.0) for m in fresh))
        assert await store.index_range("ix", limit=100) == [(2.0, m) for m in fresh]


async def test_calls_over_the_message_limit_are_refused_before_sending(
    postgres_url: str,
) -> None:
    prefix = _prefix()
    async with PostgresStateStore(postgres_url, table_prefix=prefix) as state, \
            PostgresDataStore(postgres_url, table_prefix=prefix) as data:
        # The real limit is 1 GiB; a store told of a smaller one shows the check.
        state.max_message_bytes = data.max_message_bytes = 4096
        await data.put("fits", b"x" * 3000)
        with pytest.raises(StoreError, match=r"put of 'big' refused: .* 1 GB|put of 'big'"):
            await data.put("big", b"x" * 5000)
        with pytest.raises(StoreError, match=r"commit of 'b' refused: .*the largest 3000 bytes"):
            await state.commit([Put("a", b"x" * 2000), Put("b", b"x" * 3000)])
        with pytest.raises(StoreError, match=r"set of 'k' refused"):
            await state.set("k", b"x" * 5000)
        with pytest.raises(StoreError, match=r"append of 'l' refused"):
            await state.append("l", b"x" * 5000)
        assert await state.get_many(["a", "b", "k"]) == [None, None, None]
        assert await data.get("big") is None
        assert await data.get("fits") == b"x" * 3000


# -- failures --------------------------------------------------------------------------


async def test_an_unreachable_server_is_a_store_error() -> None:
    url = f"postgresql://user:s3cret@127.0.0.1:{free_port()}/db"
    store = PostgresStateStore(url, connect_timeout=5)
    try:
        with pytest.raises(StoreError, match=r"PostgreSQL store .*open failed") as raised:
            await store.open()
        assert "s3cret" not in str(raised.value)
        assert "user:***@" in str(raised.value)
        with pytest.raises(StoreError, match=r"PostgreSQL store .*get failed"):
            await store.get("k")
    finally:
        await store.close()
    data = PostgresDataStore(url)
    try:
        with pytest.raises(StoreError, match=r"PostgreSQL store .*put failed"):
            await data.put("k", b"v")
    finally:
        await data.close()


async def test_a_server_error_is_a_store_error(postgres_url: str) -> None:
    async with PostgresStateStore(postgres_url, table_prefix=_prefix()) as store:
        await store.set("text", b"not a number")
        with pytest.raises(StoreError, match=r"increment failed"):
            await store.increment("text")
        with pytest.raises(StoreError, match=r"set failed"):
            await store.set("nul\x00key", b"v")  # PostgreSQL text cannot hold NUL
        assert await store.get("text") == b"not a number"


async def test_the_server_going_away_and_coming_back(tmp_path: Path) -> None:
    with postgres_cluster(tmp_path) as cluster:
        url = f"{cluster.url}?table_prefix=restart_&connect_timeout=5"
        async with state_store_from_url(url) as state, data_store_from_url(url) as data:
            await state.set("k", b"before")
            await data.put("k", b"data")
            cluster.stop()
            with pytest.raises(StoreError, match=r"get failed"):
                await state.get("k")
            with pytest.raises(StoreError, match=r"put failed"):
                await data.put("k", b"during")
            cluster.start()

            async def back() -> bool:
                try:
                    return await state.get("k") == b"before"
                except StoreError:
                    return False

            assert await eventually(back, 30)
            assert await state.add_to_set("s", "m") == 1
            assert await state.compare_and_set("k", b"before", b"after")
            assert await data.get("k") == b"data"  # the pool reconnects each connection
            await data.put("k", b"after")
            assert await data.get("k") == b"after"


# -- URLs ------------------------------------------------------------------------------


def test_url_options() -> None:
    url = ("postgres://u:pw@db.example:5433/flows?table_prefix=ff_&schema=faas&pool_min=0"
           "&pool_max=3&purge_interval=5&connect_timeout=2.5&sslmode=require"
           "&application_name=app&options=-c%20search_path%3Dx%20--lock-timeout%3D10")
    state = state_store_from_url(url)
    assert isinstance(state, PostgresStateStore)
    assert state.dsn == "postgresql://u:pw@db.example:5433/flows?sslmode=require"
    assert (state.table_prefix, state.schema) == ("ff_", "faas")
    assert (state.pool_min, state.pool_max) == (0, 3)
    assert (state.purge_interval, state.connect_timeout) == (5.0, 2.5)
    assert state.server_settings == {
        "application_name": "app", "search_path": "x", "lock_timeout": "10"
    }
    assert "pw" not in repr(state)
    data = data_store_from_url("postgresql://127.0.0.1/db")
    assert isinstance(data, PostgresDataStore)
    assert (data.table_prefix, data.schema, data.pool_max) == ("faasflow_", None, 10)
    assert data.server_settings == {"application_name": "faasflow"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://db/x?nope=1", "unknown option 'nope'"),
        ("postgresql://db/x?keepalives=1", "unknown option 'keepalives'"),
        ("postgresql://db/x?table_prefix=Bad-Name", "table_prefix='Bad-Name'"),
        ("postgresql://db/x?table_prefix=", "table_prefix=''"),
        ("postgresql://db/x?schema=pg_catalog", "schema='pg_catalog'"),
        ("postgresql://db/x?pool_max=ten", "pool_max='ten' is not a whole number"),
        ("postgresql://db/x?pool_max=0", "pool_max=0"),
        ("postgresql://db/x?pool_min=5&pool_max=2", "pool_min=5"),
        ("postgresql://db/x?purge_interval=-1", "purge_interval=-1.0"),
        ("postgresql://db/x?connect_timeout=soon", "connect_timeout='soon'"),
        ("postgresql://db/x?sslmode=sometimes", "sslmode='sometimes'"),
        ("postgresql://db/x?options=-x", "options='-x'"),
        ("postgresql://db/x?options=-c%20novalue", "'-cnovalue' is not name=value"),
        ("postgresql://db/x?pool_max=1&pool_max=2", "'pool_max' is given twice"),
        ("postgresql://db/x?a", "malformed query"),
        ("postgresql://db:port/x", "port"),
        ("postgresql://db/x#frag", "fragment"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    for from_url in (state_store_from_url, data_store_from_url):
        with pytest.raises(ConfigurationError, match=message) as raised:
            from_url(url)
        assert url in str(raised.value)


def test_bad_url_errors_hide_passwords() -> None:
    for url in ("postgresql://user:s3cret@db:5432/flows?nope=1",
                "postgresql://user@db/flows?password=s3cret&nope=1"):
        with pytest.raises(ConfigurationError, match="nope") as raised:
            PostgresStateStore.from_url(url)
        assert "s3cret" not in str(raised.value)
        assert "***" in str(raised.value)


def test_from_url_is_for_postgres_urls() -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresDataStore.from_url("redis://db/0")
