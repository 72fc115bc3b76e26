"""The gateway as one ASGI application: its routes, its start and its stop.

| route | what |
|---|---|
| ``/function/{name}[/path]``, any method | synchronous invoke (:mod:`.proxy`) |
| ``POST /async-function/{name}[/path]`` | queue the call, 202 (:mod:`.queue`); 413 over |
|   | ``max_body_size`` |
| ``GET /system/functions``, ``/system/function/{name}``, ``/system/info`` | listing |
| ``POST /system/register``, ``DELETE /system/register/{name}`` | registration |
| ``DELETE /system/functions`` (faas-cli remove), ``POST``/``PUT`` (deploy: 501) | |
| ``GET /healthz`` | 200 once started |
| ``GET /metrics`` | Prometheus metrics, OpenFaaS's names (see :mod:`faasflow.metrics`) |

``/system/*`` needs the basic auth when one is configured; the function routes and
``/healthz`` never do, as in OpenFaaS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from faasflow.config import DEFAULT_MAX_BODY_SIZE
from faasflow.errors import ConfigurationError
from faasflow.functions.folders import HandlerFolders
from faasflow.gateway._gourl import GoURLError, check_url
from faasflow.gateway.auth import BasicAuth, protect
from faasflow.gateway.callid import PROXY_METHODS, function_path, remote_addr, stamp_call
from faasflow.gateway.config import GatewayConfig, check_function_name, check_upstream_url
from faasflow.gateway.flows import (
    FlowCommandBuilder,
    FlowProcess,
    ServedFlow,
    flow_server_command,
    free_port,
    new_hmac_secret,
)
from faasflow.gateway.proxy import Call, Proxy, probe_body
from faasflow.gateway.queue import (
    QUEUE_WORKER_USER_AGENT,
    AsyncQueue,
    CallResult,
    QueueClosedError,
    QueuedCall,
    QueueFullError,
)
from faasflow.gateway.registry import NAMESPACE, FunctionEntry, Kind, Registry
from faasflow.gateway.system import SystemAPI
from faasflow.gateway.wire import (
    body_too_large,
    copyable,
    decode_headers,
    first_header,
    http_date,
    http_error,
    method_not_allowed,
    not_found,
    response,
    set_header,
)
from faasflow.httpclient import limits
from faasflow.metrics import GatewayMetrics, MetricsApp
from faasflow.server.bodies import BodyTooLarge, read_body

logger = logging.getLogger(__name__)

# Every method reaches the invoke handler, which answers 405 itself as the provider does
# (Starlette's routes take only GET unless told).
_ANY_METHOD = [*sorted(PROXY_METHODS), "TRACE", "CONNECT"]

# Where the queue worker's calls seem to come from: it has no socket of its own.
_QUEUE_WORKER_CLIENT = ("127.0.0.1", 0)

_UPSTREAM_LIMITS = limits(max_connections=512)


def _tolerate_disconnect(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except ClientDisconnect:
            # The caller left while its body was read: nobody to answer, not a fault.
            logger.info("%s %s: the caller went away", request.method, request.url.path)
            return response(499)

    return handle


def _clean_client(**options: object) -> httpx.AsyncClient:
    client = httpx.AsyncClient(**options)  # type: ignore[arg-type]
    # No default Accept, Accept-Encoding, User-Agent: a forwarded request carries the
    # caller's headers, not ours.
    client.headers.clear()
    return client


class Gateway:
    """A local OpenFaaS-compatible gateway: an ASGI application with its state.

    Serve it with lifespan enabled (:func:`faasflow.gateway.serve`, or
    :class:`faasflow.gateway.BackgroundServer` in tests): its clients, queue workers and
    flow servers start on the lifespan's startup and stop on its shutdown.

    Args:
        config: the settings.

    Attributes:
        config: the settings.
        registry: the functions and their invocation counts.
        public_url: the gateway's own URL, given to the flows it starts; set it before
            startup when the config does not.
        startup_error: what made the startup fail, if it did.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.public_url = config.public_url
        self.startup_error: BaseException | None = None
        folders = HandlerFolders(config.functions_dir) if config.functions_dir else None
        self.registry = Registry(folders, labels=config.labels, annotations=config.annotations)
        for name, url in config.upstreams.items():
            self.registry.register(FunctionEntry(name=name, kind=Kind.UPSTREAM, url=url))
        self._auth = BasicAuth(*config.basic_auth) if config.basic_auth else None
        self._system = SystemAPI(self.registry, config.max_body_size)
        self._ready = False
        self._started = False
        self._clients: list[httpx.AsyncClient] = []
        self._flows: list[FlowProcess] = []
        self._proxy: Proxy | None = None
        self._queue: AsyncQueue | None = None
        self._self_client: httpx.AsyncClient | None = None
        self.metrics = GatewayMetrics(
            lambda: [_metric_name(entry.name) for entry in self.registry.entries()],
            lambda: self._queue.waiting if self._queue is not None else 0,
        )
        self.app = Starlette(
            routes=self._routes(),
            lifespan=self._lifespan,
            exception_handlers={404: self._not_found, 405: self._method_not_allowed},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            # Go's server dates every answer; a function's own Date passes unchanged.
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"date" for k, _ in headers):
                    headers.append((b"Date", http_date().encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_dated)

    @property
    def ready(self) -> bool:
        """Whether startup finished and shutdown has not begun."""
        return self._ready

    @property
    def queue(self) -> AsyncQueue | None:
        """The async queue while the gateway runs."""
        return self._queue

    def register(
        self,
        name: str,
        url: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        image: str = "",
    ) -> FunctionEntry:
        """Bind ``name`` to the HTTP server at ``url`` (as ``POST /system/register``).

        Call it from the gateway's event loop, or before it starts; from another thread
        use the HTTP API.
        """
        entry = FunctionEntry(
            name=check_function_name(name, "name"),
            kind=Kind.UPSTREAM,
            url=check_upstream_url(url, "url"),
            image=image,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
        )
        self.registry.register(entry)
        return entry

    # -- routes ----------------------------------------------------------------------
    def _routes(self) -> list[BaseRoute]:
        system = self._system
        auth = self._auth
        invoke = _tolerate_disconnect(self._invoke)
        enqueue = _tolerate_disconnect(self._enqueue)
        return [
            Route("/function/{name}", invoke, methods=_ANY_METHOD),
            Route("/function/{name}/{path:path}", invoke, methods=_ANY_METHOD),
            Route("/async-function/{name}", enqueue, methods=["POST"]),
            Route("/async-function/{name}/{path:path}", enqueue, methods=["POST"]),
            Route("/system/functions", protect(system.list_functions, auth), methods=["GET"]),
            Route("/system/functions", protect(system.deploy, auth), methods=["POST", "PUT"]),
            Route("/system/functions", protect(system.remove, auth), methods=["DELETE"]),
            Route(
                "/system/function/{name}", protect(system.function_status, auth), methods=["GET"]
            ),
            Route("/system/info", protect(system.info, auth), methods=["GET"]),
            Route("/system/register", protect(system.register, auth), methods=["POST"]),
            Route("/system/register/{name}", protect(system.unregister, auth), methods=["DELETE"]),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/metrics", MetricsApp(self.metrics.render), methods=["GET"]),
        ]

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return not_found()

    async def _method_not_allowed(self, request: Request, exc: Exception) -> Response:
        return method_not_allowed()

    async def _healthz(self, request: Request) -> Response:
        if not self._ready:
            return http_error(503, "not ready")
        return response(200, b"OK", [("Content-Type", "text/plain; charset=utf-8")])

    async def _invoke(self, request: Request) -> Response:
        parsed = function_path(request.scope, "/function/")
        if parsed is None:
            return not_found()
        requested, sub = parsed
        incoming = decode_headers(request.headers.raw)
        stamp = stamp_call(incoming)
        if request.method not in PROXY_METHODS:
            return response(405, b"", stamp.response_headers)
        if self._proxy is None:
            return http_error(503, "gateway not started", stamp.response_headers)
        entry = self.registry.resolve(requested)
        if entry is None:
            return http_error(
                503,
                f"No endpoints available for: {requested}.",
                [*stamp.response_headers, ("X-Openfaas-Internal", "proxy")],
            )
        headers = copyable(incoming) + stamp.request_headers
        host = first_header(incoming, "host")
        if host and not first_header(headers, "X-Forwarded-Host"):
            headers.append(("X-Forwarded-Host", host))
        if not first_header(headers, "X-Forwarded-For"):
            headers.append(("X-Forwarded-For", remote_addr(request)))
        call = Call(
            requested=requested,
            entry=entry,
            method=request.method,
            path=sub or "/",
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=await probe_body(request.stream()),
            response_headers=stamp.response_headers,
        )
        began = time.perf_counter()
        answer = await self._proxy.send(call)
        # Counted once the function answered (or failed), before the caller reads it.
        self.registry.record_invocation(entry.name)
        self.metrics.observe(
            _metric_name(entry.name), answer.status_code, time.perf_counter() - began
        )
        return answer

    async def _enqueue(self, request: Request) -> Response:
        parsed = function_path(request.scope, "/async-function/")
        if parsed is None:
            return not_found()
        requested, sub = parsed
        incoming = decode_headers(request.headers.raw)
        stamp = stamp_call(incoming)
        try:
            # Bounded: a queued call's body waits in memory until a worker runs it.
            body = await read_body(request, self.config.max_body_size)
        except BodyTooLarge as exc:
            return body_too_large(exc.limit, stamp.response_headers)
        callback = first_header(incoming, "X-Callback-Url")
        if callback:
            try:
                check_url(callback)
            except GoURLError as exc:
                return http_error(400, str(exc), stamp.response_headers)
        if self._queue is None:
            return http_error(503, "gateway not started", stamp.response_headers)
        queued = QueuedCall(
            function=requested,
            path=sub,
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=(*incoming, *stamp.request_headers),
            body=body,
            callback_url=callback or None,
            call_id=stamp.call_id,
        )
        try:
            self._queue.submit(queued)
        except QueueFullError:
            size = self.config.async_queue_size
            return http_error(
                429, f"async queue is full ({size} calls waiting)", stamp.response_headers
            )
        except QueueClosedError:
            return http_error(503, "gateway is stopping", stamp.response_headers)
        return response(202, b"", stamp.response_headers)

    async def _run_queued(self, call: QueuedCall) -> CallResult:
        # The queue worker calls the gateway's own synchronous route, as with
        # gateway_invoke; here in process, through the same routing and proxy code.
        assert self._self_client is not None
        url = f"/function/{call.function}{call.path or '/'}"
        if call.query:
            url += "?" + call.query
        headers = copyable(call.headers)
        set_header(headers, "User-Agent", QUEUE_WORKER_USER_AGENT)
        async with self._self_client.stream(
            "POST", url, content=call.body, headers=headers
        ) as answer:
            body = b"".join([chunk async for chunk in answer.aiter_raw()])
        return CallResult(
            status=answer.status_code, headers=decode_headers(answer.headers.raw), body=body
        )

    # -- life --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the clients, the queue workers and the flows; ready when it returns.

        The lifespan startup calls it; the runners of :mod:`faasflow.gateway.server`
        call it first, so that a failure is raised as is, not logged by uvicorn. A
        second call does nothing.

        Raises:
            ConfigurationError: a flow server did not start, or flows are configured
                and :attr:`public_url` is unknown.
        """
        if self._started:
            return
        self._started = True
        try:
            await self._startup()
        except BaseException as exc:
            self.startup_error = exc
            await self.stop()
            raise

    async def stop(self) -> None:
        """Drain the queue (for ``drain_timeout`` at most, reporting what is left),
        stop the flows, close the clients. A second call does nothing."""
        if not self._started:
            return
        self._started = False
        await self._shutdown()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            await self.start()
        except Exception as exc:
            logger.error("gateway startup failed: %s", exc)
            raise
        try:
            yield
        finally:
            await self.stop()

    async def _startup(self) -> None:
        config = self.config
        proxy_client = _clean_client(limits=_UPSTREAM_LIMITS, follow_redirects=False)
        callback_client = _clean_client(follow_redirects=False)
        self._self_client = _clean_client(
            transport=httpx.ASGITransport(
                app=self, raise_app_exceptions=False, client=_QUEUE_WORKER_CLIENT
            ),
            base_url=self.public_url or "http://gateway",
            timeout=None,  # the proxy enforces the upstream timeout
        )
        self._clients = [proxy_client, callback_client, self._self_client]
        self._proxy = Proxy(proxy_client, self.registry.folders, config.upstream_timeout)
        self._queue = AsyncQueue(
            self._run_queued,
            callback_client,
            concurrency=config.async_concurrency,
            maxsize=config.async_queue_size,
        )
        self._queue.start()
        if config.flows:
            await self._start_flows(proxy_client)
        self._ready = True
        logger.info("gateway ready%s", f" at {self.public_url}" if self.public_url else "")

    async def _start_flows(self, client: httpx.AsyncClient) -> None:
        if not self.public_url:
            raise ConfigurationError(
                "--flow: the flows need the gateway's URL; serve the gateway with "
                "faasflow.gateway.serve() or BackgroundServer, or set public_url"
            )
        secret = new_hmac_secret()
        self._flows = [
            FlowProcess(spec, self.config.flow_command(spec, free_port(), self.public_url, secret))
            for spec in self.config.flows
        ]
        results = await asyncio.gather(
            *(flow.start(client, self.config.flow_start_timeout) for flow in self._flows),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        for flow in self._flows:
            description = flow.spec.description()
            self.registry.register(
                FunctionEntry(
                    name=flow.spec.name,
                    kind=Kind.FLOW,
                    url=flow.url,
                    labels={"faas-flow": "1"},
                    annotations={"faas-flow-desc": description} if description else {},
                )
            )

    async def _shutdown(self) -> None:
        self._ready = False
        if self._queue is not None:
            # Drain first: queued calls may still need the flows and the clients.
            await self._queue.close(self.config.drain_timeout)
        await asyncio.gather(*(flow.stop() for flow in self._flows))
        self._flows = []
        for client in self._clients:
            await client.aclose()
        self._clients = []
        self._proxy = None
        self._queue = None
        self._self_client = None


def _metric_name(name: str) -> str:
    # OpenFaaS labels its metrics with NAME.NAMESPACE; the resolved name, not the one
    # in the URL, so that made-up names add no time series.
    return f"{name}.{NAMESPACE}"


def create_gateway(
    *,
    functions_dir: str | Path | None = None,
    upstreams: Mapping[str, str] | None = None,
    flows: Sequence[ServedFlow] = (),
    basic_auth: tuple[str, str] | None = None,
    async_concurrency: int = 10,
    async_queue_size: int = 1000,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    annotations: Mapping[str, Mapping[str, str]] | None = None,
    upstream_timeout: float = 60.0,
    drain_timeout: float = 30.0,
    flow_start_timeout: float = 30.0,
    public_url: str | None = None,
    flow_command: FlowCommandBuilder = flow_server_command,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> Gateway:
    """Build a local OpenFaaS-compatible gateway (an ASGI application).

    Every argument is a field of :class:`~faasflow.gateway.config.GatewayConfig`,
    where each is described.

    Raises:
        ConfigurationError: a setting is invalid; the message names the option.
    """
    config = GatewayConfig(
        functions_dir=Path(functions_dir) if functions_dir is not None else None,
        upstreams={k: v.rstrip("/") for k, v in (upstreams or {}).items()},
        flows=tuple(flows),
        basic_auth=basic_auth,
        async_concurrency=async_concurrency,
        async_queue_size=async_queue_size,
        labels=labels or {},
        annotations=annotations or {},
        upstream_timeout=upstream_timeout,
        drain_timeout=drain_timeout,
        flow_start_timeout=flow_start_timeout,
        public_url=public_url,
        flow_command=flow_command,
        max_body_size=max_body_size,
    )
    return Gateway(config)
