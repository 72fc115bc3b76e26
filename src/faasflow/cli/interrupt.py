"""Ctrl-C while a command waits for requests: say at once what is left, then end promptly.

``faasflow run`` and ``faasflow recover`` wait for requests that this process runs. On
the first Ctrl-C, :func:`until_interrupted` prints a notice (which requests are still
running and how to continue them) at once, stops the wait and raises
:class:`Interrupted`; the command then closes its engine, which releases the steps this
process held so that ``faasflow recover`` can take them over, and calls
:func:`exit_interrupted`.

Why the process ends with :func:`os._exit`: the engine runs synchronous user callables
on a thread pool, and a thread running user code cannot be cancelled. Python's normal
exit joins every worker thread of a ``concurrent.futures`` pool (daemon or not, since
3.9), so it would wait for that callable to return, however long it takes. Daemon
threads are no way out for the same reason, and the pool belongs to the engine, which
runs callables there for every embedder, not only the command line. So the command runs
Python's exit handlers itself (logging, the tracing exporter's flush) and then ends
without the thread join; the callable dies with the process, as it would on a kill, and
its step is taken over later.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from faasflow.cli.common import EXIT_INTERRUPTED

__all__ = ["GRACE", "Interrupted", "exit_interrupted", "until_interrupted"]

T = TypeVar("T")

GRACE = 3.0
"""Seconds the clean-up after a Ctrl-C may take (closing the engine and its stores)
before the process ends anyway: a store that does not answer must not hold it."""


class Interrupted(Exception):
    """Ctrl-C stopped the wait; the notice is on stderr already."""


async def until_interrupted(work: Awaitable[T], notice: Callable[[], str]) -> T:
    """Await ``work``; on Ctrl-C print ``notice()`` on stderr and raise :class:`Interrupted`.

    ``work`` is cancelled then. A second Ctrl-C, or a clean-up longer than :data:`GRACE`
    seconds after the first, ends the process at once with status 130. Where the event
    loop cannot take signals (not the main thread, Windows), Ctrl-C raises
    ``KeyboardInterrupt`` as usual.

    Args:
        work: what to wait for.
        notice: the line to print (without its newline), called when Ctrl-C comes, so it
            can say what is known by then.

    Raises:
        Interrupted: Ctrl-C came before ``work`` ended.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    stop: asyncio.Future[None] = loop.create_future()

    def on_sigint() -> None:
        if stop.done():
            _exit_now()  # the second Ctrl-C: the user will not wait for the clean-up
        # Printed here, in the signal's callback, so it comes out before any clean-up.
        _write_stderr(notice() + "\n")
        stop.set_result(None)
        loop.call_later(GRACE, _exit_now)

    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):
        return await task
    either: set[asyncio.Future[Any]] = {task, stop}
    interrupted = False
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        interrupted = stop.done()
        if not interrupted:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Interrupted
    finally:
        task.cancel()  # a no-op once it is done
        # After a Ctrl-C the handler stays: a second one during the clean-up must still
        # end the process.
        if not interrupted:
            loop.remove_signal_handler(signal.SIGINT)
            if previous is not None:  # asyncio puts Python's default back, not the caller's
                signal.signal(signal.SIGINT, previous)


def exit_interrupted() -> NoReturn:
    """End the process with status 130 after Python's exit handlers, without waiting for
    worker threads (see the module docstring)."""
    signal.signal(signal.SIGINT, lambda signum, frame: _exit_now())
    try:
        # What a normal exit runs before it ends, except the join of worker threads
        # (registered apart, with threading, not atexit).
        atexit._run_exitfuncs()
    finally:
        _exit_now()


def _exit_now() -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def _write_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text)
        sys.stderr.flush()
