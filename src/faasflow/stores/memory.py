"""In-memory stores: the reference implementation of both contracts.

Fast and process-local: for tests, notebooks and flows whose requests need not outlive
the process. Every operation completes without yielding, so each is atomic with respect
to the other tasks of the event loop.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from typing import Self

from faasflow.errors import ConfigurationError
from faasflow.stores.base import (
    Append,
    DataStore,
    Delete,
    Entry,
    IndexPut,
    Put,
    StateStore,
    WriteOp,
)


class _Index:
    """An ordered index: its entries sorted, and each member's score."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.scores: dict[str, float] = {}

    def put(self, member: str, score: float) -> None:
        self.drop(member)
        bisect.insort(self.entries, (score, member))
        self.scores[member] = score

    def drop(self, member: str) -> None:
        score = self.scores.pop(member, None)
        if score is not None:
            del self.entries[bisect.bisect_left(self.entries, (score, member))]


_Value = bytes | dict[str, None] | list[bytes] | _Index


_DEPTH = 3
"""How many leading ``/``-terminated prefixes of a key are indexed: enough for every
prefix the engine asks for (``r/ID/``, ``r/ID/n/``, ``ID/``, ``f/FLOW/``)."""


def _folders(key: str) -> list[str]:
    """The first ``/``-terminated prefixes of ``key``: ``"r/x/n/a/b"`` → ``["r/", "r/x/",
    "r/x/n/"]``."""
    found: list[str] = []
    cut = key.find("/")
    while cut != -1 and len(found) < _DEPTH:
        found.append(key[: cut + 1])
        cut = key.find("/", cut + 1)
    return found


class _ExpiringDict:
    """A dict whose entries may carry a deadline; expired entries read as absent.

    Keys are indexed by each of their ``/``-terminated prefixes, so that prefix reads
    and deletes cost the size of the prefix's subtree, not of the whole store; expired
    entries nobody reads are purged every few seconds.
    """

    PURGE_EVERY = 5.0

    def __init__(self) -> None:
        self.items: dict[str, _Value] = {}
        self.deadlines: dict[str, float] = {}
        self.folders: dict[str, set[str]] = {}
        self._next_purge = time.monotonic() + self.PURGE_EVERY

    def live(self, key: str) -> _Value | None:
        deadline = self.deadlines.get(key)
        if deadline is not None and deadline <= time.monotonic():
            self.drop(key)
            return None
        return self.items.get(key)

    def put(self, key: str, value: _Value, ttl: float | None) -> None:
        if key not in self.items:
            for folder in _folders(key):
                self.folders.setdefault(folder, set()).add(key)
        self.items[key] = value
        if ttl is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = time.monotonic() + ttl
        self._maybe_purge()

    def touch(self, key: str, ttl: float | None) -> None:
        if ttl is not None:
            self.deadlines[key] = time.monotonic() + ttl

    def drop(self, key: str) -> bool:
        self.deadlines.pop(key, None)
        if self.items.pop(key, None) is None:
            return False
        for folder in _folders(key):
            members = self.folders.get(folder)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.folders[folder]
        return True

    def with_prefix(self, prefix: str) -> list[str]:
        """The stored keys (live or not yet purged) that start with ``prefix``."""
        folders = _folders(prefix)
        if not folders:
            candidates: set[str] | dict[str, _Value] = self.items
        else:
            candidates = self.folders.get(folders[-1], set())
        return [key for key in candidates if key.startswith(prefix)]

    def drop_prefix(self, prefix: str) -> int:
        doomed = self.with_prefix(prefix)
        live = sum(self.live(key) is not None for key in doomed)
        for key in doomed:
            self.drop(key)
        return live

    def expire(self, key: str, ttl: float) -> None:
        if self.live(key) is not None:
            self.deadlines[key] = time.monotonic() + ttl

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self.PURGE_EVERY
        for key in [k for k, deadline in self.deadlines.items() if deadline <= now]:
            self.drop(key)


def _check_url(url: str) -> None:
    if url.partition("://")[2]:
        raise ConfigurationError(f"store URL {url!r}: memory:// takes no host, path or options")


class MemoryStateStore(StateStore):
    """:class:`StateStore` kept in a dict of this process."""

    def __init__(self) -> None:
        self._values = _ExpiringDict()
        self._sets = _ExpiringDict()
        self._lists = _ExpiringDict()
        self._indexes = _ExpiringDict()

    @classmethod
    def from_url(cls, url: str) -> Self:
        """A new, empty store for ``memory://`` (which takes nothing else).

        Raises:
            ConfigurationError: the URL has a host, a path or options.
        """
        _check_url(url)
        return cls()

    async def get(self, key: str) -> bytes | None:
        value = self._values.live(key)
        return value if isinstance(value, bytes) else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._values.put(key, bytes(value), ttl)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        if self._values.live(key) != expected:
            return False
        if new is None:
            self._values.drop(key)
        else:
            self._values.put(key, bytes(new), ttl)
        return True

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        for key, expected in (require or {}).items():
            if await self.get(key) != expected:
                return False
        for op in writes:
            if isinstance(op, Put):
                await self.set(op.key, op.value, ttl=op.ttl)
            elif isinstance(op, Delete):
                self._values.drop(op.key)
            elif isinstance(op, Append):
                await self.append(op.key, op.value, ttl=op.ttl)
            elif isinstance(op, IndexPut):
                index = self._index(op.index)
                if index is None:
                    index = _Index()
                    self._indexes.put(op.index, index, op.ttl)
                else:
                    self._indexes.touch(op.index, op.ttl)
                index.put(op.member, op.score)
            else:
                found = self._index(op.index)
                if found is not None:
                    found.drop(op.member)
                    if not found.entries:
                        self._indexes.drop(op.index)
        return True

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        found = sorted(
            key for key in self._values.with_prefix(prefix) if self._values.live(key) is not None
        )
        return found if limit is None else found[:limit]

    def _set(self, key: str) -> dict[str, None] | None:
        members = self._sets.live(key)
        return members if isinstance(members, dict) else None

    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        members = self._set(key)
        if members is None:
            members = {}
            self._sets.put(key, members, ttl)
        else:
            self._sets.touch(key, ttl)
        members[member] = None
        return len(members)

    async def remove_from_set(self, key: str, member: str) -> bool:
        members = self._set(key)
        if members is None or member not in members:
            return False
        del members[member]
        if not members:
            self._sets.drop(key)
        return True

    async def set_members(self, key: str) -> list[str]:
        return list(self._set(key) or ())

    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        current = await self.get(key)
        value = (int(current) if current is not None else 0) + by
        self._values.put(key, str(value).encode(), ttl)
        return value

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        items = self._lists.live(key)
        if not isinstance(items, list):
            items = []
            self._lists.put(key, items, ttl)
        else:
            self._lists.touch(key, ttl)
        items.append(bytes(value))

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        items = self._lists.live(key)
        return list(items[start:stop]) if isinstance(items, list) else []

    async def list_length(self, key: str) -> int:
        items = self._lists.live(key)
        return len(items) if isinstance(items, list) else 0

    def _index(self, key: str) -> _Index | None:
        found = self._indexes.live(key)
        return found if isinstance(found, _Index) else None

    async def index_range(
        self,
        index: str,
        *,
        after: Entry | None = None,
        before: Entry | None = None,
        limit: int,
        descending: bool = False,
    ) -> list[Entry]:
        found = self._index(index)
        if found is None or limit <= 0:
            return []
        entries = found.entries
        low = 0 if after is None else bisect.bisect_right(entries, after)
        high = len(entries) if before is None else bisect.bisect_left(entries, before)
        if descending:
            return entries[max(low, high - limit) : high][::-1]
        return entries[low : min(high, low + limit)]

    async def index_size(self, index: str) -> int:
        found = self._index(index)
        return len(found.entries) if found is not None else 0

    def _spaces(self) -> tuple[_ExpiringDict, ...]:
        return (self._values, self._sets, self._lists, self._indexes)

    async def delete(self, key: str) -> None:
        for space in self._spaces():
            space.drop(key)

    async def delete_prefix(self, prefix: str) -> int:
        return sum(space.drop_prefix(prefix) for space in self._spaces())

    async def expire(self, key: str, ttl: float) -> None:
        for space in self._spaces():
            space.expire(key, ttl)


class MemoryDataStore(DataStore):
    """:class:`DataStore` kept in a dict of this process."""

    def __init__(self) -> None:
        self._blobs = _ExpiringDict()

    @classmethod
    def from_url(cls, url: str) -> Self:
        """A new, empty store for ``memory://`` (which takes nothing else).

        Raises:
            ConfigurationError: the URL has a host, a path or options.
        """
        _check_url(url)
        return cls()

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        self._blobs.put(key, bytes(data), ttl)

    async def get(self, key: str) -> bytes | None:
        value = self._blobs.live(key)
        return value if isinstance(value, bytes) else None

    async def delete(self, key: str) -> None:
        self._blobs.drop(key)

    async def delete_prefix(self, prefix: str) -> int:
        return self._blobs.drop_prefix(prefix)

    async def expire(self, key: str, ttl: float) -> None:
        self._blobs.expire(key, ttl)
