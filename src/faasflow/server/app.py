"""The flow as an HTTP function: the faas-flow wire protocol on Starlette.

| route | what |
|---|---|
| ``POST /`` | a new request (body = input); ``X-Faas-Flow-Reqid`` in the answer |
| ``GET/POST /?export-dag=true`` | the flow's JSON definition |
| ``/?pause-flow=ID`` ``resume-flow`` ``stop-flow`` ``state`` | the original query API |
| ``POST /flow/{id}/forward`` | a signed hop (the gateway's queue worker calls it) |
| ``POST /flow/{id}/pause`` ``resume`` ``stop`` ``redrive`` | control |
| ``GET /flow/{id}/state`` ``/flow/{id}/result`` | status and node table (JSON); the result |
| ``GET /flow/{id}/history`` | the request's events (JSON) |
| ``GET /requests?status=&limit=&before=`` | a page of the flow's requests, newest first (JSON) |
| ``GET /healthz`` | liveness |
| ``GET /metrics`` | Prometheus metrics of this replica (see :mod:`faasflow.metrics`) |

A request for which the flow is one sync node (as ``define`` builds it for the
request's query) runs within the caller's request and answers 200 with its result.
Other requests answer 202 with the request id, unless the caller sends
``X-Faas-Flow-Wait: SECONDS``: then the answer is 200 with the result if the request ends
in time (whichever replica ran its last node), else 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from faasflow import _failpoints, tracing
from faasflow.config import ServerConfig
from faasflow.dsl.export import to_json
from faasflow.engine.definition import Define
from faasflow.engine.views import FAILED, STATUSES, STOPPED, SUCCEEDED
from faasflow.errors import (
    ConfigurationError,
    DuplicateRequestError,
    FaasFlowError,
    FlowDefinitionError,
    RequestError,
    RequestFailedError,
    RequestStateError,
    TransportError,
    UnknownRequestError,
)
from faasflow.metrics import EngineMetrics, MetricsApp
from faasflow.runtime import Runner, check_request_id
from faasflow.runtime.engine import Engine
from faasflow.server.bodies import BodyTooLarge, read_body
from faasflow.server.callbacks import CallbackSender
from faasflow.server.echo import echo, shorten
from faasflow.transports.openfaas import OpenFaaSTransport
from faasflow.wire.hop import Hop
from faasflow.wire.signing import (
    HUB_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    open_hop,
    verify,
)

log = logging.getLogger("faasflow.server")

REQID = "X-Faas-Flow-Reqid"
CALLBACK = "X-Faas-Flow-Callback-Url"
WAIT = "X-Faas-Flow-Wait"
STATUS = "X-Faas-Flow-Status"
LEGACY = ("export-dag", "pause-flow", "resume-flow", "stop-flow", "state")
_ID_RULE = "use 1-128 letters, digits, '_', '.' or '-'"
MAX_PAGE = 1000
"""The most requests ``GET /requests`` lists at once (the engine's limit)."""
RECOVERY_DELAY = 2.0
"""Seconds to wait for a first request before recovering anyway."""


def _page(params: Mapping[str, str]) -> tuple[int, int | None]:
    """``?start=N&limit=M`` of a history route (defaults: everything)."""
    values: list[int | None] = []
    for name in ("start", "limit"):
        raw = params.get(name)
        if raw is None:
            values.append(None)
            continue
        text = raw.removeprefix("-") if name == "start" else raw
        if not (text.isascii() and text.isdigit() and len(text) <= 9):
            raise HTTPProblem(400, f"{name} must be a whole number, got {echo(raw)}")
        values.append(int(raw))
    start, limit = values
    if limit is not None and limit < 1:
        raise HTTPProblem(400, f"limit must be positive, got {limit}")
    return start or 0, limit


class HTTPProblem(Exception):
    """Answer with ``status`` and a plain-text ``message``; nothing was changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(
    define: Define,
    *,
    config: ServerConfig,
    engine: Runner | None = None,
    engine_options: dict[str, Any] | None = None,
) -> Starlette:
    """The flow server's ASGI app.

    Args:
        define: the flow's ``define(flow, context)``.
        config: names, secrets and limits (see :mod:`faasflow.config`).
        engine: an engine to serve; by default one is built from ``config`` with the
            OpenFaaS transport (hops through ``config.gateway``, signed).
        engine_options: :class:`~faasflow.runtime.engine.Engine` arguments for the default
            engine (``functions``, ``functions_dir``, ``state_store``, ``data_store``...);
            they win over ``config``.

    With ``config.nats_url`` (``faasflow_nats``) the default engine sends hops through
    NATS JetStream instead, and runs them too, like a ``faasflow worker``.

    Raises:
        ConfigurationError: no ``faasflow-hmac-secret`` for the gateway transport, or
            no shared state store for NATS.
    """
    if engine is None:
        options: dict[str, Any] = {
            "gateway": config.gateway,
            "state_store": config.state_url,
            "data_store": config.data_url,
            "max_input_size": config.max_body_size,
            **(engine_options or {}),
        }
        if config.nats_url:
            engine = _nats_engine(define, config, options)
        else:
            transport = OpenFaaSTransport(
                gateway=config.gateway, flow_name=config.flow_name,
                secret=config.hmac_secret or b"",
            )
            engine = Engine(define, flow_name=config.flow_name, transport=transport, **options)
    server = _FlowServer(engine, config)
    metrics = EngineMetrics(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.close()

    routes: list[Route] = [
        Route("/", server.root, methods=["GET", "POST"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/metrics", MetricsApp(metrics.render), methods=["GET"]),
        Route("/flow/{rid}/forward", server.forward, methods=["POST"]),
        Route("/flow/{rid}/state", server.state, methods=["GET"]),
        Route("/flow/{rid}/result", server.result, methods=["GET"]),
        Route("/flow/{rid}/history", server.history, methods=["GET"]),
        Route("/requests", server.requests, methods=["GET"]),
        Route("/counts", server.counts, methods=["GET"]),
        Route("/flow/{rid}/{verb:str}", server.control, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.flow_server = server
    app.add_middleware(_FirstRequest, server=server)
    return app


def _nats_engine(define: Define, config: ServerConfig, options: dict[str, Any]) -> Runner:
    """Hops through NATS JetStream: this replica runs them, as does any other replica or
    ``faasflow worker`` of the flow, so the stores must be shared ones."""
    from faasflow.workers import Worker

    if not options.get("state_store"):
        raise ConfigurationError(
            "faasflow_nats: replicas and workers share the request state; set faasflow_state "
            "to a shared store (redis://, etcd:// or postgresql://)"
        )
    assert config.nats_url is not None
    return Worker(define, flow_name=config.flow_name, nats=config.nats_url, **options)


class _FirstRequest:
    """Tells the flow server it is reachable: the first HTTP request has arrived."""

    def __init__(self, app: ASGIApp, server: _FlowServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.server.listening.set()
        await self.app(scope, receive, send)


class _FlowServer:
    """The route handlers, sharing one engine."""

    def __init__(self, engine: Runner, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.callbacks = CallbackSender(attempts=config.callback_attempts)
        self.listening = asyncio.Event()
        self._recovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.engine.describe()  # a definition that fails for every request fails start-up
        self.engine.observe(self.callbacks)
        await self.engine.start()
        self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """Pick up the requests a previous process of this flow left running.

        Not during start-up: the resent hops come back through the gateway, which drops
        them if this server is not listening yet. So wait for the first request (a
        health check, usually), or a moment.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), RECOVERY_DELAY)
        # Once more when a predecessor on another host (a pod replaced by another) is
        # sure to count as gone: its heartbeat lasts a lease.
        for wait in (0.0, self.engine.lease_ttl):
            await asyncio.sleep(wait)
            try:
                recovered = await self.engine.recover()
            except FaasFlowError as exc:
                log.error("recovering interrupted requests failed: %s", exc)
                continue
            if recovered:
                log.warning("recovered %d interrupted request(s): %s", len(recovered),
                            ", ".join(recovered))

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        await self.engine.close()
        await self.callbacks.close()

    # -- helpers ------------------------------------------------------------------
    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self.config.max_body_size)
        except BodyTooLarge as exc:
            raise HTTPProblem(413, str(exc)) from None

    def _rid(self, value: str, source: str = "the request id") -> str:
        if not value:
            raise HTTPProblem(400, f"{source} is empty: {_ID_RULE}")
        try:
            return check_request_id(value)
        except RequestError:
            # Not the engine's message: it quotes the whole id, of any length.
            raise HTTPProblem(400, f"invalid request id {echo(value)}: {_ID_RULE}") from None

    def _authorize_control(self, request: Request) -> None:
        token = self.config.control_token
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # Bytes, not text: compare_digest refuses str with non-ASCII characters, and a
        # header may carry any byte (Starlette decodes it as latin-1).
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode("latin-1"), token.encode("ascii")
        ):
            raise HTTPProblem(401, "control routes need Authorization: Bearer <token>")

    async def _guard(self, call: Callable[[], Any]) -> Response:
        try:
            result = await call()
        except HTTPProblem as exc:
            return PlainTextResponse(exc.message + "\n", status_code=exc.status)
        except UnknownRequestError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=404)
        except (RequestStateError, DuplicateRequestError) as exc:
            return PlainTextResponse(f"{exc}\n", status_code=409)
        except RequestError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        except FlowDefinitionError as exc:
            return PlainTextResponse(f"flow definition error: {exc}\n", status_code=500)
        except TransportError as exc:
            # The request is on record with its hop pending: the sweeper fails it if the
            # gateway stays away, and redrive sends the hop again.
            return PlainTextResponse(f"{exc}\n", status_code=503)
        assert isinstance(result, Response)
        return result

    # -- routes -------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def root(self, request: Request) -> Response:
        params = request.query_params
        legacy = [name for name in LEGACY if name in params]
        if legacy:
            return await self._guard(lambda: self._legacy(request, legacy[0]))
        return await self._guard(lambda: self._new_request(request))

    async def _legacy(self, request: Request, name: str) -> Response:
        value = request.query_params[name]
        if name == "export-dag":
            spec = self.engine.describe(_user_query(request))
            return JSONResponse(to_json(spec, flow_name=self.config.flow_name))
        self._authorize_control(request)
        rid = self._rid(value)
        if name == "state":
            info = await self.engine.info(rid)
            return PlainTextResponse(info.status.upper())
        verb = name.removesuffix("-flow")
        await self._control(verb, rid)
        return PlainTextResponse(f"request {rid}: {verb} done\n")

    async def _new_request(self, request: Request) -> Response:
        body = await self._body(request)
        if self.config.authenticate_requests:
            if not self.config.hmac_secret:
                raise HTTPProblem(500, "authenticate_request is on but no secret is set")
            try:
                verify(self.config.hmac_secret, body, request.headers.get(HUB_SIGNATURE_HEADER))
            except SignatureError as exc:
                raise HTTPProblem(401, f"request not authenticated: {exc}") from exc
        wanted = request.headers.get(REQID)
        # An empty header is a mistake (an unset variable, say), not a wish for a new id.
        rid = None if wanted is None else self._rid(wanted, REQID)
        callback = request.headers.get(CALLBACK)
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise HTTPProblem(
                    400, f"{CALLBACK} must be an http(s) URL, got {echo(callback)}"
                )
        wait = self._wait(request)
        query = _user_query(request)
        # Per request: define() may build a single sync node for some queries only. The
        # engine builds the flow again when it starts the request (it keeps no copy made
        # elsewhere); a build costs tens of microseconds for a small flow, against
        # milliseconds for the request.
        sync = self.engine.describe(query).is_sync
        with tracing.continue_from(request.headers):
            rid = await self.engine.submit(
                body, request_id=rid, query=query, inline=sync, callback_url=callback
            )
        headers = {REQID: rid}
        if callback:
            headers[CALLBACK] = callback
        if sync:
            wait = self.config.max_wait
        elif wait is None:
            return PlainTextResponse(rid, status_code=202, headers=headers)
        try:
            result = await self.engine.wait(rid, timeout=wait, poll=0.05)
        except TimeoutError:
            return PlainTextResponse(rid, status_code=202, headers=headers)
        except RequestFailedError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=500,
                                     headers={**headers, STATUS: "failure"})
        return Response(result, status_code=200, headers=headers,
                        media_type="application/octet-stream")

    def _wait(self, request: Request) -> float | None:
        raw = request.headers.get(WAIT)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            raise HTTPProblem(
                400, f"{WAIT} must be a number of seconds, got {echo(raw)}"
            ) from None
        if not math.isfinite(seconds):
            raise HTTPProblem(400, f"{WAIT} must be a finite number of seconds, got {echo(raw)}")
        if seconds < 0:
            raise HTTPProblem(400, f"{WAIT} must not be negative, got {echo(raw)}")
        return min(seconds, self.config.max_wait)

    async def forward(self, request: Request) -> Response:
        return await self._guard(lambda: self._forward(request))

    async def _forward(self, request: Request) -> Response:
        transport = self.engine.transport
        if not isinstance(transport, OpenFaaSTransport):
            raise HTTPProblem(404, "this flow server does not take hops over HTTP")
        body = await self._body(request)
        try:
            hop = open_hop(transport.secret, body, request.headers.get(SIGNATURE_HEADER),
                           self.config.hop_max_age)
        except SignatureError as exc:
            raise HTTPProblem(401, f"hop refused: {exc}") from exc
        if hop.request_id != request.path_params["rid"] or hop.flow != self.config.flow_name:
            raise HTTPProblem(401, "hop refused: it names another request or flow")
        try:
            return await self._take(transport, hop, request.headers[SIGNATURE_HEADER])
        except HTTPProblem:
            raise
        except Exception as exc:
            # The platform does not call again: a hop that could not run is sent again
            # from here, after a backoff.
            transport.retry_later(hop, exc)
            raise

    async def _take(self, transport: OpenFaaSTransport, hop: Hop, signature: str) -> Response:
        """Run a genuine hop once, unless its request has ended."""
        record = await self.engine.executor.requests.get(hop.request_id)
        if record is None:
            raise HTTPProblem(404, f"no request {hop.request_id!r}")
        status = record.status
        if status in (SUCCEEDED, STOPPED):
            # Its replay records went with it: the status is what turns a late hop away.
            return PlainTextResponse(f"ignored: request {hop.request_id} is {status}\n")
        await self._run_once(transport, hop, signature)
        if _failpoints.FOLDER:
            await _failpoints.reach("ack", hop.path, hop.json)
        return PlainTextResponse("ok\n", status_code=200)

    async def _run_once(self, transport: OpenFaaSTransport, hop: Hop, signature: str) -> None:
        """Run ``hop`` unless a hop with this signature ran already (a replay: 401)."""
        hops = self.engine.executor.hops
        rid, digest = hop.request_id, signature.removeprefix("sha256=")
        # Claimed atomically before the hop runs: two deliveries at once cannot both
        # pass, and the claim of the hop that ends the request is already written when
        # the end deletes the request's keys, so it goes with them (written after, it
        # would outlive the request). The TTL bounds the rest: a hop older than
        # hop_max_age is refused as stale anyway, and a claim made just as the request
        # ended expires.
        if not await hops.claim_replay(rid, digest, ttl=self.config.hop_max_age * 2):
            raise HTTPProblem(401, "hop refused: replayed")
        try:
            await transport.deliver(hop)
        except BaseException:
            # Not run to its end: the platform's retry of this hop must not be taken for
            # a replay (its effects are idempotent). The error that stopped it is the one
            # to report, not one from this clean-up.
            with contextlib.suppress(Exception):
                await hops.release_replay(rid, digest)
            raise

    async def control(self, request: Request) -> Response:
        async def run() -> Response:
            verb = request.path_params["verb"]
            if verb not in ("pause", "resume", "stop", "redrive"):
                raise HTTPProblem(404, f"no route /flow/{{id}}/{echo(verb)}")
            self._authorize_control(request)
            rid = self._rid(request.path_params["rid"])
            await self._control(verb, rid)
            info = await self.engine.info(rid)
            return JSONResponse({"request_id": rid, "status": info.status})

        return await self._guard(run)

    async def _control(self, verb: str, rid: str) -> None:
        action = {
            "pause": self.engine.pause,
            "resume": self.engine.resume,
            "stop": self.engine.stop,
            "redrive": self.engine.redrive,
        }[verb]
        await action(rid)

    async def state(self, request: Request) -> Response:
        async def run() -> Response:
            self._authorize_control(request)
            rid = self._rid(request.path_params["rid"])
            return JSONResponse((await self.engine.info(rid, nodes=True)).to_dict())

        return await self._guard(run)

    async def history(self, request: Request) -> Response:
        async def run() -> Response:
            self._authorize_control(request)
            rid = self._rid(request.path_params["rid"])
            start, limit = _page(request.query_params)
            return JSONResponse(await self.engine.history(rid, start=start, limit=limit))

        return await self._guard(run)

    async def counts(self, request: Request) -> Response:
        """``GET /counts?status=a,b``: how many of this flow's requests are in each
        status (all of them without ``status``)."""

        async def run() -> Response:
            self._authorize_control(request)
            wanted = [s for s in request.query_params.get("status", "").split(",") if s]
            unknown = sorted(set(wanted) - set(STATUSES))
            if unknown:
                raise HTTPProblem(400, f"unknown status {shorten(', '.join(unknown))}: use "
                                       f"{', '.join(STATUSES)}")
            return JSONResponse(await self.engine.counts(wanted or STATUSES))

        return await self._guard(run)

    async def requests(self, request: Request) -> Response:
        """``GET /requests?status=a,b&limit=N&before=ID``: a page of this flow's requests."""

        async def run() -> Response:
            self._authorize_control(request)
            params = request.query_params
            raw_limit = params.get("limit", "50")
            # ASCII digits, and few: int() refuses other digits and very long numbers.
            if not (raw_limit.isascii() and raw_limit.isdigit()):
                raise HTTPProblem(400, f"limit must be a number, got {echo(raw_limit)}")
            if len(raw_limit) > 4 or not 1 <= int(raw_limit) <= MAX_PAGE:
                raise HTTPProblem(400, f"limit must be 1-{MAX_PAGE}, got {echo(raw_limit)}")
            statuses = [s for s in params.get("status", "").split(",") if s] or None
            unknown = sorted(set(statuses or ()) - set(STATUSES))
            if unknown:
                raise HTTPProblem(400, f"unknown status {shorten(', '.join(unknown))}: use "
                                       f"{', '.join(STATUSES)}")
            before = params.get("before") or None
            try:
                page = await self.engine.list_requests(
                    status=statuses, limit=int(raw_limit), before=before
                )
            except RequestError as exc:
                if before is None:
                    raise
                # Statuses and limit were checked above: the cursor it is, which the
                # engine's message quotes whole.
                raise HTTPProblem(400, f"invalid cursor {echo(before)}") from exc
            return JSONResponse(
                {"requests": [info.to_dict() for info in page.requests], "next": page.next}
            )

        return await self._guard(run)

    async def result(self, request: Request) -> Response:
        async def run() -> Response:
            self._authorize_control(request)
            rid = self._rid(request.path_params["rid"])
            info = await self.engine.info(rid)
            if info.status == SUCCEEDED:
                try:
                    data = await self.engine.result(rid)
                except UnknownRequestError:
                    raise HTTPProblem(410, f"the result of {rid} has expired") from None
                return Response(data, media_type="application/octet-stream",
                                headers={REQID: rid})
            if info.status in (FAILED, STOPPED):
                return JSONResponse(info.to_dict(), status_code=409)
            raise HTTPProblem(404, f"request {rid} is {info.status}: no result yet")

        return await self._guard(run)


def _user_query(request: Request) -> str:
    """The query string without faasflow's own legacy parameters."""
    pairs = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)
             if k not in LEGACY]
    return urlencode(pairs)

