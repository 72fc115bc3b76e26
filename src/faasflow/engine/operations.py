"""Running a node's operations: modifiers, function calls with timeouts and retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from faasflow import tracing
from faasflow.callables import call_user, origin
from faasflow.dsl.operations import Apply, Modify, Operation, Request
from faasflow.dsl.options import NO_RETRY
from faasflow.engine.context import as_bytes
from faasflow.errors import (
    FunctionError,
    FunctionHTTPError,
    FunctionNotFoundError,
    FunctionTimeoutError,
    NodeError,
    OperationError,
)
from faasflow.functions.base import FunctionRequest, FunctionResponse


class Caller(Protocol):
    """Something that can make a function call (the engine's function registry)."""

    async def invoke(self, request: FunctionRequest) -> FunctionResponse: ...


@dataclass(frozen=True)
class CallEvent:
    """One function-call attempt, as call observers see it.

    Attributes:
        node: the node path that made the call.
        function: the function name, or the URL of a ``request``.
        attempt: 1 for the first try.
        seconds: how long the attempt took.
        error: why it failed, ``None`` when it succeeded.
        timed_out: it failed by taking longer than its timeout.
        retrying: it failed and another attempt follows.
    """

    node: str
    function: str
    attempt: int
    seconds: float
    error: str | None = None
    timed_out: bool = False
    retrying: bool = False


CallObserver = Callable[[CallEvent], Awaitable[None]]


async def _ignore(event: CallEvent) -> None:
    return None


async def run_operations(
    operations: Sequence[Operation],
    data: bytes,
    *,
    node: str,
    request_id: str,
    caller: Caller,
    default_timeout: float,
    observe: CallObserver = _ignore,
) -> tuple[bytes, int]:
    """Run ``operations`` in order on ``data``; return the output and the most attempts
    any call needed; ``observe`` hears of every call attempt. Raises :class:`NodeError`
    naming the node and attempt."""
    attempts_used = 1
    for operation in operations:
        if isinstance(operation, Modify):
            data = await run_user(operation.fn, data, node=node, what="modify")
        else:
            data, attempts = await _call(
                operation,
                data,
                node=node,
                request_id=request_id,
                caller=caller,
                default_timeout=default_timeout,
                observe=observe,
            )
            attempts_used = max(attempts_used, attempts)
    return data, attempts_used


async def run_user(fn: object, data: object, *, node: str, what: str) -> bytes:
    """Run a user callable that must return bytes; failures name the node."""
    try:
        return as_bytes(await call_user(fn, data), what)  # type: ignore[arg-type]
    except NodeError:
        raise
    except Exception as exc:
        where = origin(exc)
        raise OperationError(
            f"{what} failed: {type(exc).__name__}: {exc}" + (f" (at {where})" if where else ""),
            node=node, attempt=1,
        ) from exc


async def _call(
    operation: Apply | Request,
    data: bytes,
    *,
    node: str,
    request_id: str,
    caller: Caller,
    default_timeout: float,
    observe: CallObserver,
) -> tuple[bytes, int]:
    options = operation.options
    retry = options.retry or NO_RETRY
    timeout = options.timeout or default_timeout
    target = operation.function if isinstance(operation, Apply) else operation.url
    error: FunctionError | None = None
    for attempt in range(1, retry.attempts + 1):
        began = time.perf_counter()
        try:
            # The span records a failure passing through it (status error).
            with tracing.call_span(target, attempt) as trace_headers:
                output = await _attempt(
                    caller, operation, data, target=target, timeout=timeout,
                    request_id=request_id, trace_headers=trace_headers,
                )
        except FunctionError as exc:
            error = _at(exc, node, attempt)
            # Retrying cannot make an unknown function appear.
            retrying = attempt < retry.attempts and not isinstance(exc, FunctionNotFoundError)
            await observe(CallEvent(
                node, target, attempt, time.perf_counter() - began, str(exc),
                timed_out=isinstance(exc, FunctionTimeoutError), retrying=retrying,
            ))
            if not retrying:
                break
            await asyncio.sleep(retry.delay(attempt))
        else:
            await observe(CallEvent(node, target, attempt, time.perf_counter() - began))
            return output, attempt
    assert error is not None
    if options.on_failure is not None:
        try:
            handled = await call_user(options.on_failure, error)
        except FunctionError as exc:
            raise _at(exc, node, error.attempt) from error
        except Exception as exc:
            raise OperationError(
                f"on_failure of {target!r} failed: {type(exc).__name__}: {exc}",
                node=node,
                attempt=error.attempt,
            ) from exc
        if handled is not None:
            return as_bytes(handled, f"on_failure of {target!r}"), error.attempt
    raise error


async def _attempt(
    caller: Caller,
    operation: Apply | Request,
    data: bytes,
    *,
    target: str,
    timeout: float,
    request_id: str,
    trace_headers: dict[str, str],
) -> bytes:
    options = operation.options
    request = FunctionRequest(
        target=target,
        body=data,
        method=options.method,
        headers={**trace_headers, **options.headers},
        query=list(options.query),
        timeout=timeout,
        is_url=isinstance(operation, Request),
        request_id=request_id,
    )
    try:
        async with asyncio.timeout(timeout):
            if options.request_handler is not None:
                await call_user(options.request_handler, request)
            response = await caller.invoke(request)
            if options.on_response is not None:
                return as_bytes(
                    await call_user(options.on_response, response), f"on_response of {target!r}"
                )
    except TimeoutError as exc:
        raise FunctionTimeoutError(
            f"{target!r} did not answer within {timeout:g}s", function=target
        ) from exc
    except FunctionError:
        raise
    except Exception as exc:
        raise FunctionError(f"{target!r}: {type(exc).__name__}: {exc}", function=target) from exc
    if not response.ok:
        snippet = response.body[:200].decode(errors="replace")
        raise FunctionHTTPError(
            f"{target!r} answered {response.status}: {snippet}",
            function=target,
            status=response.status,
            body=response.body,
        )
    return response.body


def _at(exc: FunctionError, node: str, attempt: int) -> FunctionError:
    exc.node = node
    exc.attempt = attempt
    return exc
