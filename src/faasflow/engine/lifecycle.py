"""How requests end, in this process: succeeded, failed, stopped, abandoned, retired.

Each end is one status transition (a compare-and-set, so exactly one caller ends a
request); the caller that made it runs the hooks (``finally_``, ``on_failure``) and
tells the observers once, settles this process's waiters, and cleans up what a finished
request leaves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from faasflow.callables import call_user, user_traceback
from faasflow.engine import _keys as keys
from faasflow.engine._hopbook import HopBook
from faasflow.engine._live import LiveRequest, LiveRequests
from faasflow.engine._records import (
    FAILED,
    PAUSED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    FailureInfo,
    HistoryEntry,
    RequestRecord,
    StepRecord,
)
from faasflow.engine._requests import RequestBook
from faasflow.engine._values import Values
from faasflow.engine.observers import Observers, RequestEnd
from faasflow.engine.settings import Settings
from faasflow.errors import FaasFlowError, NodeError, RequestFailedError, RequestStoppedError
from faasflow.stores.base import DataStore, StateStore
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.engine")


class Lifecycle:
    """The ends of one flow's requests.

    Args:
        flow_name: the flow's name.
        state, data: the stores.
        settings: the engine's knobs (``result_ttl``).
        requests: request records, history and waiters.
        values: reads a request's result.
        live: the requests this process works on (their hooks and contexts).
        hops: pending and held hops.
        observers: told of each end.
    """

    def __init__(
        self,
        *,
        flow_name: str,
        state: StateStore,
        data: DataStore,
        settings: Settings,
        requests: RequestBook,
        values: Values,
        live: LiveRequests,
        hops: HopBook,
        observers: Observers,
    ) -> None:
        self.flow_name = flow_name
        self.state = state
        self.data = data
        self.settings = settings
        self.requests = requests
        self.values = values
        self.live = live
        self.hops = hops
        self.observers = observers

    async def finish(self, live: LiveRequest, ref: str) -> None:
        """The request's last node produced ``ref``: it succeeded."""
        rid = live.base.request_id
        output = await self.values.read(ref, "")
        ttl = self.settings.result_ttl
        await self.data.put(keys.result(rid), output, ttl=ttl)
        record = await self.requests.move(rid, (RUNNING, PAUSED), SUCCEEDED,
                                          result_size=len(output))
        if record is None:
            return
        await self.requests.record(rid, HistoryEntry.now("request", "", SUCCEEDED,
                                                         size=len(output)))
        live.context.ended("success")
        await _hook(live.spec.finally_hook, "success", rid)
        await self._clean(rid, ttl)
        self.requests.resolve(rid, output)
        await self.observers.ended(RequestEnd(rid, self.flow_name, SUCCEEDED, record,
                                              result=output))

    async def fail(
        self, live: LiveRequest, hop: Hop | None, key: str, claimed: bytes | None,
        error: NodeError,
    ) -> None:  # fmt: skip
        """The step at ``key`` (claimed as ``claimed``, if it was) failed with ``error``:
        so does the request; the hop waits among the held ones for a redrive."""
        rid = live.base.request_id
        previous = StepRecord.decode(claimed) if claimed else StepRecord("running")
        failed = replace(previous, state="failed", owner=None, until=None, released=False,
                         finished=time.time(), error=str(error))
        await self.state.compare_and_set(key, claimed, failed.encode())
        # The request's status first: if the store fails after it, the request is still
        # on record as failed, and redrive resends a hop left pending instead of held.
        failure = FailureInfo(error.node, error.attempt, str(error))
        record = await self.requests.move(rid, (RUNNING, PAUSED), FAILED, error=failure)
        try:
            # The node's attempt (how often it was started); ``calls``: the function-call
            # attempt that failed it (the request's failure names that one).
            await self.requests.record(rid, HistoryEntry.now(
                "node", error.node, "failed", attempt=previous.attempt,
                started=previous.started, calls=error.attempt, error=str(error),
                traceback=_user_traceback(error),
            ))  # fmt: skip
            if hop is not None:
                await self.hops.hold(hop)
        finally:
            if record is not None:
                await self._failed(live, record, error)

    async def _failed(self, live: LiveRequest, record: RequestRecord, error: NodeError) -> None:
        """The request just failed because of ``error``: hooks, waiters, observers."""
        rid = live.base.request_id
        exc = RequestFailedError(
            f"request {rid} failed at node {error.node!r} (attempt {error.attempt}): {error}",
            request_id=rid,
            node=error.node,
            attempt=error.attempt,
            cause=str(error),
        )
        exc.__cause__ = error
        await self.requests.record(rid, HistoryEntry.now("request", "", FAILED,
                                                         error=str(error)))
        await self._end_hooks(live, exc)
        self.requests.resolve(rid, exc)
        await self.observers.ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))

    async def stop(self, rid: str) -> bool:
        """End the request: hooks run once, intermediate state is removed."""
        record = await self.requests.move(rid, (RUNNING, PAUSED, FAILED), STOPPED)
        if record is None:
            return False
        await self.requests.record(rid, HistoryEntry.now("request", "", STOPPED))
        live = self.live.get(rid, record.query)
        exc = RequestStoppedError(f"request {rid} was stopped", request_id=rid, cause="stopped")
        if record.error is None:
            await self._end_hooks(live, exc)
        await self._clean(rid, self.settings.result_ttl)
        self.requests.resolve(rid, exc)
        await self.observers.ended(RequestEnd(rid, self.flow_name, STOPPED, record, error=exc))
        return True

    async def abandon(self, rid: str, cause: str) -> bool:
        """Fail a running request that no process is moving forward (a lost hop)."""
        failure = FailureInfo("", 0, cause)
        record = await self.requests.move(rid, (RUNNING,), FAILED, error=failure)
        if record is None:
            return False
        exc = RequestFailedError(f"request {rid} failed: {cause}", request_id=rid, cause=cause)
        await self.requests.record(rid, HistoryEntry.now("request", "", FAILED, error=cause))
        await self._end_hooks(self.live.get(rid, record.query), exc)
        self.requests.resolve(rid, exc)
        await self.observers.ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))
        return True

    async def retire(self, rid: str) -> None:
        """Drop the intermediate state of a failed request nobody redrove in time."""
        if await self.requests.move(rid, (FAILED,), FAILED, retired=True) is not None:
            await self._clean(rid, self.settings.result_ttl)

    async def _end_hooks(self, live: LiveRequest, exc: RequestFailedError) -> None:
        rid = live.base.request_id
        live.context.ended("failure")
        await _hook(live.spec.failure_hook, exc, rid)
        await _hook(live.spec.finally_hook, "failure", rid)

    async def _clean(self, rid: str, ttl: float) -> None:
        """Leave only the record, the history and the result, expiring (the sweep prunes
        the flow's index entries of expired requests)."""
        await self.state.delete_prefix(keys.request_prefix(rid))
        await self.data.delete_prefix(keys.data_prefix(rid))
        await self.state.expire(keys.history(rid), ttl)
        # The record outlives the result, so an expired result reads as expired, not unknown.
        await self.state.expire(keys.request(rid), 2 * ttl)
        self.live.forget(rid)


def _user_traceback(error: BaseException) -> str | None:
    """The traceback of the user's exception behind ``error``, if one is."""
    cause = error.__cause__
    while isinstance(cause, FaasFlowError):
        cause = cause.__cause__
    return user_traceback(cause) if cause is not None else None


async def _hook(fn: Callable[[Any], Any] | None, arg: Any, rid: str) -> None:
    if fn is None:
        return
    try:
        await call_user(fn, arg)
    except Exception:
        log.exception("request %s: hook %s raised", rid, getattr(fn, "__name__", fn))
