"""The Redis stores against a real ``redis-server`` that the test suite starts."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from faasflow.errors import StoreError
from faasflow.stores.base import DataStore, StateStore
from faasflow.stores.redis import RedisDataStore, RedisStateStore

from .contract import DataStoreContract, StateStoreContract
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
