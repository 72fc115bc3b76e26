"""Prometheus metrics of an engine and of the local gateway (see ``docs/metrics.md``).

Every :class:`EngineMetrics` and :class:`GatewayMetrics` has a registry of its own,
never the process-wide default one: several engines and gateways may live in one
process (tests, a notebook), and each ``/metrics`` shows its own. prometheus_client is
used here and nowhere else.

- :class:`EngineMetrics` listens to an engine's hooks (history events, function-call
  attempts) and reads ``executor.running_steps`` and the held hops at scrape time.
- :class:`GatewayMetrics` is told of each invocation by the gateway and reads its
  function list and queue at scrape time.
- :class:`MetricsApp` is a plain ASGI app answering ``GET /metrics`` (the text
  exposition) and ``GET /healthz``; the flow server mounts it, ``faasflow worker
  --metrics-port`` serves it with :func:`serve_metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from faasflow.engine.observers import CallEvent, HistoryEntry, Observer
from faasflow.engine.views import FAILED, PAUSED
from faasflow.errors import FaasFlowError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from faasflow.runtime import Runner

__all__ = [
    "CONTENT_TYPE",
    "EngineMetrics",
    "GatewayMetrics",
    "MetricsApp",
    "function_label",
    "node_label",
    "serve_metrics",
]

log = logging.getLogger("faasflow.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of the text exposition format that ``/metrics`` answers with."""

HELD_CACHE_SECONDS = 5.0
"""How long a count of held hops is reused, so that scrapes don't hammer the store."""

NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Node and call durations run from microseconds (a ``modify``) to minutes."""

_REQUEST_EVENTS = frozenset({"started", "succeeded", "failed", "stopped"})
_BRANCH_KEY = re.compile(r"\[[^\]]*\]")
# Starts of steps whose end is not seen yet; a step whose process dies never ends here,
# so the table is bounded rather than left to grow.
_MAX_OPEN_STEPS = 10_000


def node_label(path: str) -> str:
    """The ``node`` label of a node instance's path: its branch keys replaced by ``*``.

    ``"C[c1]/F[item%2F7]/n1"`` → ``"C[*]/F[*]/n1"``. A foreach's keys come from the data,
    so keeping them would make one time series per item; percent-encoding keeps ``]``
    out of a key, so the pattern cannot cut one short.
    """
    return _BRANCH_KEY.sub("[*]", path)


def function_label(target: str) -> str:
    """The ``function`` label of a call: the function's name, or a ``request`` URL
    without its query and fragment (which may carry per-request values)."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class EngineMetrics(Observer):
    """The metrics of one engine, in a registry of their own.

    Built on an engine, it observes it (events and function calls); :meth:`render`
    (what ``/metrics`` answers) first refreshes the held-hops gauge from the state store.

    Args:
        engine: the engine to observe (an :class:`~faasflow.runtime.engine.Engine`, a
            :class:`~faasflow.workers.Worker`...).
        held_cache: seconds a count of held hops is reused.

    Attributes:
        registry: the registry holding this engine's metrics.
    """

    def __init__(self, engine: Runner, *, held_cache: float = HELD_CACHE_SECONDS) -> None:
        self.engine = engine
        self.flow = engine.flow_name
        self.registry = CollectorRegistry()
        self._held_cache = held_cache
        self._held_at: float | None = None
        self._held_lock = asyncio.Lock()
        self._open_steps: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.requests = Counter(
            "faasflow_requests", "Requests started, succeeded, failed or stopped, as "
            "recorded by this process.", ["flow", "status"], registry=self.registry,
        )
        self.node_duration = Histogram(
            "faasflow_node_duration_seconds", "How long a node step ran, by outcome.",
            ["flow", "node", "outcome"], buckets=NODE_BUCKETS, registry=self.registry,
        )
        self.call_duration = Histogram(
            "faasflow_function_call_duration_seconds", "How long a function-call attempt took.",
            ["flow", "function", "outcome"], buckets=NODE_BUCKETS, registry=self.registry,
        )
        self.call_errors = Counter(
            "faasflow_function_call_errors", "Function-call attempts that failed or timed out.",
            ["flow", "function"], registry=self.registry,
        )
        in_flight = Gauge(
            "faasflow_hops_in_flight", "Steps this process is running now.", ["flow"],
            registry=self.registry,
        )
        in_flight.labels(flow=self.flow).set_function(lambda: engine.running_steps)
        self.held = Gauge(
            "faasflow_held_hops", "Hops held back (paused or failed requests), counted in "
            "the state store.", ["flow"], registry=self.registry,
        )
        engine.observe(self)

    # -- hooks ---------------------------------------------------------------------
    def event(self, request_id: str, entry: HistoryEntry) -> None:
        """Count a history event."""
        name = entry.event
        if entry.kind == "request":
            if name in _REQUEST_EVENTS:
                self.requests.labels(flow=self.flow, status=name).inc()
            return
        step = (request_id, entry.node)
        if name == "started":
            self._open_steps[step] = entry.t
            if len(self._open_steps) > _MAX_OPEN_STEPS:
                self._open_steps.popitem(last=False)
        elif name in ("finished", "failed"):
            began = self._open_steps.pop(step, None)
            # A finished step's record has both times; a failed one's event has its end.
            began = entry.started if entry.started is not None else began
            ended = entry.finished if entry.finished is not None else entry.t
            if began is None:  # not run by this process (a sub-DAG's end, a late event)
                return
            outcome = "done" if name == "finished" else "failed"
            self.node_duration.labels(
                flow=self.flow, node=node_label(step[1]), outcome=outcome
            ).observe(max(0.0, float(ended) - float(began)))
        elif name == "expanded":
            self._open_steps.pop(step, None)

    def call(self, request_id: str, event: CallEvent) -> None:
        """Count a function-call attempt."""
        function = function_label(event.function)
        if event.error is None:
            outcome = "ok"
        else:
            outcome = "timeout" if event.timed_out else "error"
            self.call_errors.labels(flow=self.flow, function=function).inc()
        self.call_duration.labels(
            flow=self.flow, function=function, outcome=outcome
        ).observe(event.seconds)

    # -- scraping --------------------------------------------------------------------
    async def refresh(self) -> None:
        """Count the held hops again, unless the last count is recent.

        A store error leaves the last count in place and is logged: a scrape still
        answers.
        """
        async with self._held_lock:
            now = time.monotonic()
            if self._held_at is not None and now - self._held_at < self._held_cache:
                return
            try:
                held = await self._count_held()
            except FaasFlowError as exc:
                log.warning("flow %s: counting held hops failed: %s", self.flow, exc)
                return
            self.held.labels(flow=self.flow).set(held)
            self._held_at = now

    async def _count_held(self) -> int:
        # Hops are held by paused requests and by failed ones (for a redrive).
        executor = self.engine.executor
        total = 0
        for status in (PAUSED, FAILED):
            for rid in await executor.requests.in_status(status):
                total += await executor.hops.count_held(rid)
        return total

    async def render(self) -> bytes:
        """The text exposition of this engine's metrics, refreshed."""
        await self.refresh()
        return generate_latest(self.registry)


class _ServiceCount(Collector):
    """``gateway_service_count``: the replicas of each function, read at scrape time."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gateway_service_count", "Current count of replicas for function",
            labels=["function_name"],
        )
        for name in self._names():
            family.add_metric([name], 1)  # one process serves each function here
        yield family


class GatewayMetrics:
    """The local gateway's metrics, under the OpenFaaS gateway's names, so its
    dashboards work unchanged.

    Args:
        functions: the functions' label values (``NAME.openfaas-fn``), read at scrape time.
        queue_depth: the async calls waiting, read at scrape time.

    Attributes:
        registry: the registry holding the gateway's metrics.
    """

    def __init__(
        self, functions: Callable[[], Iterable[str]], queue_depth: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "gateway_function_invocation", "Function metrics",
            ["function_name", "code"], registry=self.registry,
        )
        self.seconds = Histogram(
            "gateway_functions_seconds", "Function time taken",
            ["function_name", "code"], registry=self.registry,
        )
        self.registry.register(_ServiceCount(functions))
        Gauge(
            "faasflow_gateway_queue_depth", "Async calls queued and not yet running.",
            registry=self.registry,
        ).set_function(queue_depth)

    def observe(self, function_name: str, code: int, seconds: float) -> None:
        """Count one invocation that answered ``code`` after ``seconds``."""
        self.invocations.labels(function_name=function_name, code=str(code)).inc()
        self.seconds.labels(function_name=function_name, code=str(code)).observe(seconds)

    async def render(self) -> bytes:
        """The text exposition of the gateway's metrics."""
        return generate_latest(self.registry)


class MetricsApp:
    """A plain ASGI app: ``GET /metrics`` answers ``render()``, ``GET /healthz`` ``ok``.

    Args:
        render: makes the text exposition (``EngineMetrics.render``...).
    """

    def __init__(self, render: Callable[[], Awaitable[bytes]]) -> None:
        self._render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # served with lifespan off: nothing else comes
            return
        path, method = scope["path"], scope["method"]
        if path not in ("/metrics", "/healthz"):
            await _answer(send, 404, b"not found\n", "text/plain; charset=utf-8")
        elif method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", "text/plain; charset=utf-8",
                          [(b"allow", b"GET, HEAD")])
        elif path == "/healthz":
            await _answer(send, 200, b"ok\n", "text/plain; charset=utf-8")
        else:
            body = await self._render()
            await _answer(send, 200, b"" if method == "HEAD" else body, CONTENT_TYPE)


async def _answer(
    send: Send, status: int, body: bytes, content_type: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type.encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serve_metrics(app: MetricsApp, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``app`` on the listening socket ``sock`` while the context is open.

    Needs uvicorn (``faasflow[server]``). The process keeps its own signal handlers:
    the caller decides when to stop.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn would take SIGTERM and SIGINT for itself and stop on them.
            yield

    server = _Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await task
