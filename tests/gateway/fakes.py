"""Servers the gateway tests talk to: fake functions and a callback receiver.

Each is a small Starlette app served on loopback by ``BackgroundServer`` (a thread and
an event loop of its own), that records every request exactly as it arrived and lets
the test thread wait for them on a condition variable, not with sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class Seen:
    """One request as a fake server received it."""

    method: str
    path: str  # raw, still percent-encoded
    query: str  # raw
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


Answer = Callable[[Seen], Awaitable[Response]]


async def echo(seen: Seen) -> Response:
    """Answer 200 with the body, and the path and query in headers."""
    return Response(
        seen.body,
        headers={
            "X-Echo-Method": seen.method,
            "X-Echo-Path": seen.path,
            "X-Echo-Query": seen.query,
        },
    )


class FakeServer:
    """Records requests on any path; answers with ``answer`` (default :func:`echo`)."""

    def __init__(self, answer: Answer = echo) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        self._changed = threading.Condition()
        route = Route("/{path:path}", self._endpoint, methods=METHODS)
        self.app = Starlette(routes=[route])

    async def _endpoint(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        seen = Seen(
            method=request.method,
            path=raw.decode("latin-1"),
            query=request.scope["query_string"].decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=await request.body(),
        )
        with self._changed:
            self.seen.append(seen)
            self._changed.notify_all()
        return await self.answer(seen)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Seen]:
        """Block until ``count`` requests arrived; return them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"{len(self.seen)} request(s) arrived, not {count}")
            return list(self.seen)


class Gate:
    """Holds calls until the test opens it (a threading event, awaited off-loop)."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    async def answer(self, seen: Seen) -> Response:
        await asyncio.to_thread(self.opened.wait, 30.0)
        return Response(b"done:" + seen.body)


class Pairing:
    """Holds each call until another one is in flight (or all expected ones arrived),
    recording how many were in flight at once: with more than ``concurrency`` workers
    the count would exceed it, with fewer the calls would never pair up."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._condition: asyncio.Condition | None = None

    async def answer(self, seen: Seen) -> Response:
        if self._condition is None:  # created on the server's own loop
            self._condition = asyncio.Condition()
        condition = self._condition
        async with condition:
            self.arrived += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            condition.notify_all()
            async with asyncio.timeout(20):
                await condition.wait_for(
                    lambda: self.in_flight >= 2 or self.arrived >= self.expected
                )
            self.in_flight -= 1
        return Response(b"ok:" + seen.body)
