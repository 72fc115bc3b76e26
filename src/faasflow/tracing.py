"""OpenTelemetry tracing: one trace per request, across every process it touches.

Spans: ``request FLOW`` when a request is created (a child of the caller's span, if the
caller sent a ``traceparent``); ``node PATH`` (``collect PATH`` for a dynamic node's
aggregation) for each hop run, a child of the request span wherever it runs; ``call
FUNCTION`` for each function-call attempt, a child of its node span. The request span's
W3C ``traceparent`` rides on every hop — inside the hop itself (so it is signed and kept
with held and pending hops) and as a ``traceparent`` header on HTTP and NATS hops — so a
request that crossed several processes is one trace. Function calls to a gateway carry
the call span's ``traceparent`` too.

faasflow uses only the OpenTelemetry API, whose spans cost next to nothing until an SDK
is installed: call :func:`configure` (or set ``OTEL_EXPORTER_OTLP_ENDPOINT``, or the
template's ``enable_tracing``/``trace_server``, for the command line), or install your
own tracer provider. The SDK and OTLP exporter come with ``pip install 'faasflow[tracing]'``.

Logs: :class:`LogContext` adds the request id and trace id of the hop being run to log
records (``record.request_id``, ``record.trace_id``, ``record.ids``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from faasflow.config import get_bool, get_text
from faasflow.errors import ConfigurationError

if TYPE_CHECKING:
    from faasflow.wire.hop import Hop

__all__ = [
    "TRACEPARENT",
    "LogContext",
    "call_span",
    "configure",
    "configure_from_env",
    "continue_from",
    "current_traceparent",
    "enabled",
    "mark_failed",
    "node_span",
    "request_span",
    "reset_request",
    "set_request",
]

TRACEPARENT = "traceparent"
"""The W3C trace-context header (and the field of a hop that carries its value)."""

_TRACER = trace.get_tracer("faasflow")
_PROPAGATOR = TraceContextTextMapPropagator()
_request_id: ContextVar[str] = ContextVar("faasflow_request_id", default="")


_installed = False
_checked_at = float("-inf")


def enabled() -> bool:
    """Whether a tracer provider is installed (otherwise every span is a no-op and hops
    carry no ``traceparent``).

    Asked on every hop, so the answer "no" is reused for up to a second (asking
    OpenTelemetry costs more than the rest of a hop's tracing): a provider installed
    while flows run is used from the next second on. "Yes" is final: OpenTelemetry's
    provider is set once.
    """
    global _installed, _checked_at
    if _installed:
        return True
    now = time.monotonic()
    if now - _checked_at < 1.0:
        return False
    _checked_at = now
    _installed = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    return _installed


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, or ``None`` when there is none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def _parent(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


@contextmanager
def continue_from(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the span named by ``headers``' ``traceparent`` (an HTTP caller's) the current
    parent, so a request created inside is part of the caller's trace."""
    traceparent = headers.get(TRACEPARENT)
    if not traceparent or not enabled():
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def request_span(flow: str, request_id: str) -> Iterator[str | None]:
    """The span of creating request ``request_id``; yields the ``traceparent`` its hops
    carry (``None`` when tracing is off)."""
    token = _request_id.set(request_id)
    try:
        if not enabled():
            yield None
            return
        attributes = {"faasflow.flow": flow, "faasflow.request_id": request_id}
        with _TRACER.start_as_current_span(
            f"request {flow}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            yield current_traceparent()
    finally:
        _request_id.reset(token)


def set_request(request_id: str) -> Token[str]:
    """Name the request being worked on, for log lines; undo with :func:`reset_request`.

    Apart from :func:`node_span` so that running a hop costs two context-variable
    operations, not a context manager, when tracing is off.
    """
    return _request_id.set(request_id)


def reset_request(token: Token[str]) -> None:
    _request_id.reset(token)


@contextmanager
def node_span(hop: Hop) -> Iterator[None]:
    """The span of running ``hop``, a child of the span its ``traceparent`` names (use
    when :func:`enabled`)."""
    name = f"{'collect' if hop.kind == 'collect' else 'node'} {hop.path}"
    attributes = {
        "faasflow.flow": hop.flow,
        "faasflow.request_id": hop.request_id,
        "faasflow.node": hop.path,
        "faasflow.hop": hop.kind,
    }
    with _TRACER.start_as_current_span(
        name, context=_parent(hop.trace), kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextmanager
def call_span(function: str, attempt: int) -> Iterator[dict[str, str]]:
    """The span of one function-call attempt; yields the headers that continue the trace
    in the called function (empty when tracing is off)."""
    if not enabled():
        yield {}
        return
    attributes: dict[str, str | int] = {"faasflow.function": function, "faasflow.attempt": attempt}
    with _TRACER.start_as_current_span(
        f"call {function}", kind=SpanKind.CLIENT, attributes=attributes
    ):
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers)
        yield headers


def annotate(**attributes: str | int | float) -> None:
    """Add ``faasflow.NAME`` attributes to the current span (a no-op without tracing)."""
    if not enabled():
        return
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in attributes.items():
            span.set_attribute(f"faasflow.{name}", value)


def mark_failed(error: BaseException) -> None:
    """Record ``error`` on the current span and set its status to error."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))


class LogContext(logging.Filter):
    """Adds ``request_id``, ``trace_id`` and ``ids`` (`` [request R trace T]`` or ``""``)
    to every record, from the hop being run; install it on a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = _request_id.get()
        context = trace.get_current_span().get_span_context()
        trace_id = trace.format_trace_id(context.trace_id) if context.is_valid else ""
        record.request_id = rid
        record.trace_id = trace_id
        parts = ([f"request {rid}"] if rid else []) + ([f"trace {trace_id}"] if trace_id else [])
        record.ids = f" [{' '.join(parts)}]" if parts else ""
        return True


def configure(service_name: str, endpoint: str | None = None) -> None:
    """Install the OpenTelemetry SDK with an OTLP/HTTP exporter (batching, flushed at exit).

    Args:
        service_name: the ``service.name`` of this process's spans (``OTEL_SERVICE_NAME``
            wins when set).
        endpoint: the collector's base URL (``http://host:4318``); ``None`` leaves it to
            the exporter's own variables (``OTEL_EXPORTER_OTLP_ENDPOINT``…).

    Raises:
        ConfigurationError: the SDK is not installed.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "tracing needs the OpenTelemetry SDK: pip install 'faasflow[tracing]'"
        ) from None
    resource = Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    })
    provider = TracerProvider(resource=resource)
    traces = None if endpoint is None else endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    trace.set_tracer_provider(provider)
    global _checked_at
    _checked_at = float("-inf")  # ask again now


def export_endpoint(env: Mapping[str, str]) -> str | None:
    """Where ``env`` asks spans to go: ``None`` (tracing off), ``""`` (on, the OTLP
    exporter's own ``OTEL_EXPORTER_OTLP_*`` variables say where) or a collector's URL.

    Either the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``), or
    the template's ``enable_tracing=true`` with ``trace_server`` (``host:port`` or a URL
    of an OTLP/HTTP collector; default ``localhost:4318``).

    Raises:
        ConfigurationError: ``enable_tracing`` is not a boolean.
    """
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ""
    if not get_bool("enable_tracing", env):
        return None
    server = get_text("trace_server", env) or "localhost:4318"
    return server if "://" in server else f"http://{server}"


def configure_from_env(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on when the environment asks for it (see :func:`export_endpoint`);
    returns whether it is on. A tracer provider installed already is kept."""
    if enabled():
        return True
    endpoint = export_endpoint(os.environ if env is None else env)
    if endpoint is None:
        return False
    configure(service_name, endpoint or None)
    return True
