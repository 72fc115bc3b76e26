"""etcd v3 state store, spoken through etcd's own JSON gateway.

The requests and the HTTP client (endpoint failover, authentication, TLS) are
:mod:`faasflow.stores._etcd_client`; this module is the store, composed of the parts
named below (key layout, leases, commits, sets, and the URL in
:mod:`faasflow.stores._etcd_url`).

Every key of the store lives under its ``prefix`` (``faasflow/`` by default), in one key
space per kind (:mod:`faasflow.stores._etcd_layout`), so that the contract's separate
namespaces never collide and every prefix read or delete is one etcd key range. Set
members are ordered by their create revision (a member added again after its removal is
a new key, so it goes last). List items are keyed by their position, so a page of a
list, or its last item, is one key range; an ordered index's entries are keyed by their
``(score, member)`` bytes, once in ascending and once in descending order, so a range in
either direction is one limited key range, ``O(log n + limit)``. Counting an index's
members (``index_size``) is etcd counting the keys of a range, which costs the range.

Atomicity: every read-modify-write is an etcd transaction whose compares guard what was
read. Most start optimistically with a guess ("the value has no lease", "the set has no
deadline") so the common case is one round trip; when the guess is wrong the
transaction's failure branch returns the current keys, and the next attempt compares
what it saw (:mod:`faasflow.stores._etcd_commit`, :mod:`faasflow.stores._etcd_sets`).
Every member, item or entry write also rewrites its header, so guarding the header
guards against concurrent additions.

Expiry: each lease's ID is its deadline (:mod:`faasflow.stores._etcd_leases`), so every
read tells an expired key at once, to the millisecond, and treats it as absent; etcd
deletes it about a second later. Deadlines use the writer's wall clock: hosts sharing a
store need synchronised clocks (NTP), as for the SQLite store.

Every key of one set, list or index carries the header's lease, so it expires as a whole;
``expire`` and an add or append with ``ttl`` re-lease every key (a put with
``ignore_value``). A transaction holds at most etcd's ``--max-txn-ops`` operations (128 by
default), which bounds the writes of one ``commit`` and the size of a set, list or index
whose TTL is refreshed (an index entry is three keys). A request holds at most etcd's
``--max-request-bytes`` (1.5 MiB by default): a write whose values would pass it is
refused before it is sent, naming the key (``max_request_bytes`` tells the store of a
server configured otherwise). How lists and indexes are written inside a transaction is
:mod:`faasflow.stores._etcd_plans`.

Errors of the gateway or the connection are raised as
:class:`~faasflow.errors.StoreError` naming the operation.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Mapping, Sequence

import httpx

from faasflow.stores import _sortable
from faasflow.stores._etcd_client import (
    EtcdClient,
    Json,
    Kv,
    Txn,
    absent,
    b64,
    key_range,
    prefix_end,
    prefix_range,
    put,
    put_keeping_lease,
    remove,
    remove_prefix,
    touch,
    unchanged,
)
from faasflow.stores._etcd_commit import DEFAULT_REQUEST_BYTES, MAX_ATTEMPTS, Committer
from faasflow.stores._etcd_layout import Spaces, alive, live, now_ms
from faasflow.stores._etcd_leases import Leases
from faasflow.stores._etcd_sets import add_to_set, remove_from_set
from faasflow.stores._etcd_url import parse_url
from faasflow.stores.base import (
    Append,
    Delete,
    Entry,
    Put,
    StateStore,
    WriteOp,
)

__all__ = ["EtcdStateStore"]

_MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: reads of many keys are split into such batches."""

_INTEGER = re.compile(rb"-?[0-9]+")


def _ordered(kvs: list[Kv]) -> list[Kv]:
    """Members or items in the order they were written."""
    return sorted(kvs, key=lambda kv: (kv.create, kv.key))


def _positions(start: int, stop: int | None, header: Kv | None) -> tuple[int, int | None] | None:
    """The positions ``[low, high)`` of ``items[start:stop]`` (``high`` ``None``: to the
    end), or ``None`` when negative bounds need the length in ``header``, not yet read."""
    if start >= 0 and (stop is None or stop >= 0):
        return start, stop
    if header is None:
        return None
    low, high, _ = slice(start, stop).indices(int(header.value))
    return low, high


class EtcdStateStore(StateStore):
    """:class:`StateStore` on etcd v3 through its JSON gateway (see the module docstring).

    Args:
        endpoints: one or more client URLs (``http://host:2379`` or ``https://…``); when a
            connection to one cannot be made the next is tried.
        prefix: prefix of every key, so several stores can share one etcd.
        timeout: seconds an HTTP request may take before it fails.
        username: etcd user to authenticate as (with ``password``).
        password: that user's password.
        ca_file: PEM file of the CA that signed the server certificates (``https``).
        cert_file: client certificate (PEM) for etcd's client-certificate authentication.
        key_file: the client certificate's private key (PEM).
        client: an existing :class:`httpx.AsyncClient` to use (not closed by the store).
        max_request_bytes: the server's ``--max-request-bytes`` (1.5 MiB by default): a
            write that would send more is refused, naming its key, before it is sent.

    Raises:
        ConfigurationError: no endpoint, a password without a user, or unreadable TLS files.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str = "http://127.0.0.1:2379",
        *,
        prefix: str = "faasflow/",
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        client: httpx.AsyncClient | None = None,
        max_request_bytes: int = DEFAULT_REQUEST_BYTES,
    ) -> None:
        self.prefix = prefix
        self._etcd = EtcdClient(
            endpoints,
            name=f"etcd store {prefix!r}",
            timeout=timeout,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            client=client,
        )
        self._root = prefix.encode()
        self._spaces = Spaces(self._root)
        self._leases = Leases(self._etcd)
        self._committer = Committer(
            self._etcd, self._spaces, self._leases, self._etcd.name, max_request_bytes
        )
        # Held while a task of this store runs a compare-and-set loop on a key; gone
        # once no task holds or awaits it.
        self._locks: weakref.WeakValueDictionary[bytes, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @classmethod
    def from_url(cls, url: str) -> EtcdStateStore:
        """The store an ``etcd://`` URL names, not yet opened.

        ``etcd://[user:password@]host[:port][,host2[:port2]...]/key-prefix?timeout=S``;
        ``etcds://`` speaks TLS, optionally with ``?cacert=ca.pem`` (the CA to trust) and
        ``&cert=client.pem&key=client-key.pem`` (client-certificate authentication). The
        prefix defaults to ``faasflow/`` and always ends with ``/``; the port to 2379.
        ``?max_request_bytes=N`` tells the store of a server whose ``--max-request-bytes``
        is not the default.

        Raises:
            ConfigurationError: the URL is malformed; the message names the option.
        """
        endpoints, options = parse_url(url)
        return cls(endpoints, **options)

    @property
    def max_request_bytes(self) -> int:
        """The most bytes one request may hold (the server's ``--max-request-bytes``)."""
        return self._committer.max_request_bytes

    @max_request_bytes.setter
    def max_request_bytes(self, value: int) -> None:
        self._committer.max_request_bytes = value

    @property
    def endpoints(self) -> list[str]:
        """The client URLs, tried in turn."""
        return self._etcd.endpoints

    @property
    def timeout(self) -> float:
        """Seconds an HTTP request may take before it fails."""
        return self._etcd.timeout

    @property
    def username(self) -> str | None:
        """The etcd user the store authenticates as, if any."""
        return self._etcd.username

    def __repr__(self) -> str:
        return f"<EtcdStateStore {self.prefix!r} at {', '.join(self.endpoints)}>"

    async def close(self) -> None:
        """Close the HTTP connections (when the store made its client)."""
        await self._etcd.close()

    # -- requests -----------------------------------------------------------------------
    async def _read(self, what: str, ops: list[Json]) -> Txn:
        """Several ranges at one revision, in one round trip."""
        return await self._etcd.txn(what, [], ops, [])

    # -- key spaces ---------------------------------------------------------------------
    def _v(self, key: str) -> bytes:
        return self._spaces.value(key)

    def _h(self, key: str) -> bytes:
        return self._spaces.set_header(key)

    def _s(self, key: str) -> bytes:
        return self._spaces.set_members(key)

    def _m(self, key: str) -> bytes:
        return self._spaces.list_header(key)

    def _l(self, key: str) -> bytes:
        return self._spaces.list_items(key)

    def _key_lock(self, key: bytes) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # -- plain values -------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` when absent or expired."""
        reply = await self._etcd.call("get", "/v3/kv/range", {"key": b64(self._v(key))})
        raw = reply.get("kvs")
        kv = Kv.parse(raw[0]) if raw else None
        return kv.value if kv is not None and live(kv, now_ms()) else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values at ``keys``, in order: one round trip per 128 keys."""
        values: list[bytes | None] = []
        for start in range(0, len(keys), _MAX_TXN_OPS):
            batch = keys[start : start + _MAX_TXN_OPS]
            result = await self._read("get_many", [key_range(self._v(key)) for key in batch])
            now = now_ms()
            for index in range(len(batch)):
                kv = alive(result.first(index), now)
                values.append(None if kv is None else kv.value)
        return values

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl`` seconds."""
        self._committer.check_size("set", [Put(key, value)], {})
        lease = await self._leases.get("set", ttl)
        request = put(self._v(key), value, lease)["request_put"]
        with self._leases.writing():
            await self._etcd.call("set", "/v3/kv/put", request)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        """Replace the value at ``key`` if it equals ``expected`` (``None``: absent)."""
        write: WriteOp = Delete(key) if new is None else Put(key, new, ttl)
        return await self._committer.commit("compare_and_set", [write], {key: expected})

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        """Plain-value keys starting with ``prefix``, sorted, at most ``limit``."""
        if limit is not None and limit <= 0:
            return []
        space = self._v("")
        start, end = self._v(prefix), prefix_end(self._v(prefix))
        found: list[str] = []
        while True:
            body: Json = {"key": b64(start), "range_end": b64(end), "keys_only": True}
            if limit is not None:
                body["limit"] = limit - len(found)
            reply = await self._etcd.call("keys", "/v3/kv/range", body)
            kvs = [Kv.parse(raw) for raw in reply.get("kvs", [])]
            now = now_ms()
            # etcd orders keys by their UTF-8 bytes, which is code point order.
            found += [kv.key[len(space) :].decode() for kv in kvs if live(kv, now)]
            if not kvs or not reply.get("more") or (limit is not None and len(found) >= limit):
                return found if limit is None else found[:limit]
            start = kvs[-1].key + b"\x00"  # expired keys took places: read on

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        """Apply ``writes`` in one etcd transaction, if ``require`` holds."""
        if not writes and not require:
            return True
        return await self._committer.commit("commit", writes, require or {})

    # -- sets ---------------------------------------------------------------------------
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        """Add ``member``; return the set's size after, atomically (one transaction puts
        the member and counts the members, see :mod:`faasflow.stores._etcd_sets`)."""
        lease = await self._leases.get("add_to_set", ttl)
        return await add_to_set(self._committer, self._spaces, key, member, ttl, lease)

    async def remove_from_set(self, key: str, member: str) -> bool:
        """Remove ``member``; ``True`` only for the one caller that removed it."""
        return await remove_from_set(self._committer, self._spaces, key, member)

    async def set_members(self, key: str) -> list[str]:
        """The members of the set at ``key`` in first-added order."""
        space = self._s(key)
        result = await self._read(
            "set_members", [key_range(self._h(key)), prefix_range(space, keys_only=True)]
        )
        if alive(result.first(0), now_ms()) is None:
            return []
        return [kv.key[len(space) :].decode() for kv in _ordered(result.kvs(1))]

    # -- counters and lists -------------------------------------------------------------
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Add ``by`` to the integer at ``key`` (absent = 0): a compare-and-set loop."""
        vkey = self._v(key)
        # Increments of one key by this store's tasks queue up here rather than make
        # each other retry: contention is then only between processes.
        async with self._key_lock(vkey):
            lease = await self._leases.get("increment", ttl)
            return await self._increment(key, vkey, by, ttl, lease)

    async def _increment(
        self, key: str, vkey: bytes, by: int, ttl: float | None, lease: int
    ) -> int:
        kv: Kv | None = None  # first guess: absent
        for _ in range(MAX_ATTEMPTS):
            if kv is None:
                total = by
                compare = [absent(vkey)]
                success = [put(vkey, b"%d" % total, lease)]
            else:
                compare = [unchanged(kv)]
                if live(kv, now_ms()):
                    if not _INTEGER.fullmatch(kv.value):
                        raise self._etcd.error(
                            "increment", f"{key!r} holds {kv.value[:40]!r}, not an integer"
                        )
                    total = int(kv.value) + by
                    success = [
                        put(vkey, b"%d" % total, lease)
                        if ttl is not None
                        else put_keeping_lease(vkey, b"%d" % total)
                    ]
                else:  # expired: starts again from zero, without the old deadline
                    total = by
                    success = [put(vkey, b"%d" % total, lease)]
            result = await self._committer.txn("increment", compare, success, [key_range(vkey)])
            if result.succeeded:
                return total
            kv = result.first(0)
        raise self._committer.gave_up("increment")

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Append ``value`` to the list at ``key``."""
        await self._committer.commit("append", [Append(key, value, ttl)], {})

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        """``items[start:stop]``, oldest first: one range of positions, read with the
        header; negative bounds need the list's length first (one more round trip)."""
        header_key = self._m(key)
        known: Kv | None = None  # the header, once negative bounds needed its length
        for _ in range(MAX_ATTEMPTS):
            bounds = _positions(start, stop, known)
            reads = [key_range(header_key)]
            if bounds is not None:
                low, high = bounds
                if high is not None and low >= high:
                    return []
                end = prefix_end(self._l(key)) if high is None else self._spaces.list_item(
                    key, high)
                reads.append(key_range(self._spaces.list_item(key, low), end))
            result = await self._read("read_list", reads)
            header = alive(result.first(0), now_ms())
            if header is None:
                return []
            if not header.value:  # a list from before positions: read it whole
                return (await self._read_unnumbered(key))[start:stop]
            if bounds is None or (known is not None and header.mod != known.mod):
                known = header  # (again, if the list changed meanwhile)
                continue
            return [kv.value for kv in result.kvs(1)]
        raise self._committer.gave_up("read_list")

    async def _read_unnumbered(self, key: str) -> list[bytes]:
        """Every item of a list whose items have no positions, in append order."""
        result = await self._read(
            "read_list", [key_range(self._m(key)), prefix_range(self._l(key))]
        )
        if alive(result.first(0), now_ms()) is None:
            return []
        return [kv.value for kv in _ordered(result.kvs(1))]

    async def list_length(self, key: str) -> int:
        """How many items the list at ``key`` holds: its header says."""
        result = await self._read("list_length", [key_range(self._m(key))])
        header = alive(result.first(0), now_ms())
        if header is None:
            return 0
        if header.value:
            return int(header.value)
        return len(await self._read_unnumbered(key))

    # -- ordered indexes ----------------------------------------------------------------
    async def index_range(
        self,
        index: str,
        *,
        after: Entry | None = None,
        before: Entry | None = None,
        limit: int,
        descending: bool = False,
    ) -> list[Entry]:
        """Up to ``limit`` entries strictly between ``after`` and ``before``: one limited
        range of the entries' ascending keys, or of their descending ones."""
        if limit <= 0:
            return []
        if descending:
            space = self._spaces.descending(index)
            low = space if before is None else space + _sortable.descending(*before) + b"\x00"
            high = prefix_end(space) if after is None else space + _sortable.descending(*after)
            decode = _sortable.entry_from_descending
        else:
            space = self._spaces.ascending(index)
            low = space if after is None else space + _sortable.ascending(*after) + b"\x00"
            high = prefix_end(space) if before is None else space + _sortable.ascending(*before)
            decode = _sortable.entry_from_ascending
        if low >= high:
            return []
        result = await self._read("index_range", [
            key_range(self._spaces.index_header(index), keys_only=True),
            key_range(low, high, keys_only=True, limit=limit),
        ])
        # Every key of the index carries the header's lease: a live header, live entries.
        if alive(result.first(0), now_ms()) is None:
            return []
        return [decode(kv.key[len(space) :]) for kv in result.kvs(1)]

    async def index_size(self, index: str) -> int:
        """How many members ``index`` holds: etcd counts the keys of a range, which costs
        the index's size (in memory, no values read)."""
        result = await self._read("index_size", [
            key_range(self._spaces.index_header(index), keys_only=True),
            prefix_range(self._spaces.members(index), count_only=True),
        ])
        return 0 if alive(result.first(0), now_ms()) is None else result.count(1)

    # -- lifetime -----------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        """Remove ``key`` whatever it holds, in one transaction."""
        ops = [
            remove(self._v(key)),
            remove(self._h(key)),
            remove_prefix(self._s(key)),
            remove(self._m(key)),
            remove_prefix(self._l(key)),
            remove(self._spaces.index_header(key)),
            remove_prefix(self._spaces.index_keys(key)),
        ]
        await self._committer.txn("delete", [], ops, [])

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key of any kind starting with ``prefix``; count the live ones."""
        text = prefix.encode()
        kinds = (b"v/", b"h/", b"s/", b"m/", b"l/", b"i/", b"x/")
        spaces = [self._root + kind + text for kind in kinds]
        # values, and the headers of sets, lists and indexes
        counted = [spaces[0], spaces[1], spaces[3], spaces[5]]
        ops = [prefix_range(space, keys_only=True) for space in counted]
        ops += [remove_prefix(space) for space in spaces]
        result = await self._committer.txn("delete_prefix", [], ops, [])
        now = now_ms()
        return sum(live(kv, now) for index in range(len(counted)) for kv in result.kvs(index))

    async def expire(self, key: str, ttl: float) -> None:
        """Make ``key`` (of any kind) expire ``ttl`` seconds from now."""
        lease = await self._leases.get("expire", ttl)
        value_key, set_key, list_key = self._v(key), self._h(key), self._m(key)
        index_key = self._spaces.index_header(key)
        reads = [
            key_range(value_key, keys_only=True),
            key_range(set_key, keys_only=True),
            prefix_range(self._s(key), keys_only=True),
            key_range(list_key, keys_only=True),
            prefix_range(self._l(key), keys_only=True),
            key_range(index_key, keys_only=True),
            prefix_range(self._spaces.index_keys(key), keys_only=True),
        ]
        result = await self._read("expire", reads)
        for _ in range(MAX_ATTEMPTS):
            now = now_ms()
            compare: list[Json] = []
            success: list[Json] = []
            # Each kind that lives gets the lease; an absent or expired one stays as it
            # is. Every addition rewrites the header, so an unchanged header means no
            # member, item or entry was added; a set member's or an index entry's own
            # revision shows that it was not removed (list items are only ever removed
            # with their header).
            for name, header_index, members_index in (
                (value_key, 0, None),
                (set_key, 1, 2),
                (list_key, 3, 4),
                (index_key, 5, 6),
            ):
                kv = result.first(header_index)
                compare.append(absent(name) if kv is None else unchanged(kv))
                if kv is not None and live(kv, now):
                    success.append(touch(kv.key, lease))
                    if members_index is not None:
                        members = result.kvs(members_index)
                        success += [touch(m.key, lease) for m in members]
                        if name in (set_key, index_key):
                            compare += map(unchanged, members)
            if not success:
                return
            result = await self._committer.txn("expire", compare, success, reads)
            if result.succeeded:
                return
        raise self._committer.gave_up("expire")


