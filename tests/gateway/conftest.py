"""Fixtures: servers on loopback ports, stopped at the end of each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from faasflow.gateway import BackgroundServer, Gateway, create_gateway

from .fakes import FakeServer

Serve = Callable[[ASGIApp], str]
StartGateway = Callable[..., tuple[Gateway, str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serve an ASGI app on a free loopback port; returns its URL."""
    servers: list[BackgroundServer] = []

    def start(app: ASGIApp) -> str:
        server = BackgroundServer(app)
        server.start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:  # all at once: each takes a few ticks of uvicorn's loop
        server.request_stop()
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def fake(serve: Serve) -> Callable[..., tuple[FakeServer, str]]:
    """Start a fake function (or callback receiver); returns it and its URL."""

    def start(**options: Any) -> tuple[FakeServer, str]:
        server = FakeServer(**options)
        return server, serve(server.app)

    return start


@pytest.fixture
def start_gateway(serve: Serve) -> StartGateway:
    """Build a gateway with ``create_gateway(**options)`` and serve it."""

    def start(**options: Any) -> tuple[Gateway, str]:
        gateway = create_gateway(**options)
        return gateway, serve(gateway)

    return start


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as http:
        yield http


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    """Handler folders: ``hello`` (greets, shows method and query) and ``broken``."""
    root = tmp_path / "functions"
    (root / "hello").mkdir(parents=True)
    (root / "hello" / "handler.py").write_text(
        "def handle(event, context):\n"
        "    query = '&'.join(f'{k}={v}' for k, v in event.query.multi_items())\n"
        "    return {\n"
        "        'statusCode': 200,\n"
        "        'body': f'Hello {event.body.decode()} ({event.method} {query})',\n"
        "        'headers': {'X-Handler': 'hello', 'X-Call': event.headers.get('X-Call-Id')},\n"
        "    }\n"
    )
    (root / "broken").mkdir()
    (root / "broken" / "handler.py").write_text("raise ImportError('no such thing')\n")
    (root / "not-a-function").mkdir()  # no handler.py: neither listed nor callable
    return root
