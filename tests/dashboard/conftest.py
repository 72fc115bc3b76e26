"""Fixtures: the dashboard app in-process (httpx over ASGI) on real engines and stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faasflow.dashboard.app import create_app
from faasflow.dashboard.auth import Credentials
from faasflow.dashboard.sources import LocalFlow, LocalSource, Source
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import load_define

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FUNCTIONS = EXAMPLES / "functions"
FLOWS = Path(__file__).resolve().parent / "flows"

LOCAL_FLOWS = {
    "greet": EXAMPLES / "greet.py",
    "dynamic_branching": EXAMPLES / "dynamic_branching.py",
    "subdag": EXAMPLES / "subdag.py",
    "gated": FLOWS / "gated.py",
    "flaky": FLOWS / "flaky.py",
}
HEADERS = {"X-Faasflow-Dashboard": "1"}
"""What the page's script sends with every call (a state-changing call needs it)."""


@pytest.fixture
def gate_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the gated and flaky flows look for their gate files in."""
    folder = tmp_path / "gates"
    folder.mkdir()
    monkeypatch.setenv("DASHBOARD_GATE_DIR", str(folder))
    return folder


def local_source(state_url: str) -> LocalSource:
    """Every flow of :data:`LOCAL_FLOWS` on one shared state store, run in this process."""
    return LocalSource([
        LocalFlow(name, Engine(load_define(str(path)).define, flow_name=name,
                               state_store=state_url, functions_dir=FUNCTIONS),
                  f"the {name} flow")
        for name, path in LOCAL_FLOWS.items()
    ], recover=True)  # fmt: skip


MakeClient = Callable[..., Any]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``make(source, **create_app options)``: an httpx client of the app over ``source``,
    the source started (as the app's lifespan would) and closed at the end."""
    opened: list[tuple[Source, httpx.AsyncClient]] = []

    async def make(source: Source, **options: Any) -> httpx.AsyncClient:
        app = create_app(source, **options)
        await source.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
            timeout=30,
        )
        opened.append((source, client))
        return client

    yield make
    for source, client in opened:
        await client.aclose()
        await source.close()


@pytest.fixture
async def client(
    make_client: MakeClient, tmp_path: Path, gate_dir: Path
) -> httpx.AsyncClient:
    """The dashboard over local flows on a SQLite store, open (no credentials)."""
    client: httpx.AsyncClient = await make_client(
        local_source(f"sqlite:///{tmp_path / 'state.db'}"), credentials=Credentials()
    )
    return client


async def wait_for(
    client: httpx.AsyncClient, flow: str, rid: str, check: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> dict[str, Any]:
    """Poll the request's page data until ``check`` holds; fail when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.get(f"/api/flows/{flow}/requests/{rid}")
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        if check(data):
            return data
        assert time.monotonic() < deadline, f"condition not met in time: {data['request']}"
        await asyncio.sleep(0.02)


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data["request"]["status"] in statuses


def node_running(node: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data["request"]["nodes"].get(node, {}).get("state") == "running"
