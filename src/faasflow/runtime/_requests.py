"""Reading and controlling requests: what every runtime offers, Engine, Worker and Client.

:class:`RequestsApi` is the part of the façades that needs only the stores and the
engine's parts: ``info``, ``list_requests``, ``requests``, ``result``, ``history``,
``wait``, ``pause``, ``resume``, ``stop`` and ``redrive``. :class:`Submitting` adds
starting requests (``submit``, ``run``, ``describe``). The façades are built from these
and a :class:`~faasflow.runtime._core.Core`; none of them subclasses another.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from faasflow.dsl.spec import FlowSpec
from faasflow.engine.context import Context
from faasflow.engine.definition import build_flow
from faasflow.engine.executor import Executor
from faasflow.engine.views import (
    FAILED,
    PAUSED,
    RUNNING,
    STATUSES,
    STOPPED,
    SUCCEEDED,
    RequestInfo,
    RequestPage,
    node_table,
    with_starts,
)
from faasflow.errors import (
    RequestError,
    RequestFailedError,
    RequestStateError,
    RequestStoppedError,
    UnknownRequestError,
)
from faasflow.runtime._core import Core
from faasflow.stores.base import DataStore, StateStore

REQUEST_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$")
"""URL-safe, at most 128 characters, and not ``.`` or ``..`` (dot-segments in a path)."""


def new_request_id() -> str:
    """A 20-character, URL-safe id that sorts by creation time."""
    stamp = int(time.time() * 1000).to_bytes(6, "big")
    raw = base64.b32encode(stamp + secrets.token_bytes(6)).decode().lower().rstrip("=")
    return raw[:20]


def check_request_id(rid: str) -> str:
    """Refuse ids that are not URL-safe or too long (they become store keys and paths)."""
    if not isinstance(rid, str) or not REQUEST_ID.match(rid):
        raise RequestError(
            f"invalid request id {rid!r}: use 1-128 letters, digits, '_', '.' or '-'", None
        )
    return rid


class RequestsApi:
    """Reading and controlling one flow's requests through a runtime's :class:`Core`."""

    _core: Core

    @property
    def flow_name(self) -> str:
        """The flow's name."""
        return self._core.flow_name

    @property
    def state(self) -> StateStore:
        """The state store."""
        return self._core.state

    @property
    def executor(self) -> Executor:
        """The engine's parts this runtime drives (for tests and tools that look inside)."""
        return self._core.executor

    @property
    def data(self) -> DataStore:
        """The data store."""
        return self._core.data

    # -- lifetime -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the stores and connect."""
        await self._core.start()

    async def close(self) -> None:
        """Release stores, connections and threads."""
        await self._core.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- reading ------------------------------------------------------------------------
    async def info(self, request_id: str, *, nodes: bool = False) -> RequestInfo:
        """The request's status (and, with ``nodes=True``, every node's state and details:
        see :func:`faasflow.engine.views.node_table`).

        Raises:
            UnknownRequestError: no such request, or it has expired.
        """
        record = await self._core.executor.requests.get(request_id)
        if record is None:
            raise UnknownRequestError(f"no request {request_id!r}", request_id)
        info = RequestInfo.from_record(request_id, record)
        if nodes:
            requests = self._core.executor.requests
            records = await requests.steps(request_id)
            history = await requests.history(request_id)
            info.nodes.update(node_table(with_starts(history, records), records))
        return info

    async def state_of(self, request_id: str) -> str:
        """The request's status: running, paused, succeeded, failed or stopped."""
        return (await self.info(request_id)).status

    async def result(self, request_id: str) -> bytes:
        """The stored result of a succeeded request.

        Raises:
            UnknownRequestError: no such request (or expired).
            RequestStateError: the request has not succeeded (yet).
        """
        info = await self.info(request_id)
        if info.status != SUCCEEDED:
            raise RequestStateError(
                f"request {request_id} has no result: it is {info.status}", request_id
            )
        data = await self._core.executor.requests.result(request_id)
        if data is None:
            raise UnknownRequestError(f"the result of {request_id} has expired", request_id)
        return data

    async def history(
        self, request_id: str, *, start: int = 0, limit: int | None = None
    ) -> list[dict[str, object]]:
        """The request's events, oldest first: request started and ended; per node
        started, retried, held, finished (expanded, for a dynamic node's choice) or
        failed, with attempts, times, sizes and errors.

        A request with many nodes has a long history: ``start`` and ``limit`` read a page
        of it (the stored entries ``start`` to ``start + limit``, with each node's start
        put back among them; a negative ``start`` counts from the end).

        Raises:
            UnknownRequestError: no such request, or it has expired.
            RequestError: a limit that is not positive.
        """
        if limit is not None and limit < 1:
            raise RequestError(f"limit must be positive, got {limit}", request_id)
        await self.info(request_id)
        requests = self._core.executor.requests
        stop = None if limit is None else start + limit
        if start < 0 and stop is not None and stop >= 0:
            stop = None  # a page counted from the end that reaches the end
        history = await requests.history(request_id, start, stop)
        # Running nodes' starts belong at the end of the history: only on its last page.
        last_page = stop is None
        steps = await requests.steps(request_id) if last_page else {}
        return with_starts(history, steps)

    async def counts(self, statuses: Sequence[str] = STATUSES) -> dict[str, int]:
        """How many of this flow's requests are in each of ``statuses`` (all by default).

        One index size each: constant on Redis, proportional to the count on SQL stores,
        so ask only for the statuses you show (the few running and paused, say).

        Raises:
            RequestError: an unknown status.
        """
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise RequestError(
                f"unknown status {', '.join(unknown)}: use {', '.join(STATUSES)}", None
            )
        requests = self._core.executor.requests
        return {status: await requests.count(status) for status in statuses}

    async def requests(self) -> list[str]:
        """Ids of this flow's requests still on record, oldest first."""
        return await self._core.executor.requests.ids()

    async def list_requests(
        self,
        *,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RequestPage:
        """This flow's requests still on record, newest first, a page at a time.

        Args:
            status: keep only requests in this status (or these statuses).
            limit: at most this many requests per page (1-1000).
            before: the ``next`` of the previous page (an opaque cursor).

        Raises:
            RequestError: an unknown status or a limit out of range.
        """
        wanted = {status} if isinstance(status, str) else set(status or STATUSES)
        unknown = sorted(wanted - set(STATUSES))
        if unknown:
            raise RequestError(
                f"unknown status {', '.join(unknown)}: use {', '.join(STATUSES)}", None
            )
        if not 1 <= limit <= 1000:
            raise RequestError(f"limit must be 1-1000, got {limit}", None)
        cut = None
        if before is not None:
            text, _, last = before.partition("/")
            try:
                cut = (float(text), last)
            except ValueError:
                raise RequestError(f"invalid cursor {before!r}", None) from None
        found, more = await self._core.executor.requests.page(wanted, limit, cut)
        page = [RequestInfo.from_record(rid, record) for rid, record, _ in found]
        # A cursor is "created/id" of the last request of the page.
        if more and found:
            rid, _, stamp = found[-1]
            return RequestPage(page, f"{stamp!r}/{rid}")
        return RequestPage(page, None)

    # -- waiting -----------------------------------------------------------------------
    async def wait(
        self, request_id: str, timeout: float | None = None, *, poll: float = 0.5
    ) -> bytes:
        """Wait for the request to end; its result, or the error that ended it.

        Raises:
            RequestFailedError: the request failed (``node``, ``attempt``, ``cause``).
            RequestStoppedError: the request was stopped.
            TimeoutError: it did not end within ``timeout`` seconds.
        """
        future = self._core.executor.requests.waiter(request_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Another process may end the request: look at the store between waits.
            outcome = await self.outcome(request_id)
            if outcome is not None:
                future.cancel()
                return outcome
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                future.cancel()
                raise TimeoutError(f"request {request_id} did not end within {timeout}s")
            step = poll if remaining is None else min(poll, remaining)
            done, _ = await asyncio.wait({future}, timeout=step)
            if done:
                return future.result()

    async def outcome(self, rid: str) -> bytes | None:
        """The result of an ended request, ``None`` while it runs.

        Raises:
            RequestFailedError: it failed.
            RequestStoppedError: it was stopped.
        """
        info = await self.info(rid)
        if info.status == SUCCEEDED:
            return await self.result(rid)
        if info.status == FAILED and info.failure is not None:
            raise RequestFailedError(
                f"request {rid} failed at node {info.failure.node!r} "
                f"(attempt {info.failure.attempt}): {info.failure.cause}",
                request_id=rid,
                node=info.failure.node,
                attempt=info.failure.attempt,
                cause=info.failure.cause,
            )
        if info.status == STOPPED:
            raise RequestStoppedError(f"request {rid} was stopped", request_id=rid, cause="stopped")
        return None

    # -- control ------------------------------------------------------------------------
    async def pause(self, request_id: str) -> None:
        """Hold the request: running nodes finish, their successors wait for :meth:`resume`."""
        await self._require(request_id, (RUNNING,), "pause")
        if await self._core.executor.requests.move(request_id, (RUNNING,), PAUSED) is None:
            await self._require(request_id, (RUNNING,), "pause")

    async def resume(self, request_id: str) -> int:
        """Continue a paused request; each held hop is sent once. Returns how many."""
        await self._require(request_id, (PAUSED,), "resume")
        if await self._core.executor.requests.move(request_id, (PAUSED,), RUNNING) is None:
            await self._require(request_id, (PAUSED,), "resume")
        with self._core.user_threads():
            return await self._core.executor.release_held(request_id)

    async def stop(self, request_id: str) -> None:
        """End a running, paused or failed request now; hooks run once."""
        await self._require(request_id, (RUNNING, PAUSED, FAILED), "stop")
        with self._core.user_threads():
            if not await self._core.executor.lifecycle.stop(request_id):
                await self._require(request_id, (RUNNING, PAUSED, FAILED), "stop")

    async def redrive(self, request_id: str) -> int:
        """Run a failed request again from its failed node(s), keeping finished results.

        Returns how many hops were sent again.
        """
        await self._require(request_id, (FAILED,), "redrive")
        record = await self._core.executor.requests.get(request_id)
        if record is not None and record.retired:
            raise RequestStateError(
                f"cannot redrive request {request_id}: it failed more than "
                f"{self._core.options.failed_ttl:g}s ago and its intermediate state was "
                "dropped",
                request_id,
            )
        moved = await self._core.executor.requests.move(request_id, (FAILED,), RUNNING,
                                                        error=None)
        if moved is None:
            await self._require(request_id, (FAILED,), "redrive")
        executor = self._core.executor
        with self._core.user_threads():
            # Pending hops too: a request failed as stalled lost them in flight.
            return await executor.release_held(request_id) + await executor.resend_pending(
                request_id
            )

    async def _require(self, rid: str, allowed: tuple[str, ...], verb: str) -> None:
        status = (await self.info(rid)).status
        if status not in allowed:
            raise RequestStateError(
                f"cannot {verb} request {rid}: it is {status} (needs {' or '.join(allowed)})", rid
            )


class Submitting(RequestsApi):
    """Starting requests, on top of reading and controlling them."""

    async def submit(
        self,
        data: bytes | str = b"",
        *,
        request_id: str | None = None,
        query: str = "",
        inline: bool = False,
        callback_url: str | None = None,
    ) -> str:
        """Start a request and return its id.

        Args:
            data: the input.
            request_id: choose the id (URL-safe, at most 128 characters).
            query: the request's query string, seen by ``context.query``.
            inline: run the first hop within this call (a sync flow then ends here).
            callback_url: kept on the request record, for the observers of its end.

        Raises:
            FlowDefinitionError: ``define`` built an invalid flow; nothing was started.
            DuplicateRequestError: ``request_id`` is already in use.
            RequestError: the input is larger than ``max_input_size``.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        limit = self._core.options.max_input_size
        if len(payload) > limit:
            raise RequestError(
                f"the input is {len(payload)} bytes, more than max_input_size ({limit} bytes; "
                "FAASFLOW_MAX_BODY_SIZE for the command line and the flow server)", request_id
            )
        await self.start()
        rid = check_request_id(request_id) if request_id else new_request_id()
        with self._core.user_threads():
            await self._core.executor.submit(
                rid, payload, query, inline=inline, callback_url=callback_url
            )
        return rid

    async def run(
        self,
        data: bytes | str = b"",
        *,
        request_id: str | None = None,
        query: str = "",
        timeout: float | None = None,
    ) -> bytes:
        """Start a request and wait for its result."""
        rid = await self.submit(data, request_id=request_id, query=query)
        return await self.wait(rid, timeout)

    def describe(self, query: str = "") -> FlowSpec:
        """The validated flow as ``define`` builds it for ``query`` (for export, and to
        tell a sync flow).

        Raises:
            FlowDefinitionError: ``define`` raised or built an invalid flow.
        """
        context = Context(request_id="export", flow_name=self.flow_name, query_string=query)
        return build_flow(self._core.executor.define, context)
