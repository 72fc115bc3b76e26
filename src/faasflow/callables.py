"""One helper that runs any user callable, ``def`` or ``async def``, and says where it
failed.

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
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
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


_OURS = str(Path(__file__).resolve().parent)
_STDLIB = tuple(
    str(Path(path).resolve())
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback that are the user's: neither faasflow's nor
    the standard library's (asyncio, the thread pool)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return [
        frame for frame in frames
        if not str(Path(frame.filename).resolve()).startswith((_OURS, *_STDLIB))
    ]


def origin(exc: BaseException) -> str | None:
    """Where a user's callable raised ``exc``: ``file.py:LINE in NAME`` of the innermost
    frame of the user's own code (the library frames below it are not where to look),
    or ``None`` when no such frame is known."""
    frames = _user_frames(exc) or traceback.extract_tb(exc.__traceback__)[-1:]
    if not frames:
        return None
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the user's first frame on (faasflow's own frames above
    it say nothing about the user's code), with the exception line."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = _user_frames(exc)
    start = frames.index(mine[0]) if mine else 0
    lines = traceback.format_list(frames[start:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")
