"""The etcd store's ``commit``: all its writes in one etcd transaction, or none.

A commit's compares guard what its writes assume; they start from guesses (a required
value written without TTL, a new list or one this store appended to last, an index
without deadline whose members are new), so that the common case is one round trip.
When a guess is wrong the transaction's failure branch reads what the next attempt needs
to compare, and a required key that differs ends the commit at the revision it was read
at. Lists and indexes add their parts through :mod:`faasflow.stores._etcd_plans`.

A request holds at most etcd's ``--max-request-bytes`` (1.5 MiB by default): etcd
refuses a larger one as "request is too large", which names neither the key nor the
limit, so a commit whose values would pass the limit is refused here, before anything is
sent.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

from faasflow.errors import StoreError
from faasflow.stores import _sortable
from faasflow.stores._etcd_client import (
    EtcdClient,
    Json,
    Kv,
    Txn,
    absent,
    key_range,
    lease_is,
    put,
    remove,
    remove_prefix,
    unchanged,
    value_is,
)
from faasflow.stores._etcd_layout import Spaces, alive, live, now_ms
from faasflow.stores._etcd_leases import Leases
from faasflow.stores._etcd_plans import IndexSeen, ListSeen, TxnParts, plan_append, plan_index
from faasflow.stores.base import Append, Delete, IndexDrop, IndexPut, Put, WriteOp

__all__ = ["DEFAULT_REQUEST_BYTES", "MAX_ATTEMPTS", "Committer"]

MAX_ATTEMPTS: Final = 1000
"""Optimistic retries before a read-modify-write gives up (only under pathological
contention: every retry means another writer made progress)."""

DEFAULT_REQUEST_BYTES: Final = 1536 * 1024
"""etcd's default ``--max-request-bytes``."""

_REQUEST_MARGIN: Final = 1024
"""Room left in a request for what is not a key or a value (etcd's own framing)."""

_OP_BYTES: Final = 16
"""A generous estimate of one operation's framing in a request."""

_LIST_HEADS_KEPT: Final = 4096
"""List headers remembered as the next append's guess."""


def _size(count: int) -> str:
    return f"{count} bytes ({count / (1 << 20):.2f} MiB)"


def _last_lease(ops: Sequence[Append | IndexPut], leases: Mapping[float, int]) -> int | None:
    """The lease of the last TTL among ``ops``, or ``None`` when none has one."""
    ttls = [op.ttl for op in ops if op.ttl is not None]
    return leases[ttls[-1]] if ttls else None


class Committer:
    """Runs one store's commits and the transactions that write.

    Args:
        etcd: the store's client.
        spaces: the store's key layout.
        leases: the store's leases.
        name: how errors name the store (``etcd store 'faasflow/'``).
        max_request_bytes: the server's ``--max-request-bytes``.
    """

    def __init__(
        self, etcd: EtcdClient, spaces: Spaces, leases: Leases, name: str, max_request_bytes: int
    ) -> None:
        self._etcd = etcd
        self._spaces = spaces
        self._leases = leases
        self._name = name
        self.max_request_bytes = max_request_bytes
        # List item tokens (for lists from before positions): unique per store object,
        # growing, so that items written in one transaction (one revision) sort in
        # append order.
        self._token_base = secrets.token_hex(8)
        self._tokens = itertools.count()
        # The last header seen or written of recently appended lists: the next append's
        # guess, so that appending to a list this process knows takes one round trip.
        self._list_heads: dict[str, Kv] = {}

    def _token(self) -> bytes:
        return f"{self._token_base}{next(self._tokens):016x}".encode()

    async def txn(
        self, what: str, compare: list[Json], success: list[Json], failure: list[Json]
    ) -> Txn:
        """One transaction that may write under a lease."""
        with self._leases.writing():
            return await self._etcd.txn(what, compare, success, failure)

    def gave_up(self, what: str) -> StoreError:
        """The error of a read-modify-write that kept conflicting."""
        return self._etcd.error(what, f"still conflicting after {MAX_ATTEMPTS} attempts")

    async def commit(
        self,
        what: str,
        writes: Sequence[WriteOp],
        require: Mapping[str, bytes | None],
    ) -> bool:
        """Apply ``writes`` in one transaction if every key in ``require`` holds its
        value; whether they were applied. ``what`` names the operation in errors."""
        self.check_size(what, writes, require)
        # The last write to a plain key (or to an index's member) wins, as if the writes
        # ran in order: etcd refuses two writes to one key in a transaction.
        plain: dict[bytes, Json] = {}
        lists: dict[str, list[Append]] = {}
        indexes: dict[str, dict[str, IndexPut | IndexDrop]] = {}
        ttls = {op.ttl for op in writes
                if isinstance(op, Put | Append | IndexPut) and op.ttl is not None}
        leases = {ttl: await self._leases.get(what, ttl) for ttl in ttls}
        for op in writes:
            if isinstance(op, Put):
                lease = 0 if op.ttl is None else leases[op.ttl]
                plain[self._spaces.value(op.key)] = put(self._spaces.value(op.key), op.value, lease)
            elif isinstance(op, Append):
                lists.setdefault(op.key, []).append(op)
            elif isinstance(op, Delete):
                plain[self._spaces.value(op.key)] = remove(self._spaces.value(op.key))
            else:
                if isinstance(op, IndexPut):
                    _sortable.score_bytes(op.score)  # refuses NaN before anything is sent
                members = indexes.setdefault(op.index, {})
                members.pop(op.member, None)
                members[op.member] = op
        # Like Redis's PEXPIRE after RPUSH: the last TTL given sets the deadline. (A put
        # whose member a later write drops sets none.)
        list_refresh = {key: _last_lease(ops, leases) for key, ops in lists.items()}
        index_refresh = {
            index: _last_lease([op for op in ops.values() if isinstance(op, IndexPut)], leases)
            for index, ops in indexes.items()
        }
        required = list(require.items())
        seen: dict[str, Kv | None] | None = None  # None: not read yet, guess
        seen_lists = {key: self._list_guess(key) for key in lists}
        seen_indexes: dict[str, IndexSeen | None] = dict.fromkeys(indexes)
        for _ in range(MAX_ATTEMPTS):
            txn = TxnParts(success=list(plain.values()))
            for key, expected in required:
                vkey = self._spaces.value(key)
                if seen is None:
                    # Guess the common case: a value written without TTL.
                    if expected is None:
                        txn.compare.append(absent(vkey))
                    else:
                        txn.compare += [value_is(vkey, expected), lease_is(vkey, 0)]
                else:
                    kv = seen[key]
                    txn.compare.append(absent(vkey) if kv is None else unchanged(kv))
                txn.failure.append(key_range(vkey))
            written = {
                key: plan_append(self._spaces, key, ops, list_refresh[key], seen_lists[key],
                                 self._token, txn)
                for key, ops in lists.items()
            }
            for index, members in indexes.items():
                plan_index(self._spaces, index, members, index_refresh[index],
                           seen_indexes[index], txn)
            result = await self.txn(what, txn.compare, txn.success, txn.failure)
            if result.succeeded:
                for key, header in written.items():
                    self._remember_list(key, header)
                return True
            now = now_ms()
            seen = {}
            for at, (key, expected) in enumerate(required):
                kv = result.first(at)
                current = alive(kv, now)
                if (None if current is None else current.value) != expected:
                    return False  # read at the revision the compares failed at
                seen[key] = kv
            at = len(required)
            for key in lists:
                refresh = list_refresh[key] is not None
                listed = ListSeen.read(result, at, refresh)
                at += 2 if refresh else 1
                if listed.header is not None and not live(listed.header, now):
                    await self.purge(what, unchanged(listed.header),
                                     self._spaces.list_header(key), self._spaces.list_items(key))
                    listed = ListSeen(None, [])
                self._remember_list(key, listed.header)
                seen_lists[key] = listed
            for index, members in indexes.items():
                refresh = index_refresh[index] is not None
                indexed = IndexSeen.read(result, at, list(members), refresh)
                at += 1 + len(members) + refresh
                head = indexed.header
                if (head is not None and not live(head, now)) or (
                        head is None and any(indexed.members.values())):
                    # Expired, and its lease not run out yet; or entries without a header,
                    # which cannot be: clear them either way.
                    head_key = self._spaces.index_header(index)
                    guard = absent(head_key) if head is None else unchanged(head)
                    await self.purge(what, guard, head_key, self._spaces.index_keys(index))
                    indexed = IndexSeen(None, dict.fromkeys(members), [])
                seen_indexes[index] = indexed
        raise self.gave_up(what)

    def _list_guess(self, key: str) -> ListSeen | None:
        """What this store last saw of the list ``key``, if it may still be so."""
        header = self._list_heads.get(key)
        return None if header is None or not live(header, now_ms()) else ListSeen(header, [])

    def _remember_list(self, key: str, header: Kv | None) -> None:
        self._list_heads.pop(key, None)
        if header is not None:
            self._list_heads[key] = header
            if len(self._list_heads) > _LIST_HEADS_KEPT:
                del self._list_heads[next(iter(self._list_heads))]

    def check_size(
        self, what: str, writes: Sequence[WriteOp], require: Mapping[str, bytes | None]
    ) -> None:
        """Refuse a transaction longer than etcd takes in one request (it would answer
        "request is too large", naming neither the key nor the limit)."""
        total, largest, largest_key = _REQUEST_MARGIN, -1, ""
        root = len(self._spaces.root) + 2
        for op in writes:
            if isinstance(op, Put | Append):
                key, size = op.key, len(op.value)
            elif isinstance(op, Delete):
                key, size = op.key, 0
            else:  # up to three keys to write and three to delete, each with the member
                key, size = op.index, 6 * (len(op.index) + len(op.member.encode()) + 16)
            total += root + len(key) + size + _OP_BYTES
            if size > largest:
                largest, largest_key = size, key
        for key, expected in require.items():  # a compare with the value, and a read
            size = 0 if expected is None else len(expected)
            total += 2 * (root + len(key)) + size + 2 * _OP_BYTES
            if size > largest:
                largest, largest_key = size, key
        if total > self.max_request_bytes:
            raise StoreError(
                f"{self._name}: {what} of {largest_key!r} refused: the request "
                f"would be about {_size(total)} ({_size(largest)} of it for {largest_key!r}), "
                f"more than etcd takes in one request ({_size(self.max_request_bytes)}, its "
                "--max-request-bytes; say max_request_bytes= if the server allows more); "
                "keep such values in a data store (S3, files)"
            )

    async def purge(self, what: str, guard: Json, header_key: bytes, members: bytes) -> None:
        """Delete an expired set, list or index that its lease has not removed yet."""
        await self.txn(what, [guard], [remove(header_key), remove_prefix(members)], [])
