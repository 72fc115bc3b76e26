"""The etcd store's sets: a header key, and a key per member.

``add_to_set`` puts the member and counts the members in one transaction (a range inside
a transaction sees that transaction's writes, and etcd applies transactions one at a
time), so concurrent adders of different members see distinct sizes without retrying;
``remove_from_set`` deletes the header with the last member through a nested
transaction. Every add rewrites the header, so guarding the header guards against
concurrent additions; every member carries the header's lease.
"""

from __future__ import annotations

from faasflow.stores._etcd_client import (
    Kv,
    absent,
    exists,
    key_range,
    lease_is,
    none_in,
    prefix_end,
    prefix_range,
    put,
    remove,
    touch,
    unchanged,
)
from faasflow.stores._etcd_commit import MAX_ATTEMPTS, Committer
from faasflow.stores._etcd_layout import Spaces, live, now_ms

__all__ = ["add_to_set", "remove_from_set"]


async def add_to_set(
    committer: Committer, spaces: Spaces, key: str, member: str, ttl: float | None, lease: int
) -> int:
    """Add ``member`` to the set ``key`` (``ttl`` and its ``lease``: the set's new
    deadline); return the set's size after, atomically.

    One transaction puts the member and counts the members: etcd applies
    transactions one at a time and a range inside one sees its own writes, so
    concurrent adders of different members see distinct sizes without retrying.
    """
    space = spaces.set_members(key)
    header_key, member_key = spaces.set_header(key), space + member.encode()
    count = prefix_range(space, count_only=True)
    failure = [key_range(header_key), key_range(member_key, keys_only=True), count]
    if ttl is not None:  # every member gets the new deadline: read them all
        failure.append(prefix_range(space, keys_only=True))
    header: Kv | None = None  # first guess: no set, or one without a deadline
    members: list[Kv] = []
    for _ in range(MAX_ATTEMPTS):
        if header is None and ttl is None:
            compare = [absent(member_key), lease_is(header_key, 0)]
            success = [put(member_key, b""), put(header_key, b""), count]
        elif header is None:
            compare = [absent(header_key)]
            success = [put(member_key, b"", lease), put(header_key, b"", lease), count]
        elif ttl is None:
            # New members join the set's deadline; a set given another deadline
            # meanwhile fails the compare.
            compare = [absent(member_key), lease_is(header_key, header.lease)]
            success = [
                put(member_key, b"", header.lease),
                put(header_key, b"", header.lease),
                count,
            ]
        else:
            # Every add rewrites the header, so an unchanged header means no member
            # was added; each member's own revision shows that it was not removed.
            compare = [unchanged(header), *map(unchanged, members)]
            success = [touch(kv.key, lease) for kv in members if kv.key != member_key]
            success += [put(member_key, b"", lease), put(header_key, b"", lease), count]
        result = await committer.txn("add_to_set", compare, success, failure)
        if result.succeeded:
            return result.count(len(success) - 1)
        header, found = result.first(0), result.first(1)
        members = result.kvs(3) if ttl is not None else []
        if header is None:
            if found is not None:  # members without a header cannot be: clear them
                await committer.purge("add_to_set", absent(header_key), header_key, space)
        elif not live(header, now_ms()):
            await committer.purge("add_to_set", unchanged(header), header_key, space)
            header = None
        elif found is not None and ttl is None:
            return result.count(2)  # already a member, as of this revision
    raise committer.gave_up("add_to_set")


async def remove_from_set(committer: Committer, spaces: Spaces, key: str, member: str) -> bool:
    """Remove ``member``; ``True`` only for the one caller that removed it."""
    space = spaces.set_members(key)
    header_key, member_key = spaces.set_header(key), space + member.encode()
    # The last member takes the header with it: when no other member exists (as
    # read before this transaction's writes, which is when etcd evaluates the
    # compares of a nested transaction) the set is gone, deadline included.
    alone = {
        "request_txn": {
            "compare": [
                none_in(space, member_key),
                none_in(member_key + b"\x00", prefix_end(space)),
            ],
            "success": [remove(header_key)],
            "failure": [],
        }
    }
    reads = [key_range(header_key), key_range(member_key, keys_only=True)]
    lease = 0  # first guess: a set without a deadline
    for _ in range(MAX_ATTEMPTS):
        compare = [exists(member_key), lease_is(header_key, lease)]
        result = await committer.txn("remove_from_set", compare, [remove(member_key), alone], reads)
        if result.succeeded:
            return True
        header, found = result.first(0), result.first(1)
        if header is None or found is None or not live(header, now_ms()):
            return False
        lease = header.lease
    raise committer.gave_up("remove_from_set")
