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
from faasflow.engine._records import (
    FAILED,
    RUNNING,
    STATUSES,
    HistoryEntry,
    RequestRecord,
    StepRecord,
)
from faasflow.engine.observers import Observers
from faasflow.errors import StoreError
from faasflow.stores.base import (
    DataStore,
    Entry,
    IndexDrop,
    IndexPut,
    Put,
    StateStore,
    WriteOp,
)

_CAS_ROUNDS = 100
"""Compare-and-set rounds before a status change gives up (only under a storm of writers)."""
_BATCH = 1000
"""Index entries read at once when all of them are wanted (recovery, the id list)."""
_AFTER_EVERY_MEMBER = "\U0010ffff"
"""A member above every other: ``(t, this)`` bounds everything scored up to ``t``."""


class RequestBook:
    """The request records and histories of one flow, and this process's waiters.

    Args:
        flow_name: the flow's name.
        state: the state store.
        data: the data store (results).
        observers: told of every history entry recorded here.
    """

    def __init__(
        self,
        flow_name: str,
        state: StateStore,
        data: DataStore,
        observers: Observers,
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

    # -- indexes -----------------------------------------------------------------------
    def created_writes(self, rid: str, record: RequestRecord) -> list[WriteOp]:
        """The index entries of a request just created (in its creation's commit)."""
        return [
            IndexPut(keys.flow_index(record.flow), rid, record.created),
            IndexPut(keys.status_index(record.flow, record.status), rid, record.created),
            *self._sweep_writes(rid, record),
        ]

    def _sweep_writes(self, rid: str, record: RequestRecord) -> list[WriteOp]:
        """Where a request in ``record``'s state sits for the sweep (the indexes are its
        own flow's, whichever engine moves it): running ones by their last progress,
        failed ones by when they failed, others nowhere."""
        due, retire = keys.due_index(record.flow), keys.retire_index(record.flow)
        if record.status == RUNNING:
            return [IndexPut(due, rid, record.updated), IndexDrop(retire, rid)]
        if record.status == FAILED and not record.retired:
            return [IndexPut(retire, rid, record.updated), IndexDrop(due, rid)]
        return [IndexDrop(due, rid), IndexDrop(retire, rid)]

    async def ids(self) -> list[str]:
        """Ids of this flow's requests still on record, oldest first."""
        return [member for _, member in await self._all(keys.flow_index(self.flow_name))]

    async def in_status(self, status: str) -> list[str]:
        """Ids of this flow's requests in ``status``, oldest first."""
        index = keys.status_index(self.flow_name, status)
        return [member for _, member in await self._all(index)]

    async def count(self, status: str) -> int:
        """How many of this flow's requests are in ``status``."""
        return await self.state.index_size(keys.status_index(self.flow_name, status))

    async def last_event(self, rid: str) -> HistoryEntry | None:
        """The latest event of request ``rid``'s history (one item read, not the list)."""
        raw = await self.state.read_list(keys.history(rid), start=-1)
        return HistoryEntry.decode(raw[0]) if raw else None

    async def lead_sweep(self, owner: str, ttl: float) -> bool:
        """Whether ``owner`` may sweep the flow now: it holds the flow's sweep lease
        (taken when free, renewed when its own) for ``ttl`` seconds."""
        key = keys.sweep_lease(self.flow_name)
        mine = owner.encode()
        if await self.state.compare_and_set(key, None, mine, ttl=ttl):
            return True
        return await self.state.compare_and_set(key, mine, mine, ttl=ttl)

    async def unfinished(self) -> list[str]:
        """Ids of this flow's running requests (the sweep's index)."""
        return [member for _, member in await self._all(keys.due_index(self.flow_name))]

    async def _all(self, index: str) -> list[Entry]:
        found: list[Entry] = []
        while True:
            page = await self.state.index_range(index, after=found[-1] if found else None,
                                                limit=_BATCH)
            found += page
            if len(page) < _BATCH:
                return found

    async def due(self, idle_since: float, limit: int) -> list[str]:
        """Up to ``limit`` running requests without progress (or a look) since
        ``idle_since``, the longest idle first."""
        entries = await self.state.index_range(
            keys.due_index(self.flow_name), before=(idle_since, _AFTER_EVERY_MEMBER),
            limit=limit,
        )
        return [member for _, member in entries]

    async def retirable(self, failed_before: float, limit: int) -> list[str]:
        """Up to ``limit`` failed requests that failed before ``failed_before``."""
        entries = await self.state.index_range(
            keys.retire_index(self.flow_name), before=(failed_before, _AFTER_EVERY_MEMBER),
            limit=limit,
        )
        return [member for _, member in entries]

    async def looked_at(self, rid: str, when: float) -> None:
        """Note that running request ``rid`` made progress, or was looked at, at
        ``when``: sweeps leave it alone until it has been idle long enough since."""
        await self.state.index_put(keys.due_index(self.flow_name), rid, when)

    async def forget_unfinished(self, rid: str) -> None:
        """Take ``rid`` out of the sweep's indexes (its record is gone, or it is neither
        running nor failed)."""
        await self.state.commit([IndexDrop(keys.due_index(self.flow_name), rid),
                                 IndexDrop(keys.retire_index(self.flow_name), rid)])

    async def page(
        self, wanted: set[str], limit: int, before: Entry | None
    ) -> tuple[list[tuple[str, RequestRecord, float]], bool]:
        """Up to ``limit`` of this flow's requests in a status of ``wanted``, newest
        first by creation time (then id), older than ``before`` (``(created, id)``);
        with each its creation time, and whether more follow.

        Reads one page of the flow's index (or of each wanted status's) and the records
        on it: the cost of the answer, whatever the store holds.
        """
        if wanted >= set(STATUSES):
            indexes = [keys.flow_index(self.flow_name)]
        else:
            indexes = [keys.status_index(self.flow_name, status) for status in sorted(wanted)]
        found: list[tuple[str, RequestRecord, float]] = []
        cursor = before
        while len(found) < limit:
            # One more than the page: whether another page follows.
            want = limit - len(found) + 1
            entries = sorted(
                {entry for index in indexes for entry in await self.state.index_range(
                    index, before=cursor, limit=want, descending=True)},
                reverse=True,
            )[:want]
            if not entries:
                return found, False
            cursor = entries[-1]
            records = await self.state.get_many([keys.request(rid) for _, rid in entries])
            for (created, rid), raw in zip(entries, records, strict=True):
                if raw is None:
                    continue  # expired: the sweep prunes its entries
                record = RequestRecord.decode(raw)
                if record.status in wanted:
                    if len(found) == limit:
                        return found, True
                    found.append((rid, record, created))
            if len(entries) < want:
                return found, False
        return found, False

    async def prune(self, older_than: float, limit: int = _BATCH) -> int:
        """Drop from the flow's indexes up to ``limit`` entries of requests created
        before ``older_than`` whose records have expired; how many were dropped."""
        index = keys.flow_index(self.flow_name)
        entries = await self.state.index_range(index, before=(older_than, ""), limit=limit)
        if not entries:
            return 0
        records = await self.state.get_many([keys.request(rid) for _, rid in entries])
        gone = [rid for (_, rid), raw in zip(entries, records, strict=True) if raw is None]
        drops: list[WriteOp] = []
        for rid in gone:
            drops.append(IndexDrop(index, rid))
            drops += [IndexDrop(keys.status_index(self.flow_name, s), rid) for s in STATUSES]
            drops.append(IndexDrop(keys.due_index(self.flow_name), rid))
            drops.append(IndexDrop(keys.retire_index(self.flow_name), rid))
        if drops:
            await self.state.commit(drops)
        return len(gone)

    async def move(
        self, rid: str, allowed: Iterable[str], status: str, **changes: Any
    ) -> RequestRecord | None:
        """Move the request to ``status`` if it is in ``allowed``; the new record, or
        ``None`` when it was not (another caller won, or the state did not allow it).

        The record, its entries in the status indexes and in the sweep's index change in
        one commit, conditional on the record as read.
        """
        allowed = set(allowed)
        for _ in range(_CAS_ROUNDS):
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                return None
            record = RequestRecord.decode(raw)
            if record.status not in allowed:
                return None
            moved = record.moved(status, **changes)
            writes: list[WriteOp] = [Put(keys.request(rid), moved.encode())]
            if moved.status != record.status:
                writes += [
                    IndexDrop(keys.status_index(record.flow, record.status), rid),
                    IndexPut(keys.status_index(record.flow, moved.status), rid,
                             moved.created),
                ]
            writes += self._sweep_writes(rid, moved)
            if await self.state.commit(writes, require={keys.request(rid): raw}):
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

    async def history(
        self, rid: str, start: int = 0, stop: int | None = None
    ) -> list[HistoryEntry]:
        """Request ``rid``'s history, oldest first: entries ``[start:stop]`` (a slice, as
        ``list`` has them; a page costs its own size)."""
        items = await self.state.read_list(keys.history(rid), start=start, stop=stop)
        return [HistoryEntry.decode(raw) for raw in items]

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
