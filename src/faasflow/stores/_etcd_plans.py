"""The parts of an etcd transaction that append to a list or write an ordered index.

A commit is one etcd transaction: compares guarding what its writes assume, the writes,
and — for when a compare fails — reads of what the next attempt needs to know. Each list
or index that a commit writes adds its part here, planned from what was last seen of it
(at first a guess: an absent list, an index without deadline whose members are new).

Lists: the header holds the length; new items go at the next positions, guarded by the
header's value and lease, and the header is rewritten with the new length. Lists of the
layout before positions (empty header) are appended to as they were: items keyed by a
token, guarded by the header's lease alone. Every key of a list carries the header's
lease; a TTL re-leases them all.

Indexes: moving or dropping a member deletes its entry keys, which hold its score, so
the member's score key is read first (a failed guess) and guarded. Writers of one index
do not conflict unless they write the same member or change its deadline: the header is
guarded by its lease only, and rewritten by every put (so that a TTL's re-leasing, which
must reach every key, can guard against additions by the header's revision). The last
member dropped takes the header along, as the last member of a set does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from faasflow.stores._etcd_client import (
    Json,
    Kv,
    Txn,
    absent,
    key_range,
    lease_is,
    none_in,
    prefix_end,
    prefix_range,
    put,
    remove,
    touch,
    unchanged,
    value_is,
)
from faasflow.stores._etcd_layout import Spaces
from faasflow.stores._sortable import score_bytes, score_from_bytes
from faasflow.stores.base import Append, IndexDrop, IndexPut

__all__ = ["IndexSeen", "ListSeen", "TxnParts", "plan_append", "plan_index"]


@dataclass(slots=True)
class TxnParts:
    """A transaction being planned."""

    compare: list[Json] = field(default_factory=list)
    success: list[Json] = field(default_factory=list)
    failure: list[Json] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListSeen:
    """A list's header (``None`` = absent) and, when its TTL is refreshed, its items."""

    header: Kv | None
    items: list[Kv]

    @classmethod
    def read(cls, result: Txn, at: int, refresh: bool) -> ListSeen:
        """What :func:`plan_append`'s failure reads, from ``at``, found."""
        return cls(result.first(at), result.kvs(at + 1) if refresh else [])


def plan_append(
    spaces: Spaces,
    key: str,
    ops: Sequence[Append],
    refresh: int | None,
    seen: ListSeen | None,
    token: Callable[[], bytes],
    txn: TxnParts,
) -> Kv:
    """Add the part that appends ``ops`` to the list ``key``: ``refresh`` is the lease of
    the last TTL among them (``None`` when none has one), ``token`` names an item of a
    list without positions. Its failure reads are :meth:`ListSeen.read`'s. Returns the
    header it writes (its revisions unknown: 0)."""
    header_key = spaces.list_header(key)
    header = None if seen is None else seen.header
    if header is not None and not header.value:
        # A list from before positions: items ordered by revision, then token.
        if refresh is None:
            lease = header.lease  # new items join the list's deadline
            txn.compare.append(lease_is(header_key, lease))
        else:
            lease = refresh
            txn.compare.append(unchanged(header))
            assert seen is not None
            txn.success += [touch(item.key, lease) for item in seen.items]
        value = b""
        txn.success += [put(spaces.list_items(key) + token(), op.value, lease) for op in ops]
    else:
        if header is None:
            length, lease = 0, refresh or 0
            txn.compare.append(absent(header_key))
        else:
            length = int(header.value)
            lease = header.lease if refresh is None else refresh
            txn.compare += [value_is(header_key, header.value), lease_is(header_key, header.lease)]
            if refresh is not None:
                # The header says the items are at 0 .. length-1: they all exist (they
                # share its lease, and go only with it).
                txn.success += [touch(spaces.list_item(key, p), lease) for p in range(length)]
        value = b"%d" % (length + len(ops))
        txn.success += [
            put(spaces.list_item(key, length + n), op.value, lease) for n, op in enumerate(ops)
        ]
    # Every append rewrites the header, so that guarding it guards the items.
    txn.success.append(put(header_key, value, lease))
    txn.failure.append(key_range(header_key))
    if refresh is not None:
        txn.failure.append(prefix_range(spaces.list_items(key), keys_only=True))
    return Kv(header_key, value, mod=0, create=0, lease=lease)


@dataclass(frozen=True, slots=True)
class IndexSeen:
    """An index's header, the score keys of the members a commit writes (``None`` =
    absent) and, when its TTL is refreshed, every key of the index."""

    header: Kv | None
    members: dict[str, Kv | None]
    keys: list[Kv]

    @classmethod
    def read(cls, result: Txn, at: int, members: Sequence[str], refresh: bool) -> IndexSeen:
        """What :func:`plan_index`'s failure reads, from ``at``, found."""
        found = {member: result.first(at + 1 + n) for n, member in enumerate(members)}
        keys = result.kvs(at + 1 + len(members)) if refresh else []
        return cls(result.first(at), found, keys)


def plan_index(
    spaces: Spaces,
    index: str,
    ops: Mapping[str, IndexPut | IndexDrop],
    refresh: int | None,
    seen: IndexSeen | None,
    txn: TxnParts,
) -> None:
    """Add the part that applies ``ops`` (the last write of each member) to ``index``;
    ``refresh`` is the lease of the last TTL among its puts. Its failure reads are
    :meth:`IndexSeen.read`'s, for the members in ``ops``'s order."""
    header_key = spaces.index_header(index)
    header = None if seen is None else seen.header
    members = {} if seen is None else seen.members
    if header is None:
        # Absent (or a guess): an index without TTL may already exist, whose header then
        # has lease 0 too; with a TTL only a new index fits this plan.
        lease = refresh or 0
        txn.compare.append(lease_is(header_key, 0) if refresh is None else absent(header_key))
    elif refresh is None:
        lease = header.lease  # new entries join the index's deadline
        txn.compare.append(lease_is(header_key, lease))
    else:
        lease = refresh
        txn.compare.append(unchanged(header))
    written: set[bytes] = set()
    for member, op in ops.items():
        member_key = spaces.members(index) + member.encode()
        old = members.get(member)
        txn.compare.append(absent(member_key) if old is None else unchanged(old))
        new = spaces.entry_keys(index, op.score, member) if isinstance(op, IndexPut) else ()
        if old is not None:
            txn.success += [
                remove(key)
                for key in spaces.entry_keys(index, score_from_bytes(old.value), member)
                if key not in new  # etcd refuses two writes to one key
            ]
        if isinstance(op, IndexPut):
            txn.success += [put(key, b"", lease) for key in new]
            txn.success.append(put(member_key, score_bytes(op.score), lease))
        elif old is not None:
            txn.success.append(remove(member_key))
        written.update(new)
        written.add(member_key)
        if old is not None:
            written.update(spaces.entry_keys(index, score_from_bytes(old.value), member))
    if refresh is not None and seen is not None:
        # Re-lease every other key; an unchanged header means none was added since they
        # were read, an unchanged score key that its member was not dropped.
        others = [kv for kv in seen.keys if kv.key not in written]
        txn.compare += [
            unchanged(kv) for kv in others if kv.key.startswith(spaces.members(index))
        ]
        txn.success += [touch(kv.key, lease) for kv in others]
    if any(isinstance(op, IndexPut) for op in ops.values()):
        txn.success.append(put(header_key, b"", lease))
    else:
        txn.success.append(_last_drop_takes_the_header(spaces, index, list(ops)))
    txn.failure.append(key_range(header_key))
    txn.failure += [key_range(spaces.members(index) + m.encode()) for m in ops]
    if refresh is not None:
        txn.failure.append(prefix_range(spaces.index_keys(index), keys_only=True))


def _last_drop_takes_the_header(spaces: Spaces, index: str, dropped: list[str]) -> Json:
    """A nested transaction that deletes the index's header when no member but the
    dropped ones exists (etcd evaluates its compares before the enclosing writes)."""
    space = spaces.members(index)
    bounds = [space, *(key for m in sorted(dropped) for key in (
        space + m.encode(), space + m.encode() + b"\x00"))]
    bounds.append(prefix_end(space))
    gaps = [none_in(low, high) for low, high in zip(bounds[::2], bounds[1::2], strict=True)
            if low < high]
    return {"request_txn": {"compare": gaps, "success": [remove(spaces.index_header(index))],
                            "failure": []}}
