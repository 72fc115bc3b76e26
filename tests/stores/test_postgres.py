"""The PostgreSQL stores against a real cluster that the test suite starts."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import DataStore, Put, StateStore
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
        await state.set("keep", b"x", ttl=LONG_TTL)
        await data.put("d", b"x", ttl=0.05)
        await wait_past(0.05)
        assert await state.purge_expired() == 3
        assert await data.purge_expired() == 1
        for table, rows in [("values", 1), ("set_heads", 0), ("set_members", 0),
                            ("list_heads", 0), ("list_items", 0), ("blobs", 0)]:
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
