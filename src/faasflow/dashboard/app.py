"""The dashboard's ASGI app: the page, its static files and a JSON API under ``/api``.

| route | what |
|---|---|
| ``GET /`` | the page (a script that draws every view from the API) |
| ``GET /api/info`` | the source (``local`` or ``gateway``) and the sign-in methods |
| ``GET /api/flows`` | every flow with its description and running/paused counts |
| ``GET /api/flows/{flow}`` | the flow's JSON export and description |
| ``GET /api/flows/{flow}/requests?status=a,b&limit=N&before=CURSOR`` | a page of requests |
| ``POST /api/flows/{flow}/requests[?QUERY]`` | start a request, body = input: ``{"request_id"}`` |
| ``GET /api/flows/{flow}/requests/{rid}`` | ``{"request": state with nodes, "history", "now"}`` |
| ``GET /api/flows/{flow}/requests/{rid}/result`` | a succeeded request's result (bytes) |
| ``POST /api/flows/{flow}/requests/{rid}/{verb}`` | pause, resume, stop or redrive: |
|   | ``{"request_id", "status"}`` |

Errors are ``{"error": "..."}`` with 400 (bad input), 401/403 (authentication), 404
(unknown flow, request or action), 409 (not allowed in the request's state), 413 (body
too large) or 502/503 (what the dashboard reads from failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faasflow.dashboard import auth
from faasflow.dashboard.sessions import Sessions
from faasflow.dashboard.sources import Source, SourceError
from faasflow.dashboard.throttle import LoginThrottle
from faasflow.engine.views import PAUSED, RUNNING, STATUSES
from faasflow.server.bodies import BodyTooLarge, read_body
from faasflow.server.echo import echo, shorten

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
"""Largest input accepted for a new request (the flow server's default, too)."""
PAGE_MAX = 1000
"""The largest page of requests asked for at once."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# The page loads nothing from elsewhere and runs no inline script.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip

Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    source: Source,
    *,
    credentials: auth.Credentials | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    allowed_hosts: Sequence[str] | None = None,
    sessions: Sessions | None = None,
    login_throttle: LoginThrottle | None = None,
) -> Starlette:
    """The dashboard over ``source``.

    Args:
        source: where flows and requests come from (started and closed with the app).
        credentials: who may use it; open to anyone when ``None`` or empty.
        max_body_size: largest input accepted for a new request, in bytes.
        allowed_hosts: answer only requests whose ``Host`` is one of these names (the
            CLI passes the loopback names when no credential is configured, so that a
            web page cannot reach the dashboard through a rebound DNS name).
        sessions: the sign-in form's sessions; by default, with a token,
            ``Sessions(token)``: 12 hours, signed by a secret of this process.
        login_throttle: counts failed sign-ins per address; by default 5 within 5
            minutes, then 429 until the first of them is 5 minutes old.
    """
    credentials = credentials or auth.Credentials()
    if sessions is None and credentials.token is not None:
        sessions = Sessions(credentials.token)
    throttle = login_throttle or LoginThrottle()
    api = _API(source, max_body_size)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await source.start()
        try:
            yield
        finally:
            await source.close()

    async def login(request: Request) -> Response:
        return await auth.login(request, credentials, sessions, throttle)

    async def logout(request: Request) -> Response:
        return await auth.logout(request, sessions)

    async def info(request: Request) -> Response:
        methods = [name for name, on in (("token", credentials.token is not None),
                                          ("basic", credentials.basic is not None)) if on]
        return JSONResponse({"source": source.kind, "auth": methods})

    routes = [
        Route("/", _index, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/api/flows", _guard(api.flows), methods=["GET"]),
        Route("/api/flows/{flow}", _guard(api.flow), methods=["GET"]),
        Route("/api/flows/{flow}/requests", _guard(api.requests), methods=["GET"]),
        Route("/api/flows/{flow}/requests", _guard(api.execute), methods=["POST"]),
        Route("/api/flows/{flow}/requests/{rid}", _guard(api.request), methods=["GET"]),
        Route("/api/flows/{flow}/requests/{rid}/result", _guard(api.result), methods=["GET"]),
        Route("/api/flows/{flow}/requests/{rid}/{verb}", _guard(api.control), methods=["POST"]),
        Route("/api/{rest:path}", _no_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(auth.AuthMiddleware, credentials=credentials, sessions=sessions)
    if allowed_hosts is not None:
        app.add_middleware(_HostCheck, allowed=tuple(allowed_hosts))
    app.add_middleware(_SecurityHeaders)
    return app


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _healthz(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


async def _no_route(request: Request) -> Response:
    return _error(404, f"no route {request.method} {request.url.path}")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SourceError as exc:
            return _error(exc.status, exc.message)

    return guarded


class _API:
    """The ``/api/flows`` handlers over one source."""

    def __init__(self, source: Source, max_body_size: int) -> None:
        self.source = source
        self.max_body_size = max_body_size

    async def flows(self, request: Request) -> Response:
        summaries = await self.source.flows()
        counts = await asyncio.gather(*(self._active(s.name) for s in summaries))
        return JSONResponse({
            "source": self.source.kind,
            "flows": [{"name": s.name, "description": s.description, **count}
                      for s, count in zip(summaries, counts, strict=True)],
        })  # fmt: skip

    async def _active(self, flow: str) -> dict[str, Any]:
        """How many of the flow's requests are running and paused (an error instead, so
        that one unreachable flow does not hide the others). Counted from the flow's
        status indexes: two reads, however many requests there are."""
        try:
            counts = await self.source.counts(flow, (RUNNING, PAUSED))
        except SourceError as exc:
            return {"running": None, "paused": None, "more": False, "error": exc.message}
        return {"running": counts.get(RUNNING, 0), "paused": counts.get(PAUSED, 0),
                "more": False, "error": None}

    async def flow(self, request: Request) -> Response:
        name = request.path_params["flow"]
        summary = next((s for s in await self.source.flows() if s.name == name), None)
        if summary is None:
            raise SourceError(404, f"no flow {echo(name)}")
        export = await self.source.export(name)
        return JSONResponse({"name": name, "description": summary.description,
                             "export": export})

    async def requests(self, request: Request) -> Response:
        params = request.query_params
        raw_limit = params.get("limit", "50")
        # ASCII digits, and few: int() refuses other digits and very long numbers.
        if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 4
                and 1 <= int(raw_limit) <= PAGE_MAX):
            raise SourceError(400, f"limit must be 1-{PAGE_MAX}, got {echo(raw_limit)}")
        statuses = [s for s in params.get("status", "").split(",") if s]
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise SourceError(400, f"unknown status {shorten(', '.join(unknown))}: "
                                   f"use {', '.join(STATUSES)}")
        page = await self.source.list_requests(
            request.path_params["flow"], status=statuses or None, limit=int(raw_limit),
            before=params.get("before") or None,
        )
        return JSONResponse(page)

    async def execute(self, request: Request) -> Response:
        flow = request.path_params["flow"]
        await self._known(flow)  # before reading the body: an unknown flow is a 404
        body = await self._body(request)
        rid = await self.source.execute(flow, body, request.url.query)
        return JSONResponse({"request_id": rid}, status_code=201)

    async def request(self, request: Request) -> Response:
        flow, rid = request.path_params["flow"], request.path_params["rid"]
        state, history = await asyncio.gather(
            self.source.request(flow, rid), self.source.history(flow, rid)
        )
        # The server's clock: running bars end at "now" even when the browser's differs.
        return JSONResponse({"request": state, "history": history, "now": time.time()})

    async def result(self, request: Request) -> Response:
        data = await self.source.result(request.path_params["flow"], request.path_params["rid"])
        return Response(data, media_type="application/octet-stream")

    async def control(self, request: Request) -> Response:
        flow, rid = request.path_params["flow"], request.path_params["rid"]
        status = await self.source.control(flow, rid, request.path_params["verb"])
        return JSONResponse({"request_id": rid, "status": status})

    async def _known(self, flow: str) -> None:
        if flow not in {s.name for s in await self.source.flows()}:
            raise SourceError(404, f"no flow {echo(flow)}")

    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self.max_body_size)
        except BodyTooLarge as exc:
            raise SourceError(413, str(exc)) from None


class _HostCheck:
    """Answers 400 to a request whose ``Host`` is not one of ``allowed``."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _hostname(Request(scope).headers.get("host", ""))
            if host not in self.allowed:
                answer = _error(400, f"unexpected Host {echo(host)}: this dashboard answers on "
                                     f"{', '.join(self.allowed)}")
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _hostname(host: str) -> str:
    """``Host`` without its port (``[::1]:8090`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
