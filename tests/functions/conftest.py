"""Fixtures: a real HTTP server on loopback, and a URL that refuses connections."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from .http_server import HttpTestServer


@pytest.fixture
async def http_server() -> AsyncIterator[HttpTestServer]:
    server = HttpTestServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connecting is refused.

    Holding the port (rather than closing a socket and hoping) means no other process
    can start listening there during the test.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
