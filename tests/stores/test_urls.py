"""Stores from URLs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from faasflow.errors import ConfigurationError
from faasflow.stores import urls
from faasflow.stores._urls import redact_url
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore
from faasflow.stores.sqlite import SqliteDataStore, SqliteStateStore
from faasflow.stores.urls import data_store_from_url, state_store_from_url


def test_memory() -> None:
    assert isinstance(state_store_from_url("memory://"), MemoryStateStore)
    assert isinstance(data_store_from_url("memory://"), MemoryDataStore)
    assert isinstance(state_store_from_url("MEMORY://"), MemoryStateStore)
    assert state_store_from_url("memory://") is not state_store_from_url("memory://")


@pytest.mark.parametrize("url", ["memory://x", "memory:///", "memory://?a=b"])
def test_memory_takes_nothing(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        state_store_from_url(url)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///flow.db", "flow.db"),
        ("sqlite:///data/flow.db", "data/flow.db"),
        ("sqlite:////tmp/flow.db", "/tmp/flow.db"),
        ("sqlite:////var/lib/faasflow/state.db", "/var/lib/faasflow/state.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///my%20flows.db", "my flows.db"),
        ("SQLite:///flow.db", "flow.db"),
    ],
)
def test_sqlite_paths(url: str, path: str) -> None:
    state = state_store_from_url(url)
    data = data_store_from_url(url)
    assert isinstance(state, SqliteStateStore)
    assert isinstance(data, SqliteDataStore)
    assert state.path == data.path == path


async def test_sqlite_relative_path_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with state_store_from_url("sqlite:///sub.db") as store:
        await store.set("k", b"v")
    assert (tmp_path / "sub.db").is_file()


async def test_sqlite_absolute_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/abs.db"  # tmp_path starts with "/": four slashes
    assert url.startswith("sqlite:////")
    async with state_store_from_url(url) as state, data_store_from_url(url) as data:
        await state.set("k", b"v")
        await data.put("k", b"d")
    async with SqliteStateStore(tmp_path / "abs.db") as state:
        assert await state.get("k") == b"v"


async def test_sqlite_memory_url_works() -> None:
    async with state_store_from_url("sqlite://") as store:
        await store.set("k", b"v")
        assert await store.get("k") == b"v"


def test_sqlite_options() -> None:
    store = state_store_from_url("sqlite:///flow.db?synchronous=full&busy_timeout=2.5")
    assert isinstance(store, SqliteStateStore)
    assert store._db.synchronous == "FULL"
    assert store._db.busy_timeout == 2.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///flow.db?synchronous=OFF", "synchronous"),
        ("sqlite:///flow.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///flow.db?journal=delete", "unknown option 'journal'"),
        ("sqlite://localhost/flow.db", "no host"),
        ("sqlite:///flow.db#frag", "fragment"),
    ],
)
def test_bad_sqlite_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        state_store_from_url(url)
    assert url in str(raised.value)


@pytest.mark.parametrize(
    "url", ["mysql://localhost/faasflow", "zookeeper://zk:2181", "flow.db", "", "sqlite:x.db"]
)
def test_unknown_scheme(url: str) -> None:
    for from_url in (state_store_from_url, data_store_from_url):
        with pytest.raises(ConfigurationError) as raised:
            from_url(url)
        message = str(raised.value)
        assert repr(url) in message
        assert "memory://" in message
        assert "sqlite://" in message


def test_unknown_scheme_hides_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        state_store_from_url("mysql://user:s3cret@db:3306/flows")
    assert "s3cret" not in str(raised.value)
    assert "mysql://user:***@db:3306/flows" in str(raised.value)


@pytest.mark.parametrize("url", ["etcd://127.0.0.1:2379/flows", "s3://bucket/p", "file:///tmp/x"])
def test_stores_for_one_kind_only(url: str) -> None:
    # etcd keeps small records, not data; S3 and folders keep data, not records.
    from_url = data_store_from_url if url.startswith("etcd") else state_store_from_url
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        from_url(url)


def test_redis_urls() -> None:
    from faasflow.stores.redis import RedisDataStore, RedisStateStore

    state = state_store_from_url("redis://:pw@127.0.0.1:6380/2?namespace=flows:&socket_timeout=5")
    assert isinstance(state, RedisStateStore)
    assert state.namespace == "flows:"
    assert state.url == "redis://:pw@127.0.0.1:6380/2?socket_timeout=5"
    data = data_store_from_url("redis://127.0.0.1:6379/0")
    assert isinstance(data, RedisDataStore)
    assert data.namespace == "faasflow:"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://user:s3cret@db:3306/flows", "mysql://user:***@db:3306/flows"),
        ("redis://:s3cret@h:6379/0?namespace=a@b:", "redis://:***@h:6379/0?namespace=a@b:"),
        ("etcd://root:s3cret@h1,h2:2379/x", "etcd://root:***@h1,h2:2379/x"),
        # Reserved characters left unencoded end the host part early: still masked.
        ("s3://AKID:t0p/s3cret@bucket/p?region=x", "s3://AKID:***@bucket/p?region=x"),
        ("redis://:s3/cr/et@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u:s3#cret@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:s3@cret@db/x", "postgresql://u:***@db/x"),
        (
            "postgresql://u@db/x?password=s3cret&sslpassword=s3cret&sslmode=require",
            "postgresql://u@db/x?password=***&sslpassword=***&sslmode=require",
        ),
        # Nothing secret: shown as given.
        ("redis://h:6379/0?namespace=me@x", "redis://h:6379/0?namespace=me@x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("sqlite:///at:and@colon.db", "sqlite:///at:and@colon.db"),
        ("file:relative/folder", "file:relative/folder"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_backends_do_not_import_the_dispatcher() -> None:
    # urls.py imports the backends (when a URL names one): importing it back is a cycle.
    for module in Path(urls.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text(), module.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                names.append(str(node.module))
            else:
                continue
            assert "faasflow.stores.urls" not in names, f"{module.name} imports stores.urls"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:t0p/zecret@127.0.0.1:6379/0",
        "postgresql://user:t0p/zecret@db:5432/flows",
        "etcd://root:t0p/zecret@h:2379/x",
        "s3://AKID:t0p/zecret@bucket/p",
    ],
)
def test_a_secret_with_an_unencoded_slash_stays_hidden(url: str) -> None:
    from_url = data_store_from_url if url.startswith("s3") else state_store_from_url
    with pytest.raises(ConfigurationError) as raised:
        from_url(url)
    message = str(raised.value)
    assert ":***@" in message
    assert "t0p" not in message
    assert "zecret" not in message
