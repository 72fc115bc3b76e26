"""Shared fixtures: every engine test runs on each embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import faasflow

STORES = ["memory", "sqlite"]


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
