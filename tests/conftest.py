"""Shared fixtures: every engine test runs on each embedded store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import faasflow
from servers.redis import redis_server

STORES = ["memory", "sqlite", "redis"]
_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session (started here, stopped at the end)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each kind: the embedded ones, and Redis (a namespace of the
    session's server of the test's own) for the shared backends."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return f"{redis_url}?namespace=e{next(_namespaces)}:"
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def make_engine(store_url: str) -> AsyncIterator[Callable[..., faasflow.Engine]]:
    """Build started engines on the test's store; all are closed at the end."""
    engines: list[faasflow.Engine] = []

    def build(define: Any, **options: Any) -> faasflow.Engine:
        options.setdefault("state_store", store_url)
        engine = faasflow.Engine(define, **options)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        await engine.close()


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real etcd for the whole session: ``etcd://127.0.0.1:PORT``."""
    from servers.etcd import etcd_server

    with etcd_server(tmp_path_factory.mktemp("etcd")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL cluster (initdb + pg_ctl) for the session: ``postgresql://…/db``."""
    from servers.postgres import postgres_server

    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 endpoint (moto's standalone server) for the session: ``http://127.0.0.1:PORT``."""
    from servers.s3 import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``nats-server -js`` for the session: ``nats://127.0.0.1:PORT``."""
    from servers.nats import nats_server

    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url
