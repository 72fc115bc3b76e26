"""Shared fixtures: every engine test runs on each embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import faasflow
from servers import redis_server

STORES = ["memory", "sqlite"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session (started here, stopped at the end)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each embedded kind."""
    if request.param == "memory":
        return "memory://"
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
