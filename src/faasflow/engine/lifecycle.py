"""What happens to a request as a whole, in this process: its flow, its end, its waiters.

:class:`Lifecycle` is the half of the executor that is not about running one hop: it
builds a request's flow once per process, moves the request between statuses (one
compare-and-set per transition, so exactly one caller ends it), runs the hooks and end
listeners once per end, cleans up what a finished request leaves, resolves local
waiters, and writes the history.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faasflow.callables import call_user
from faasflow.dsl.spec import FlowSpec
from faasflow.engine import keys
from faasflow.engine.context import Context
from faasflow.engine.definition import Define, build_flow
from faasflow.engine.hopbook import HopBook
from faasflow.engine.planner import Planner
from faasflow.engine.records import (
    FAILED,
    PAUSED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    dumps,
    loads,
    process_owner,
)
from faasflow.errors import (
    NodeError,
    OperationError,
    RequestFailedError,
    RequestStoppedError,
    StoreError,
)
from faasflow.stores.base import DataStore, StateStore
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.engine")

_LIVE_CACHE = 1024


INLINE = "~"
"""Marks a ref that holds its value (data keys start with a request id, never ``~``)."""


@dataclass
class Settings:
    """Engine knobs, all with defaults that suit an embedded run."""

    default_timeout: float = 30.0
    """Seconds a function call may take when its operation sets no timeout."""
    result_ttl: float = 7 * 24 * 3600.0
    """How long a finished request's record, history and result are kept."""
    inline_limit: int = 1024
    """Outputs and inputs up to this many bytes travel inside hops and records instead of
    through the data store (0: always through the data store)."""
    max_claims: int | None = None
    """Times a step may be taken over from a process that died running it before the
    request fails instead (a node that kills its process); ``None``: no limit."""
    lease_ttl: float = 30.0
    """Seconds a claim on a running step stays valid unless its process renews it: how
    soon another process takes over a step whose process died without a trace (a pid
    that is gone proves it sooner)."""
    store_patience: float = 60.0
    """Seconds a step whose function has run keeps trying to record its result while
    the state store fails, before it gives the step up (and the function runs again)."""


@dataclass(frozen=True)
class RequestEnd:
    """What end listeners get: how a request ended.

    Attributes:
        request_id: the request.
        flow: the flow's name.
        status: ``succeeded``, ``failed`` or ``stopped``.
        record: the request record as it was written at the end.
        result: the output, for a succeeded request.
        error: why it ended, otherwise.
    """

    request_id: str
    flow: str
    status: str
    record: dict[str, Any]
    result: bytes | None = None
    error: RequestFailedError | None = None


@dataclass
class LiveRequest:
    """What this process knows of one request it is working on."""

    spec: FlowSpec
    planner: Planner
    context: Context
    base: Hop
    branch_counts: dict[str, int] = field(default_factory=dict)
    """Dynamic node path → how many branches it started (read once, not per branch)."""


class Lifecycle:
    """Requests of one flow as wholes; :class:`~faasflow.engine.executor.Executor` adds
    the running of hops."""

    def __init__(
        self,
        *,
        flow_name: str,
        define: Define,
        state: StateStore,
        data: DataStore,
        settings: Settings | None = None,
    ) -> None:
        self.flow_name = flow_name
        self.define = define
        self.state = state
        self.data = data
        self.settings = settings or Settings()
        self.owner = process_owner()
        self.hops = HopBook(state)
        self._live: OrderedDict[str, LiveRequest] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.end_listeners: list[Callable[[RequestEnd], Awaitable[None]]] = []
        """Awaited once per request end, in the process that recorded the end."""
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with every history event this process records, as it is recorded, and
        with each step's ``started`` (kept in the step's record, not as an entry)."""

    # -- building a request's flow ---------------------------------------------------
    def build(self, context: Context) -> FlowSpec:
        """Call ``define`` for ``context`` and validate what it built."""
        return build_flow(self.define, context)

    def _context(self, rid: str, query: str) -> Context:
        return Context(
            request_id=rid,
            flow_name=self.flow_name,
            query_string=query,
            data_store=self.data,
            loop=self._loop or asyncio.get_running_loop(),
        )

    def live(self, rid: str, query: str) -> LiveRequest:
        """This process's view of request ``rid`` (``define`` runs once per request)."""
        found = self._live.get(rid)
        if found is not None:
            self._live.move_to_end(rid)
            return found
        context = self._context(rid, query)
        spec = self.build(context)
        found = LiveRequest(spec, Planner(spec), context, Hop(rid, self.flow_name, "", query=query))
        self._live[rid] = found
        if len(self._live) > _LIVE_CACHE:
            self._live.popitem(last=False)
        return found

    async def _write(self, ref: str, data: bytes) -> str:
        """Store ``data`` at ``ref`` and return the ref to pass on.

        Values up to ``settings.inline_limit`` bytes are not stored: they travel inside
        the ref itself (``~`` + base64), in the hop, the node record and the join set,
        which are durable in the state store by the same commit that announces them.
        That saves a data-store write and a read per small value.
        """
        if len(data) <= self.settings.inline_limit:
            return INLINE + base64.urlsafe_b64encode(data).decode()
        await self.data.put(ref, data)
        return ref

    async def _read(self, ref: str, path: str) -> bytes:
        if ref.startswith(INLINE):
            return base64.urlsafe_b64decode(ref[len(INLINE) :])
        data = await self.data.get(ref)
        if data is None:
            raise OperationError(f"input data {ref!r} is missing (expired or deleted)", node=path)
        return data

    # -- ends ---------------------------------------------------------------------
    async def _set_status(
        self, rid: str, allowed: Iterable[str], status: str, **changes: Any
    ) -> dict[str, Any] | None:
        """Move the request to ``status`` if it is in ``allowed``; the new record, or
        ``None`` when it was not (another caller won, or the state did not allow it)."""
        allowed = set(allowed)
        for _ in range(100):
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                return None
            record = loads(raw)
            if record["status"] not in allowed:
                return None
            record.update(status=status, updated=time.time(), **changes)
            if await self.state.compare_and_set(keys.request(rid), raw, dumps(record)):
                return record
        raise StoreError(f"request {rid!r}: status kept changing under compare-and-set")

    async def _finish(self, live: LiveRequest, ref: str) -> None:
        rid = live.base.request_id
        output = await self._read(ref, "")
        ttl = self.settings.result_ttl
        await self.data.put(keys.result(rid), output, ttl=ttl)
        record = await self._set_status(rid, (RUNNING, PAUSED), SUCCEEDED, result_size=len(output))
        if record is None:
            return
        await self._history(rid, "request", "", "succeeded", size=len(output))
        live.context._state = "success"
        await self._hook(live.spec.finally_hook, "success", rid)
        await self._clean(rid, ttl)
        self._resolve(rid, output)
        await self._ended(RequestEnd(rid, self.flow_name, SUCCEEDED, record, result=output))

    async def _fail(
        self, live: LiveRequest, hop: Hop | None, key: str, claimed: bytes | None, error: NodeError
    ) -> None:
        rid = live.base.request_id
        previous = loads(claimed) if claimed else {"attempt": 1}
        failed = {**previous, "state": "failed", "finished": time.time(), "error": str(error)}
        failed.pop("owner", None)
        failed.pop("released", None)
        await self.state.compare_and_set(key, claimed, dumps(failed))
        # The request's status first: if the store fails after it, the request is still
        # on record as failed, and redrive resends a hop left pending instead of held.
        info = {"node": error.node, "attempt": error.attempt, "cause": str(error)}
        record = await self._set_status(rid, (RUNNING, PAUSED), FAILED, error=info)
        try:
            # The node's attempt (how often it was started); ``calls``: the function-call
            # attempt that failed it (the request's failure names that one).
            await self._history(
                rid, "node", error.node, "failed", attempt=previous.get("attempt", 1),
                started=previous.get("started"), calls=error.attempt, error=str(error),
            )
            if hop is not None:
                # The failed hop waits among the held ones: redrive sends it again.
                await self.hops.hold(hop)
        finally:
            if record is not None:
                await self._failed(live, record, error)

    async def _failed(self, live: LiveRequest, record: dict[str, Any], error: NodeError) -> None:
        """The request just failed because of ``error``: hooks, waiters, end listeners."""
        rid = live.base.request_id
        exc = RequestFailedError(
            f"request {rid} failed at node {error.node!r} (attempt {error.attempt}): {error}",
            request_id=rid,
            node=error.node,
            attempt=error.attempt,
            cause=str(error),
        )
        exc.__cause__ = error
        await self._history(rid, "request", "", "failed", error=str(error))
        await self._end_hooks(live, exc)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))

    async def _end_hooks(self, live: LiveRequest, exc: RequestFailedError) -> None:
        rid = live.base.request_id
        live.context._state = "failure"
        await self._hook(live.spec.failure_hook, exc, rid)
        await self._hook(live.spec.finally_hook, "failure", rid)

    async def _ended(self, end: RequestEnd) -> None:
        for listener in self.end_listeners:
            try:
                await listener(end)
            except Exception:
                log.exception("request %s: end listener failed", end.request_id)

    async def _hook(self, fn: Callable[[Any], Any] | None, arg: Any, rid: str) -> None:
        if fn is None:
            return
        try:
            await call_user(fn, arg)
        except Exception:
            log.exception("request %s: hook %s raised", rid, getattr(fn, "__name__", fn))

    async def _clean(self, rid: str, ttl: float) -> None:
        """Leave only the record, the history, the index entry and the result, expiring."""
        await self.state.delete_prefix(keys.request_prefix(rid))
        await self.data.delete_prefix(keys.data_prefix(rid))
        await self.state.delete(keys.live_index(self.flow_name, rid))
        for key in (keys.history(rid), keys.flow_index(self.flow_name, rid)):
            await self.state.expire(key, ttl)
        # The record outlives the result, so an expired result reads as expired, not unknown.
        await self.state.expire(keys.request(rid), 2 * ttl)
        self._live.pop(rid, None)

    # -- control ------------------------------------------------------------------
    async def stop(self, rid: str) -> bool:
        """End the request: hooks run once, intermediate state is removed."""
        record = await self._set_status(rid, (RUNNING, PAUSED, FAILED), STOPPED)
        if record is None:
            return False
        await self._history(rid, "request", "", "stopped")
        live = self.live(rid, record.get("query", ""))
        exc = RequestStoppedError(f"request {rid} was stopped", request_id=rid, cause="stopped")
        if record.get("error") is None:
            await self._end_hooks(live, exc)
        await self._clean(rid, self.settings.result_ttl)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, STOPPED, record, error=exc))
        return True

    async def abandon(self, rid: str, cause: str) -> bool:
        """Fail a running request that no process is moving forward (a lost hop)."""
        error = {"node": "", "attempt": 0, "cause": cause}
        record = await self._set_status(rid, (RUNNING,), FAILED, error=error)
        if record is None:
            return False
        exc = RequestFailedError(f"request {rid} failed: {cause}", request_id=rid, cause=cause)
        await self._history(rid, "request", "", "failed", error=cause)
        await self._end_hooks(self.live(rid, record.get("query", "")), exc)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))
        return True

    async def retire(self, rid: str) -> None:
        """Drop the intermediate state of a failed request nobody redrove in time."""
        if await self._set_status(rid, (FAILED,), FAILED, retired=True) is not None:
            await self._clean(rid, self.settings.result_ttl)

    # -- waiting ------------------------------------------------------------------
    def waiter(self, rid: str) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rid, []).append(future)
        return future

    def _resolve(self, rid: str, outcome: bytes | BaseException) -> None:
        for future in self._waiters.pop(rid, []):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _history_entry(self, kind: str, path: str, event: str, **details: Any) -> dict[str, Any]:
        record = details.pop("record", None)
        entry: dict[str, Any] = {"t": time.time(), "kind": kind, "node": path, "event": event}
        if record is not None:
            for name in ("attempt", "started", "finished", "size_in", "size_out", "calls"):
                if name in record:
                    entry[name] = record[name]
            branches = record.get("branches")
            if branches is not None:
                entry["branches"] = branches if isinstance(branches, int) else len(branches)
        entry.update(details)
        return entry

    async def _history(self, rid: str, kind: str, path: str, event: str, **details: Any) -> None:
        entry = self._history_entry(kind, path, event, **details)
        await self.state.append(keys.history(rid), dumps(entry))
        self._notify(rid, entry)

    def _notify(self, rid: str, entry: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener({"request_id": rid, **entry})

    def forget(self, rid: str) -> None:
        self._live.pop(rid, None)
