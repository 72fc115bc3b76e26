"""The two store contracts the engine works through.

:class:`StateStore` holds small, strongly consistent records: request status, node
records, join sets, held hops, history. :class:`DataStore` holds bytes by key: node
outputs, branch inputs, context values, results.

Every backend ships with the same contract test suite (``tests/stores/contract.py``);
a new backend is done when that suite passes against a real server.

Semantics shared by all backends:

* keys are ``str`` (``/``-separated by convention), values are ``bytes``;
* ``ttl`` is in seconds from now; an expired key behaves exactly as an absent one and
  is purged lazily;
* a key holds one kind of value: a plain value, a set, a list, or an ordered index. The
  namespaces are separate (``set`` never sees a set's members); ``delete``,
  ``delete_prefix`` and ``expire`` apply to every kind;
* an ordered index holds members (strings) with scores (floats), ordered by score, then
  member (by code point); a member is in it once; reading a range of it costs the range,
  not the index (it is how listings and deadlines stay cheap with millions of entries);
* errors of the backend's client are raised as :class:`faasflow.errors.StoreError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from faasflow.resources import AsyncResource


@dataclass(frozen=True)
class Put:
    """Write op: store ``value`` at the plain key ``key``."""

    key: str
    value: bytes
    ttl: float | None = None


@dataclass(frozen=True)
class Delete:
    """Write op: remove the plain key ``key`` (absent is fine)."""

    key: str


@dataclass(frozen=True)
class Append:
    """Write op: append ``value`` to the list at ``key``."""

    key: str
    value: bytes
    ttl: float | None = None


@dataclass(frozen=True)
class IndexPut:
    """Write op: put ``member`` into the ordered index ``index`` at ``score`` (moving it
    there if it is in already); the index expires after ``ttl`` seconds when given."""

    index: str
    member: str
    score: float
    ttl: float | None = None


@dataclass(frozen=True)
class IndexDrop:
    """Write op: take ``member`` out of the ordered index ``index`` (absent is fine)."""

    index: str
    member: str


WriteOp = Put | Delete | Append | IndexPut | IndexDrop

Entry = tuple[float, str]
"""An ordered index's entry: ``(score, member)``."""


class StateStore(AsyncResource, ABC):
    """Small, strongly consistent key/value records with atomic operations."""

    # -- plain values -------------------------------------------------------------
    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` when absent or expired."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values at ``keys``, in order; backends may read them in one round trip."""
        return [await self.get(key) for key in keys]

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key`` (replacing it), expiring after ``ttl`` seconds."""

    @abstractmethod
    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        """Atomically replace the value at ``key`` if it equals ``expected``.

        ``expected=None`` means "only if absent" (create); ``new=None`` deletes the key.
        Returns whether the swap happened. Exactly one of several concurrent callers
        with the same ``expected`` wins.
        """

    @abstractmethod
    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        """Plain-value keys that start with ``prefix``, sorted, at most ``limit``."""

    @abstractmethod
    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        """Apply ``writes`` all together or not at all.

        When ``require`` is given, the writes happen only if every key in it holds the
        given value (``None`` = absent) at that moment; returns whether they happened.
        Writes may be to plain values, lists and ordered indexes alike.
        This is how the engine records a node as done and announces its successors in
        one step: one round trip (one transaction, one fsync) instead of several.
        """

    # -- sets -------------------------------------------------------------------------
    @abstractmethod
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        """Add ``member`` to the set at ``key`` atomically; return the set's size after.

        Adding a member twice leaves the size unchanged: this is what makes a join
        count each parent once however often its hop is delivered.
        """

    @abstractmethod
    async def remove_from_set(self, key: str, member: str) -> bool:
        """Remove ``member``; ``True`` only for the one caller that actually removed it."""

    @abstractmethod
    async def set_members(self, key: str) -> list[str]:
        """The members of the set at ``key`` in the order they were first added."""

    # -- counters and lists -----------------------------------------------------------
    @abstractmethod
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Atomically add ``by`` to the integer at ``key`` (absent = 0); return the result.

        The counter shares the plain-value namespace: ``get`` reads it as ASCII digits.
        """

    @abstractmethod
    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Append ``value`` to the list at ``key``."""

    @abstractmethod
    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        """The items of the list at ``key``, oldest first: ``items[start:stop]`` with
        Python's slice meaning (a negative bound counts from the end), so that a page, or
        the last item, costs its own size."""

    @abstractmethod
    async def list_length(self, key: str) -> int:
        """How many items the list at ``key`` holds (0 when absent)."""

    # -- ordered indexes ----------------------------------------------------------------
    async def index_put(
        self, index: str, member: str, score: float, *, ttl: float | None = None
    ) -> None:
        """Put ``member`` into ``index`` at ``score`` (see :class:`IndexPut`)."""
        await self.commit([IndexPut(index, member, score, ttl)])

    async def index_drop(self, index: str, member: str) -> None:
        """Take ``member`` out of ``index`` (see :class:`IndexDrop`)."""
        await self.commit([IndexDrop(index, member)])

    @abstractmethod
    async def index_range(
        self,
        index: str,
        *,
        after: Entry | None = None,
        before: Entry | None = None,
        limit: int,
        descending: bool = False,
    ) -> list[Entry]:
        """Up to ``limit`` entries of ``index`` strictly between ``after`` and ``before``
        (``(score, member)``, compared as tuples), in ascending order, or descending
        (from ``before`` down) with ``descending``."""

    @abstractmethod
    async def index_size(self, index: str) -> int:
        """How many members ``index`` holds."""

    # -- lifetime ---------------------------------------------------------------------
    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` whatever it holds; absent keys are fine."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key (of any kind) starting with ``prefix``; return how many."""

    @abstractmethod
    async def expire(self, key: str, ttl: float) -> None:
        """Make ``key`` (of any kind) expire ``ttl`` seconds from now."""


class DataStore(AsyncResource, ABC):
    """Bytes by key: node outputs, branch inputs, context values and results."""

    @abstractmethod
    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        """Store ``data`` at ``key``; durable when this returns."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The bytes at ``key``, or ``None`` when absent or expired."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; return how many."""

    @abstractmethod
    async def expire(self, key: str, ttl: float) -> None:
        """Make ``key`` expire ``ttl`` seconds from now."""
