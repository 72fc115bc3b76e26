"""One helper that runs any user callable, ``def`` or ``async def``.

A synchronous callable runs on a worker thread so that it cannot stall the other
requests of the process; an ``async def`` callable (or one returning an awaitable) runs on
the event loop. Context variables (the current node, the trace) are copied into the
thread. The thread pool is the engine's when one is installed with :func:`use_thread_pool`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

_pool: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "faasflow_thread_pool", default=None
)


@contextmanager
def use_thread_pool(pool: Executor | None) -> Iterator[None]:
    """Run synchronous callables started in this context on ``pool``."""
    token = _pool.set(pool)
    try:
        yield
    finally:
        _pool.reset(token)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials, callable objects)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


async def call_user(fn: Callable[..., Any], /, *args: Any) -> Any:
    """Call ``fn(*args)``: awaited if async, on a worker thread if sync."""
    if is_async_callable(fn):
        return await fn(*args)
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    result = await loop.run_in_executor(_pool.get(), functools.partial(ctx.run, fn, *args))
    if inspect.isawaitable(result):
        return await result
    return result
