"""Requests as wholes in the state store: their records, their history, their waiters.

:class:`RequestBook` moves a request between statuses with one compare-and-set per
transition (so exactly one caller ends it), appends to its history (telling the
observers), and settles the futures of callers in this process that wait for its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from faasflow.engine import _keys as keys
from faasflow.engine._records import HistoryEntry, RequestRecord, StepRecord
from faasflow.engine.observers import Observers
from faasflow.errors import StoreError
from faasflow.stores.base import DataStore, StateStore

_CAS_ROUNDS = 100
"""Compare-and-set rounds before a status change gives up (only under a storm of writers)."""


class RequestBook:
    """The request records and histories of one flow, and this process's waiters.

    Args:
        flow_name: the flow's name.
        state: the state store.
        data: the data store (results).
        observers: told of every history entry recorded here.
    """

    def __init__(
        self, flow_name: str, state: StateStore, data: DataStore, observers: Observers
    ) -> None:
        self.flow_name = flow_name
        self.state = state
        self.data = data
        self.observers = observers
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}

    # -- records ----------------------------------------------------------------------
    async def get(self, rid: str) -> RequestRecord | None:
        """Request ``rid``'s record, or ``None`` when unknown or expired."""
        raw = await self.state.get(keys.request(rid))
        return None if raw is None else RequestRecord.decode(raw)

    async def get_raw(self, rid: str) -> bytes | None:
        """Request ``rid``'s record as stored (for a compare-and-set), or ``None``."""
        return await self.state.get(keys.request(rid))

    async def steps(self, rid: str) -> dict[str, StepRecord]:
        """The node records of request ``rid`` while it runs (node path → record)."""
        prefix = keys.node_record(rid, "")
        found = await self.state.keys(prefix)
        values = await self.state.get_many(found)
        return {
            key[len(prefix) :]: StepRecord.decode(value)
            for key, value in zip(found, values, strict=True)
            if value is not None
        }

    async def result(self, rid: str) -> bytes | None:
        """Request ``rid``'s stored result, or ``None`` (none yet, or expired)."""
        return await self.data.get(keys.result(rid))

    async def ids(self) -> list[str]:
        """Ids of this flow's requests still on record, in id order."""
        prefix = keys.flow_index(self.flow_name)
        return [key[len(prefix) :] for key in await self.state.keys(prefix)]

    async def unfinished(self) -> list[str]:
        """Ids of this flow's requests not yet succeeded or stopped (the live index)."""
        prefix = keys.live_index(self.flow_name)
        return [key[len(prefix) :] for key in await self.state.keys(prefix)]

    async def forget_unfinished(self, rid: str) -> None:
        """Drop ``rid`` from the live index (its record is gone)."""
        await self.state.delete(keys.live_index(self.flow_name, rid))

    async def page(
        self, wanted: set[str], limit: int, before: tuple[float, str] | None
    ) -> tuple[list[tuple[str, RequestRecord, float]], bool]:
        """Up to ``limit`` of this flow's requests in a status of ``wanted``, newest
        first by creation time (then id), older than ``before`` (``(created, id)``);
        with each its creation time, and whether more follow."""
        prefix = keys.flow_index(self.flow_name)
        index = await self.state.keys(prefix)
        created = await self.state.get_many(index)
        order = sorted(
            ((float(value or 0), key[len(prefix) :]) for key, value in zip(
                index, created, strict=True)),
            reverse=True,
        )
        if before is not None:
            order = [entry for entry in order if entry < before]
        found: list[tuple[str, RequestRecord, float]] = []
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            records = await self.state.get_many([keys.request(rid) for _, rid in batch])
            for (stamp, rid), raw in zip(batch, records, strict=True):
                if raw is None:
                    continue
                record = RequestRecord.decode(raw)
                if record.status in wanted:
                    found.append((rid, record, stamp))
                    if len(found) == limit:
                        return found, (stamp, rid) != order[-1]
        return found, False

    async def move(
        self, rid: str, allowed: Iterable[str], status: str, **changes: Any
    ) -> RequestRecord | None:
        """Move the request to ``status`` if it is in ``allowed``; the new record, or
        ``None`` when it was not (another caller won, or the state did not allow it)."""
        allowed = set(allowed)
        for _ in range(_CAS_ROUNDS):
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                return None
            record = RequestRecord.decode(raw)
            if record.status not in allowed:
                return None
            moved = record.moved(status, **changes)
            if await self.state.compare_and_set(keys.request(rid), raw, moved.encode()):
                return moved
        raise StoreError(f"request {rid!r}: status kept changing under compare-and-set")

    async def take_over(self, rid: str, record: RequestRecord, raw: bytes, owner: str) -> bool:
        """Make ``owner`` the owner of request ``rid``, if its record is still ``raw``."""
        mine = replace(record, owner=owner).encode()
        return await self.state.compare_and_set(keys.request(rid), raw, mine)

    # -- history ----------------------------------------------------------------------
    async def record(self, rid: str, entry: HistoryEntry) -> None:
        """Append ``entry`` to request ``rid``'s history; tell the observers."""
        await self.state.append(keys.history(rid), entry.encode())
        self.observers.event(rid, entry)

    async def history(self, rid: str) -> list[HistoryEntry]:
        """Request ``rid``'s history, oldest first."""
        return [HistoryEntry.decode(raw) for raw in await self.state.read_list(keys.history(rid))]

    # -- waiters ----------------------------------------------------------------------
    def waiter(self, rid: str) -> asyncio.Future[bytes]:
        """A future settled with the request's result, or its error, when it ends here."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rid, []).append(future)
        return future

    def waited_for(self, rid: str) -> bool:
        """Whether a caller in this process waits for request ``rid``."""
        return rid in self._waiters

    def resolve(self, rid: str, outcome: bytes | BaseException) -> None:
        """Settle the waiters of request ``rid`` with ``outcome``."""
        for future in self._waiters.pop(rid, []):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
