"""The async route's queue and its workers: NATS and the queue worker, in process.

``/async-function/NAME`` puts a :class:`QueuedCall` here and answers 202. A bounded
number of workers take calls in order and do what OpenFaaS's nats-queue-worker does
with each:

- call ``POST /function/NAME/sub/path?query`` (always POST) through the gateway's own
  synchronous route, with the original headers (``X-Call-Id``, ``X-Start-Time``,
  ``X-Callback-Url`` among them) and ``User-Agent: openfaas-ce/nats-queue-worker``;
- with an ``X-Callback-Url``, POST the function's answer there: its body, its headers,
  and ``X-Function-Status``, ``X-Function-Name`` (as the caller spelled it),
  ``X-Call-Id``, ``X-Duration-Seconds`` (``%f``: six decimals).

Unlike NATS, the queue is bounded (a full queue refuses with 429) and lives in memory:
calls still queued when the gateway stops are drained for a while, then reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from faasflow.gateway.wire import Header, copyable, set_header

logger = logging.getLogger(__name__)

QUEUE_WORKER_USER_AGENT = "openfaas-ce/nats-queue-worker"
"""The ``User-Agent`` of the queue worker's calls (OpenFaaS CE)."""

GO_USER_AGENT = "Go-http-client/1.1"
"""The ``User-Agent`` of the callbacks: the queue worker's Go client sets none of its own."""

CALLBACK_TIMEOUT = 60.0
"""Seconds a callback receiver may take to answer."""


@dataclass(frozen=True)
class QueuedCall:
    """One accepted async call, as the gateway put it on the queue.

    Attributes:
        function: ``{name}`` as the caller spelled it (``NAME.openfaas-fn`` stays so).
        path: the sub-path after the name, still encoded (``""`` for none).
        query: the raw query string (``""`` for none).
        headers: the request's headers with the gateway's ``X-Call-Id`` and
            ``X-Start-Time`` added, as the queue worker gets them.
        body: the whole request body.
        callback_url: the ``X-Callback-Url`` value, or ``None``.
        call_id: the ``X-Call-Id`` the caller was given.
    """

    function: str
    path: str
    query: str
    headers: tuple[Header, ...]
    body: bytes
    callback_url: str | None
    call_id: str
    number: int = field(default=0, compare=False)


@dataclass(frozen=True)
class CallResult:
    """What the function answered to a queued call."""

    status: int
    headers: list[Header]
    body: bytes


Invoke = Callable[[QueuedCall], Awaitable[CallResult]]
"""Runs one queued call through the gateway's synchronous route."""


class QueueFullError(Exception):
    """The queue holds its maximum number of calls."""


class QueueClosedError(Exception):
    """The gateway is stopping and takes no more async calls."""


class AsyncQueue:
    """A bounded in-memory queue of async calls served by ``concurrency`` workers.

    Args:
        invoke: makes the function call of a queued call.
        callback_client: the client that posts results to ``X-Callback-Url``s; the
            caller owns it.
        concurrency: calls running at once (the queue worker's ``max_inflight``).
        maxsize: calls that may wait; one more is refused with :class:`QueueFullError`.
    """

    def __init__(
        self,
        invoke: Invoke,
        callback_client: httpx.AsyncClient,
        *,
        concurrency: int,
        maxsize: int,
    ) -> None:
        self._invoke = invoke
        self._callbacks = callback_client
        self._concurrency = concurrency
        self._queue: asyncio.Queue[QueuedCall] = asyncio.Queue(maxsize)
        self._workers: list[asyncio.Task[None]] = []
        self._numbers = itertools.count(1)
        self._closed = False
        self.in_flight = 0

    @property
    def waiting(self) -> int:
        """Calls queued and not yet taken by a worker."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the workers (on the running loop)."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"faasflow-gateway-queue-worker-{i}")
            for i in range(self._concurrency)
        ]

    def submit(self, call: QueuedCall) -> QueuedCall:
        """Queue ``call``; returns it numbered (for the logs).

        Raises:
            QueueFullError: ``maxsize`` calls are waiting.
            QueueClosedError: the queue is draining.
        """
        if self._closed:
            raise QueueClosedError
        numbered = dataclasses.replace(call, number=next(self._numbers))
        try:
            self._queue.put_nowait(numbered)
        except asyncio.QueueFull:
            raise QueueFullError from None
        return numbered

    async def close(self, drain_timeout: float) -> list[QueuedCall]:
        """Stop taking calls, let the workers finish the queue for up to
        ``drain_timeout`` seconds, stop them; returns the calls that never ran,
        after logging each one (nothing is dropped silently)."""
        self._closed = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self._queue.join()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        undelivered: list[QueuedCall] = []
        while not self._queue.empty():
            undelivered.append(self._queue.get_nowait())
        for call in undelivered:
            logger.error(
                "gateway stopping: async call #%d to %s (X-Call-Id %s) was never run%s",
                call.number, call.function, call.call_id,
                f"; no callback to {call.callback_url}" if call.callback_url else "",
            )  # fmt: skip
        return undelivered

    async def _work(self) -> None:
        while True:
            call = await self._queue.get()
            self.in_flight += 1
            try:
                await self._run(call)
            except Exception:
                # A bug here must not kill the worker: the next call still runs.
                logger.exception("async call #%d to %s failed", call.number, call.function)
            finally:
                self.in_flight -= 1
                self._queue.task_done()

    async def _run(self, call: QueuedCall) -> None:
        started = time.perf_counter()
        result: CallResult | None
        try:
            result = await self._invoke(call)
        except Exception:
            # The real worker answers its callback with 503 when the call itself fails.
            logger.exception("async call #%d: invoking %s failed", call.number, call.function)
            result = None
        duration = time.perf_counter() - started
        status = result.status if result is not None else 503
        logger.info("[#%d] Invoked: %s [%d] in %fs", call.number, call.function, status, duration)
        if call.callback_url is None:
            if status >= 400:
                logger.warning(
                    "async call #%d to %s (X-Call-Id %s) answered %d and has no "
                    "X-Callback-Url: the answer is dropped",
                    call.number, call.function, call.call_id, status,
                )  # fmt: skip
            return
        await self._post_callback(call, result, status, duration)

    async def _post_callback(
        self, call: QueuedCall, result: CallResult | None, status: int, duration: float
    ) -> None:
        assert call.callback_url is not None
        headers = copyable(result.headers) if result is not None else []
        set_header(headers, "X-Duration-Seconds", f"{duration:f}")
        set_header(headers, "X-Function-Status", str(status))
        set_header(headers, "X-Function-Name", call.function)
        if call.call_id:
            set_header(headers, "X-Call-Id", call.call_id)
        if not any(k.lower() == "user-agent" for k, _ in headers):
            headers.append(("User-Agent", GO_USER_AGENT))  # what the worker's Go client sends
        body = result.body if result is not None else b""
        if not body:
            # Go's client announces an empty POST body; httpx would send no length.
            set_header(headers, "Content-Length", "0")
        try:
            answer = await self._callbacks.post(
                call.callback_url, content=body, headers=headers, timeout=CALLBACK_TIMEOUT
            )
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            logger.error(
                "async call #%d to %s: posting the result to %s failed: %s",
                call.number, call.function, call.callback_url, exc,
            )  # fmt: skip
            return
        logger.info(
            "[#%d] Posted result for %s to callback-url: %s, status: %d",
            call.number, call.function, call.callback_url, answer.status_code,
        )  # fmt: skip
