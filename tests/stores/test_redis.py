"""The Redis stores against a real ``redis-server`` that the test suite starts."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import Append, DataStore, Delete, IndexDrop, IndexPut, Put, StateStore
from faasflow.stores.redis import RedisDataStore, RedisStateStore
from faasflow.stores.urls import state_store_from_url
from servers import free_port, require_binary, stop_process, wait_until_ready
from servers.redis import redis_server

from .contract import DataStoreContract, StateStoreContract, wait_past
from .races import race_between_processes

_namespaces = itertools.count()


def _namespace() -> str:
    # One server for the session; each test in its own namespace.
    return f"t{next(_namespaces)}:"


class TestRedisState(StateStoreContract):
    @pytest.fixture
    async def state_store(self, redis_url: str) -> AsyncIterator[StateStore]:
        async with RedisStateStore(redis_url, namespace=_namespace()) as store:
            yield store


class TestRedisData(DataStoreContract):
    @pytest.fixture
    async def data_store(self, redis_url: str) -> AsyncIterator[DataStore]:
        async with RedisDataStore(redis_url, namespace=_namespace()) as store:
            yield store


async def test_an_unreachable_server_is_a_store_error() -> None:
    async with RedisStateStore("redis://127.0.0.1:9/0") as store:
        with pytest.raises(StoreError, match=r"Redis store .*get failed"):
            await store.get("k")


async def test_namespaces_keep_stores_apart(redis_url: str) -> None:
    async with RedisStateStore(redis_url, namespace="a:") as one, \
            RedisStateStore(redis_url, namespace="b:") as two:
        await one.set("k", b"1")
        assert await two.get("k") is None
        assert await two.delete_prefix("") == 0
        assert await one.get("k") == b"1"


async def test_compare_and_set_race_between_processes(redis_url: str) -> None:
    await race_between_processes(f"{redis_url}?namespace={_namespace()}")


async def test_a_folder_is_deleted_from_its_index_without_scanning(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = _namespace()
    async with RedisStateStore(redis_url, namespace=namespace) as state, \
            RedisDataStore(redis_url, namespace=namespace) as data:
        await state.set("r/R1/n/a", b"1")
        await state.compare_and_set("r/R1/n/b", None, b"2")
        await state.commit([Put("r/R1/p/x", b"3"), Append("r/R1/l/y", b"4")])
        await state.add_to_set("r/R1/j/c", "m")
        await state.increment("r/R1/k", 5)
        await state.index_put("r/R1/x", "m", 1.0)
        await state.set("r/R1/gone", b"x", ttl=0.01)
        await state.set("r/R10/n/a", b"neighbour")
        await state.set("r/R1", b"the record itself")
        await data.put("R1/o/a", b"out")
        await data.put("R1/in", b"in")
        await data.put("R10/in", b"neighbour")
        await asyncio.sleep(0.05)  # r/R1/gone expires

        async def no_scan(pattern: str) -> list[bytes]:
            raise AssertionError(f"scanned for {pattern}")

        monkeypatch.setattr(state, "_scan", no_scan)
        monkeypatch.setattr(data, "_scan", no_scan)
        assert await state.delete_prefix("r/R1/") == 7  # the live ones, every kind
        assert await data.delete_prefix("R1/") == 2
        assert await state.get("r/R1/n/a") is None
        assert await state.set_members("r/R1/j/c") == []
        assert await state.read_list("r/R1/l/y") == []
        assert await state.index_size("r/R1/x") == 0
        assert await state.get("r/R10/n/a") == b"neighbour"
        assert await state.get("r/R1") == b"the record itself"
        assert await data.get("R1/in") is None
        assert await data.get("R10/in") == b"neighbour"
        # nothing of the folder is left behind, its index included
        client = aioredis.Redis.from_url(redis_url)
        try:
            left = sorted([k.decode() async for k in client.scan_iter(match=f"{namespace}*")])
        finally:
            await client.aclose()
        assert left == sorted(
            f"{namespace}{k}"
            for k in ("v:{r/R10}/n/a", "i:{r/R10}/", "v:{r/R1}", "d:{R10}/in", "i:{R10}/")
        )


async def test_keys_within_a_folder_are_read_from_its_index(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RedisStateStore(redis_url, namespace=_namespace()) as state:
        await state.set("r/R1/n/b", b"1")
        await state.commit([Put("r/R1/n/a", b"2")])
        await state.compare_and_set("r/R1/n/c/d", None, b"3")
        await state.increment("r/R1/k", 1)
        await state.set("r/R1/n/gone", b"x", ttl=0.01)
        await state.set("r/R1/n/deleted", b"x")
        await state.delete("r/R1/n/deleted")
        await state.add_to_set("r/R1/n/set", "m")  # other kinds are not plain keys
        await state.append("r/R1/n/list", b"x")
        await state.index_put("r/R1/n/ix", "m", 1.0)
        await state.set("r/R10/n/a", b"neighbour")
        await state.set("r/R1", b"the record itself")
        await wait_past(0.01)

        async def no_scan(pattern: str) -> list[bytes]:
            raise AssertionError(f"scanned for {pattern}")

        with monkeypatch.context() as patched:
            patched.setattr(state, "_scan", no_scan)
            assert await state.keys("r/R1/n/") == ["r/R1/n/a", "r/R1/n/b", "r/R1/n/c/d"]
            assert await state.keys("r/R1/") == ["r/R1/k", "r/R1/n/a", "r/R1/n/b", "r/R1/n/c/d"]
            assert await state.keys("r/R1/n/", limit=2) == ["r/R1/n/a", "r/R1/n/b"]
            assert await state.keys("r/R1/n/c") == ["r/R1/n/c/d"]
            assert await state.keys("r/R2/") == []
        # A prefix spanning folders is scanned for.
        assert await state.keys("r/R1") == [
            "r/R1", "r/R1/k", "r/R1/n/a", "r/R1/n/b", "r/R1/n/c/d", "r/R10/n/a"]


def _start_cluster_node(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A one-node Redis Cluster holding every slot: it refuses commands whose keys
    hash to different slots, as every cluster does."""
    binary = require_binary("redis-server", "redis-server")
    port, bus = free_port(), free_port()
    while bus == port:
        bus = free_port()
    # The cluster bus port defaults to port + 10000, past 65535 for a high free port.
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(workdir), "--cluster-enabled", "yes", "--cluster-port", str(bus)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until_ready(process, answers, f"redis-server (cluster) on port {port}")
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until_ready(
            process, lambda: client.cluster("INFO")["cluster_state"] == "ok", "the cluster"
        )
    except BaseException:
        stop_process(process)
        raise
    finally:
        client.close()
    return process, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = _start_cluster_node(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield url
    finally:
        stop_process(process)


async def test_a_requests_keys_share_one_cluster_slot(redis_cluster_url: str) -> None:
    async with RedisStateStore(redis_cluster_url, namespace="c:") as state, \
            RedisDataStore(redis_cluster_url, namespace="c:") as data:
        # Every operation over one request's keys, its record included, is one slot's.
        assert await state.commit(
            [Put("r/R", b"record"), Put("r/R/n/a", b"1"), Append("r/R/l", b"x"),
             IndexPut("r/R/ix", "m", 1.0), Delete("r/R/n/gone")],
            require={"r/R": None},
        )
        assert await state.compare_and_set("r/R/n/b", None, b"2")
        assert await state.add_to_set("r/R/j/x", "parent") == 1
        assert await state.increment("r/R/k") == 1
        assert await state.commit([IndexDrop("r/R/ix", "m")], require={"r/R/n/a": b"1"})
        await state.expire("r/R/n/a", 600)
        assert await state.keys("r/R/n/") == ["r/R/n/a", "r/R/n/b"]
        assert await state.get_many(["r/R", "r/R/n/a"]) == [b"record", b"1"]
        await state.delete("r/R/n/b")
        assert await state.delete_prefix("r/R/") == 4
        await data.put("R/o/a", b"out")
        assert await data.delete_prefix("R/") == 1
        # Keys of two requests in one commit are refused.
        with pytest.raises(StoreError, match="CROSSSLOT"):
            await state.commit([Put("r/A/n/a", b"1"), Put("r/B/n/a", b"1")])
    # A namespace with its own hash tag puts the whole store in one slot.
    async with RedisStateStore(redis_cluster_url, namespace="{app}:") as pinned:
        assert await pinned.commit(
            [Put("r/A/n/a", b"1"), Put("r/B/n/a", b"2"), IndexPut("f:flow", "A", 1.0),
             Append("h/A", b"x")],
            require={"r/A": None},
        )
        assert await pinned.get_many(["r/A/n/a", "r/B/n/a"]) == [b"1", b"2"]


async def test_a_value_longer_than_the_server_takes_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as url:
        client = aioredis.Redis.from_url(url)
        try:
            await client.config_set("proto-max-bulk-len", "1mb")
        finally:
            await client.aclose()
        fits, too_long = b"x" * (1 << 20), b"x" * ((1 << 20) + 1)
        async with RedisStateStore(url, namespace="n:") as state, \
                RedisDataStore(url, namespace="n:") as data:
            await data.put("R/o/fits", fits)
            assert await data.get("R/o/fits") == fits
            limit = r"proto-max-bulk-len, 1048576 bytes"
            with pytest.raises(StoreError, match=rf"put of 'R/o/big' refused: .*{limit}"):
                await data.put("R/o/big", too_long)
            with pytest.raises(StoreError, match=rf"commit of 'r/R/n/b' refused: .*{limit}"):
                await state.commit([Put("r/R/n/a", b"small"), Put("r/R/n/b", too_long)])
            with pytest.raises(StoreError, match=rf"set of 'k' refused: .*{limit}"):
                await state.set("k", too_long)
            with pytest.raises(StoreError, match=rf"commit of 'h/R' refused: .*{limit}"):
                await state.append("h/R", too_long)
            with pytest.raises(StoreError, match=rf"compare_and_set of 'k' refused: .*{limit}"):
                await state.compare_and_set("k", None, too_long)
            # Nothing was sent: the connections are fine and nothing was written.
            assert await state.get_many(["r/R/n/a", "r/R/n/b", "k"]) == [None, None, None]
            assert await data.get("R/o/big") is None


async def test_the_url_selects_the_database(redis_url: str) -> None:
    other_db = redis_url.rsplit("/", 1)[0] + "/3"
    async with RedisStateStore(other_db, namespace="db:") as three, \
            RedisStateStore(redis_url, namespace="db:") as zero:
        await three.set("k", b"in 3")
        assert await zero.get("k") is None
        assert await three.get("k") == b"in 3"
        await three.delete_prefix("")


async def test_a_refused_password_is_a_store_error(redis_url: str) -> None:
    with_password = redis_url.replace("redis://", "redis://:not-the-password@")
    async with RedisStateStore(with_password) as store:
        with pytest.raises(StoreError, match="AUTH"):
            await store.get("k")


async def test_a_pooled_connection_closed_by_the_server_is_replaced(redis_url: str) -> None:
    async with RedisStateStore(redis_url, namespace=_namespace()) as store:
        await store.set("k", b"v")
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.client_kill_filter(_type="normal", skipme=True)
        finally:
            await client.aclose()
        assert await store.get("k") == b"v"  # on a new connection, no error


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?retry_on_timeout=yes", "unknown option 'retry_on_timeout'"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "not a number of seconds"),
        ("redis://127.0.0.1:6379/zero", "database 'zero' is not a number"),
        ("redis://127.0.0.1:port/0", "the port must be a number from 0 to 65535"),
        ("redis://127.0.0.1:6379/0@x", "percent-encode the credentials"),
    ],
)
def test_bad_redis_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        state_store_from_url(url)


async def test_a_server_that_does_not_answer_is_a_store_error_after_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the command, never replies
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RedisStateStore(f"redis://127.0.0.1:{port}/0?socket_timeout=0.2") as store:
            with pytest.raises(StoreError, match=r"no reply within 0.2s"):
                await store.get("k")
    finally:
        server.close()
        await server.wait_closed()


_BUSY = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 1
"""


async def test_a_write_that_timed_out_is_not_sent_again(redis_url: str) -> None:
    # Redis busy for 300 ms (a script on another connection) while an increment waits
    # 100 ms for its reply: the increment reached the server and runs once it is free.
    # The client must report the timeout, not resend it (which would count it twice).
    namespace = _namespace()
    busy = aioredis.Redis.from_url(redis_url)
    try:
        async with RedisStateStore(
            f"{redis_url}?socket_timeout=0.1", namespace=namespace
        ) as store:
            await store.set("warm", b"")  # one pooled connection, as in a running engine
            blocker = asyncio.create_task(busy.eval(_BUSY, 0, 300))
            await asyncio.sleep(0.05)
            with pytest.raises(StoreError, match=r"no reply within 0\.1s"):
                await store.increment("counter")
            await blocker
        async with RedisStateStore(redis_url, namespace=namespace) as store:
            assert await store.get("counter") == b"1"
    finally:
        await busy.aclose()


class HangingUpServer:
    """A RESP server that records every command it receives and answers it, except
    that it hangs up on the command after :meth:`hang_up_next` without answering, as a
    server that restarted right after reading it would."""

    def __init__(self) -> None:
        self.received: list[list[bytes]] = []
        self._hang_up = False
        self.server: asyncio.Server | None = None

    def hang_up_next(self) -> None:
        self._hang_up = True

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readline()
                if not header:
                    return
                command = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    command.append((await reader.readexactly(size + 2))[:-2])
                self.received.append(command)
                if self._hang_up:
                    self._hang_up = False
                    return
                writer.write(b"$1\r\nv\r\n" if command[0] == b"GET" else b"+OK\r\n")
        finally:
            writer.close()


async def test_a_write_whose_connection_broke_after_sending_is_an_error_not_a_resend() -> None:
    # The pooled connection breaks after the write reached the server: it may have run,
    # so it is reported, not sent again. A read in the same plight goes again on a
    # fresh connection: it changes nothing.
    server = HangingUpServer()
    async with server as url, RedisStateStore(url, namespace="n:") as store:
        await store.set("k", b"v")  # a pooled connection
        server.hang_up_next()
        with pytest.raises(StoreError, match="set failed"):
            await store.set("k", b"w")
        assert [c[0] for c in server.received] == [b"SET", b"SET"]
        assert await store.get("k") == b"v"  # a pooled connection again
        server.hang_up_next()
        assert await store.get("k") == b"v"
        assert [c[0] for c in server.received] == [b"SET", b"SET", b"GET", b"GET", b"GET"]


async def test_a_large_value_is_not_copied_on_its_way(redis_url: str) -> None:
    # A worker's node reads its input, its function makes the output, the output is
    # stored: the store may hold a large value's bytes once more while reading it (the
    # pieces, then the value) and not at all while writing it.
    import tracemalloc

    size = 16 * 1024 * 1024
    async with RedisDataStore(redis_url, namespace=_namespace()) as store:
        await store.put("in", b"v" * size)
        await store.get("warm")
        tracemalloc.start()
        try:
            data = await store.get("in")
            _, reading = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            held, _ = tracemalloc.get_traced_memory()  # the value itself
            await store.put("out", data)
            _, peak = tracemalloc.get_traced_memory()
            writing = peak - held
        finally:
            tracemalloc.stop()
        assert data == b"v" * size
    assert reading < 2.1 * size, reading / size
    assert writing < 0.1 * size, writing / size
