"""etcd v3 state store, spoken through etcd's own JSON gateway.

The requests and the HTTP client (endpoint failover, authentication, TLS) are
:mod:`faasflow.stores._etcd_client`; this module is the store: its key layout, its
transactions and its expiry.

Every key of the store lives under its ``prefix`` (``faasflow/`` by default), in one key
space per kind, so that the contract's separate namespaces never collide and every
prefix read or delete is one etcd key range::

    {prefix}v/{key}                plain value (counters as ASCII digits)
    {prefix}h/{key}                set header (empty value): exists while the set does
    {prefix}s/{key}\\xff{member}    set member (empty value)
    {prefix}m/{key}                list header (empty value)
    {prefix}l/{key}\\xff{token}     list item

The byte ``0xff`` never occurs in UTF-8, so it ends the key unambiguously. Members and
items are ordered by their create revision (a member added again after its removal is a
new key, so it goes last); items appended in one transaction share a revision and are
ordered by their token, which grows per store object.

Atomicity: every read-modify-write is an etcd transaction whose compares guard what was
read. Most start optimistically with a guess ("the value has no lease", "the set has no
deadline") so the common case is one round trip; when the guess is wrong the
transaction's failure branch returns the current keys, and the next attempt compares
what it saw. ``add_to_set`` puts the member and counts the members in one transaction
(a range inside a transaction sees that transaction's writes), so concurrent adders of
different members see distinct sizes without retrying; ``remove_from_set`` deletes the
header with the last member through a nested transaction. Every member or item write
also rewrites its header, so guarding the header guards against concurrent additions.

Expiry: etcd leases count whole seconds and are revoked late (the lessor checks every
500 ms, and a new leader extends every lease), so leases alone would let expired keys
linger. Instead each lease's ID *is* its deadline: ``deadline_ms << 20 | random``, chosen
by us when granting it (etcd accepts client-chosen lease IDs). Every read returns each
key's lease ID, so an expired key is recognised on every read, by every process, to the
millisecond, and treated as absent; etcd deletes it for good when the lease (granted a
second longer) runs out. Deadlines are rounded up by at most 1/64 of the TTL so that
keys written around the same time share one lease. Deadlines use the writer's wall
clock: hosts sharing a store need synchronised clocks (NTP), as for the SQLite store.

Every key of one set or list carries the header's lease, so it expires as a whole;
``expire`` and an add or append with ``ttl`` re-lease every key (a put with
``ignore_value``). A transaction holds at most etcd's ``--max-txn-ops`` operations (128 by
default), which bounds the writes of one ``commit`` and the size of a set or list whose
TTL is refreshed.

Errors of the gateway or the connection are raised as
:class:`~faasflow.errors.StoreError` naming the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import secrets
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores._etcd_client import (
    EtcdClient,
    EtcdError,
    Json,
    Kv,
    Txn,
    absent,
    b64,
    exists,
    key_range,
    lease_is,
    none_in,
    prefix_end,
    prefix_range,
    put,
    put_keeping_lease,
    remove,
    remove_prefix,
    touch,
    unchanged,
    value_is,
)
from faasflow.stores._urls import redact_url
from faasflow.stores.base import Append, Delete, Put, StateStore, WriteOp

__all__ = ["EtcdStateStore"]

_END = b"\xff"
"""Ends a store key inside member and item keys: no UTF-8 text contains this byte."""

_LEASE_SHIFT = 20
"""A lease ID is ``deadline_ms << _LEASE_SHIFT | random``: positive int64 until 2248."""

_LAST_DEADLINE = (1 << (63 - _LEASE_SHIFT)) - 1
"""Deadlines beyond this (the year 2248) are cut to it, for the ID to fit in an int64."""

_MAX_LEASE_TTL = 9_000_000_000
"""etcd's longest lease, in seconds."""

_MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: reads of many keys are split into such batches."""

_MAX_ATTEMPTS = 1000
"""Optimistic retries before a read-modify-write gives up (only under pathological
contention: every retry means another writer made progress)."""

_INTEGER = re.compile(rb"-?[0-9]+")
_DEFAULT_PORT = 2379
_OPTIONS = ("cacert", "cert", "key", "timeout")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _live(kv: Kv, now_ms: int) -> bool:
    """Whether the key's deadline (its lease ID's high bits) is still ahead."""
    return kv.lease == 0 or (kv.lease >> _LEASE_SHIFT) > now_ms


def _ordered(kvs: list[Kv]) -> list[Kv]:
    """Members or items in the order they were written."""
    return sorted(kvs, key=lambda kv: (kv.create, kv.key))


@dataclass(frozen=True, slots=True)
class _ListSeen:
    """A list's header (``None`` = absent) and, when its TTL is refreshed, its items."""

    header: Kv | None
    items: list[Kv]


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
        self._leases: dict[int, int] = {}  # rounded deadline (ms) -> lease ID
        self._lease_lock = asyncio.Lock()
        # Held while a task of this store runs a compare-and-set loop on a key; gone
        # once no task holds or awaits it.
        self._locks: weakref.WeakValueDictionary[bytes, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # List item tokens: unique per store object, growing, so that items written in
        # one transaction (one revision) sort in append order.
        self._token_base = secrets.token_hex(8)
        self._tokens = itertools.count()

    @classmethod
    def from_url(cls, url: str) -> EtcdStateStore:
        """The store an ``etcd://`` URL names, not yet opened.

        ``etcd://[user:password@]host[:port][,host2[:port2]...]/key-prefix?timeout=S``;
        ``etcds://`` speaks TLS, optionally with ``?cacert=ca.pem`` (the CA to trust) and
        ``&cert=client.pem&key=client-key.pem`` (client-certificate authentication). The
        prefix defaults to ``faasflow/`` and always ends with ``/``; the port to 2379.

        Raises:
            ConfigurationError: the URL is malformed; the message names the option.
        """
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigurationError(f"etcd store URL {shown!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("etcd", "etcds"):
            raise ConfigurationError(f"etcd store URL {shown!r}: the scheme must be etcd or etcds")
        if parts.fragment:
            raise ConfigurationError(f"etcd store URL {shown!r}: unexpected '#' fragment")
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if not at and "@" in parts.path:
            raise ConfigurationError(
                f"etcd store URL {shown!r}: percent-encode the credentials ('/' is %2F) and "
                "an '@' in the prefix (%40); an unencoded '/' ends the host part early"
            )
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            if not user or not colon:
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: etcd authentication needs user:password@"
                )
            username, password = unquote(user), unquote(secret)
        endpoints = [
            _endpoint(host, "https" if scheme == "etcds" else "http", shown)
            for host in hosts.split(",")
        ]
        prefix = unquote(parts.path[1:]) or "faasflow/"
        if not prefix.endswith("/"):
            prefix += "/"
        options: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "timeout":
                try:
                    options["timeout"] = float(value)
                except ValueError:
                    options["timeout"] = math.nan
                if not 0 < options["timeout"] < math.inf:
                    raise ConfigurationError(
                        f"etcd store URL {shown!r}: timeout={value!r} is not a positive "
                        "number of seconds"
                    )
            elif name in ("cacert", "cert", "key"):
                if scheme != "etcds":
                    raise ConfigurationError(
                        f"etcd store URL {shown!r}: option {name!r} needs etcds:// (TLS)"
                    )
                if not os.path.isfile(value):
                    raise ConfigurationError(
                        f"etcd store URL {shown!r}: {name}={value!r} is not a readable file"
                    )
                options[{"cacert": "ca_file", "cert": "cert_file", "key": "key_file"}[name]] = value
            else:
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: unknown option {name!r} "
                    f"(known: {', '.join(_OPTIONS)})"
                )
        if ("cert_file" in options) != ("key_file" in options):
            raise ConfigurationError(f"etcd store URL {shown!r}: cert= and key= go together")
        return cls(endpoints, prefix=prefix, username=username, password=password, **options)

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
    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a write that may name a lease: one that etcd lost is granted afresh."""
        try:
            yield
        except EtcdError as exc:
            if exc.lease_not_found:
                self._leases.clear()  # revoked early (by hand?): grant afresh next time
            raise

    async def _txn(
        self, what: str, compare: list[Json], success: list[Json], failure: list[Json]
    ) -> Txn:
        with self._writing():
            return await self._etcd.txn(what, compare, success, failure)

    async def _read(self, what: str, ops: list[Json]) -> Txn:
        """Several ranges at one revision, in one round trip."""
        return await self._etcd.txn(what, [], ops, [])

    # -- leases -------------------------------------------------------------------------
    async def _lease(self, what: str, ttl: float | None) -> int:
        """The lease of a key written now with ``ttl`` (0: no lease, no deadline)."""
        if ttl is None:
            return 0
        ttl_ms = max(0.0, ttl * 1000)
        # A step of at most ttl/64, a power of two so that steps nest: writes in the
        # same step share one lease and one grant.
        step = 1 << max(0, int(ttl_ms / 64).bit_length() - 1)
        deadline = min(math.ceil((_now_ms() + ttl_ms) / step) * step, _LAST_DEADLINE)
        lease = self._leases.get(deadline)
        if lease is not None:
            return lease
        async with self._lease_lock:
            lease = self._leases.get(deadline)
            if lease is None:
                lease = await self._grant(what, deadline)
                now = _now_ms()
                self._leases = {d: id_ for d, id_ in self._leases.items() if d > now}
                self._leases[deadline] = lease
        return lease

    async def _grant(self, what: str, deadline: int) -> int:
        # One second more than the deadline needs: the lessor counts from when it
        # applies the grant, a little after now.
        seconds = min(max(1, math.ceil((deadline - _now_ms()) / 1000) + 1), _MAX_LEASE_TTL)
        for _ in range(8):
            lease = deadline << _LEASE_SHIFT | secrets.randbits(_LEASE_SHIFT)
            if await self._etcd.grant(what, lease, seconds):
                return lease
            # Another writer drew the same random bits: draw again.
        raise self._etcd.error(what, "could not grant a lease with a free ID")

    def _check_live(self, kv: Kv | None, now: int) -> Kv | None:
        return kv if kv is not None and _live(kv, now) else None

    # -- key spaces ---------------------------------------------------------------------
    def _v(self, key: str) -> bytes:
        return self._root + b"v/" + key.encode()

    def _h(self, key: str) -> bytes:
        return self._root + b"h/" + key.encode()

    def _s(self, key: str) -> bytes:
        return self._root + b"s/" + key.encode() + _END

    def _m(self, key: str) -> bytes:
        return self._root + b"m/" + key.encode()

    def _l(self, key: str) -> bytes:
        return self._root + b"l/" + key.encode() + _END

    def _item(self, key: str) -> bytes:
        return self._l(key) + f"{self._token_base}{next(self._tokens):016x}".encode()

    def _key_lock(self, key: bytes) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _gave_up(self, what: str) -> StoreError:
        return self._etcd.error(what, f"still conflicting after {_MAX_ATTEMPTS} attempts")

    # -- plain values -------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` when absent or expired."""
        reply = await self._etcd.call("get", "/v3/kv/range", {"key": b64(self._v(key))})
        raw = reply.get("kvs")
        kv = Kv.parse(raw[0]) if raw else None
        return kv.value if kv is not None and _live(kv, _now_ms()) else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values at ``keys``, in order: one round trip per 128 keys."""
        values: list[bytes | None] = []
        for start in range(0, len(keys), _MAX_TXN_OPS):
            batch = keys[start : start + _MAX_TXN_OPS]
            result = await self._read("get_many", [key_range(self._v(key)) for key in batch])
            now = _now_ms()
            for index in range(len(batch)):
                kv = self._check_live(result.first(index), now)
                values.append(None if kv is None else kv.value)
        return values

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl`` seconds."""
        lease = await self._lease("set", ttl)
        request = put(self._v(key), value, lease)["request_put"]
        with self._writing():
            await self._etcd.call("set", "/v3/kv/put", request)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        """Replace the value at ``key`` if it equals ``expected`` (``None``: absent)."""
        write: WriteOp = Delete(key) if new is None else Put(key, new, ttl)
        return await self._commit("compare_and_set", [write], {key: expected})

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
            now = _now_ms()
            # etcd orders keys by their UTF-8 bytes, which is code point order.
            found += [kv.key[len(space) :].decode() for kv in kvs if _live(kv, now)]
            if not kvs or not reply.get("more") or (limit is not None and len(found) >= limit):
                return found if limit is None else found[:limit]
            start = kvs[-1].key + b"\x00"  # expired keys took places: read on

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        """Apply ``writes`` in one etcd transaction, if ``require`` holds."""
        if not writes and not require:
            return True
        return await self._commit("commit", writes, require or {})

    async def _commit(
        self,
        what: str,
        writes: Sequence[WriteOp],
        require: Mapping[str, bytes | None],
    ) -> bool:
        # The last write to a plain key wins, as if the writes ran in order (etcd refuses
        # two writes to one key in a transaction).
        plain: dict[bytes, Json] = {}
        lists: dict[str, list[Append]] = {}
        ttls = {op.ttl for op in writes if isinstance(op, Put | Append) and op.ttl is not None}
        leases = {ttl: await self._lease(what, ttl) for ttl in ttls}
        for op in writes:
            if isinstance(op, Put):
                lease = 0 if op.ttl is None else leases[op.ttl]
                plain[self._v(op.key)] = put(self._v(op.key), op.value, lease)
            elif isinstance(op, Append):
                lists.setdefault(op.key, []).append(op)
            else:
                plain[self._v(op.key)] = remove(self._v(op.key))
        required = list(require.items())
        seen: dict[str, Kv | None] | None = None  # None: not read yet, guess
        seen_lists: dict[str, _ListSeen | None] = dict.fromkeys(lists)
        for _ in range(_MAX_ATTEMPTS):
            compare: list[Json] = []
            success = list(plain.values())
            failure: list[Json] = []
            for key, expected in required:
                vkey = self._v(key)
                if seen is None:
                    # Guess the common case: a value written without TTL.
                    if expected is None:
                        compare.append(absent(vkey))
                    else:
                        compare += [value_is(vkey, expected), lease_is(vkey, 0)]
                else:
                    kv = seen[key]
                    compare.append(absent(vkey) if kv is None else unchanged(kv))
                failure.append(key_range(vkey))
            for key, ops in lists.items():
                self._plan_append(key, ops, leases, seen_lists[key], compare, success, failure)
            result = await self._txn(what, compare, success, failure)
            if result.succeeded:
                return True
            now = _now_ms()
            seen = {}
            for index, (key, expected) in enumerate(required):
                kv = result.first(index)
                current = self._check_live(kv, now)
                if (None if current is None else current.value) != expected:
                    return False  # read at the revision the compares failed at
                seen[key] = kv
            index = len(required)
            for key, ops in lists.items():
                header = result.first(index)
                refresh = any(op.ttl is not None for op in ops)
                items = result.kvs(index + 1) if refresh else []
                index += 2 if refresh else 1
                if header is not None and not _live(header, now):
                    await self._purge(what, unchanged(header), self._m(key), self._l(key))
                    seen_lists[key] = None
                else:
                    seen_lists[key] = _ListSeen(header, items)
        raise self._gave_up(what)

    def _plan_append(
        self,
        key: str,
        ops: list[Append],
        leases: Mapping[float, int],
        seen: _ListSeen | None,
        compare: list[Json],
        success: list[Json],
        failure: list[Json],
    ) -> None:
        """Add to a transaction the compares and writes that append ``ops`` to a list."""
        header_key = self._m(key)
        ttls = [op.ttl for op in ops if op.ttl is not None]
        # Like Redis's PEXPIRE after RPUSH: the last TTL given sets the list's deadline.
        refresh = leases[ttls[-1]] if ttls else None
        header = None if seen is None else seen.header
        if header is None:
            # Absent (or a guess): a list without TTL may already exist, whose header
            # then has lease 0 too; with a TTL only a new list fits this plan.
            lease = refresh or 0
            compare.append(lease_is(header_key, 0) if refresh is None else absent(header_key))
        elif refresh is None:
            lease = header.lease  # new items join the list's deadline
            compare.append(lease_is(header_key, lease))
        else:
            lease = refresh
            compare.append(unchanged(header))
            assert seen is not None
            success += [touch(item.key, lease) for item in seen.items]
        # Every append rewrites the header, so that guarding it guards the items.
        success.append(put(header_key, b"", lease))
        success += [put(self._item(key), op.value, lease) for op in ops]
        failure.append(key_range(header_key))
        if refresh is not None:
            failure.append(prefix_range(self._l(key), keys_only=True))

    async def _purge(self, what: str, guard: Json, header_key: bytes, members: bytes) -> None:
        """Delete an expired set or list that its lease has not removed yet."""
        await self._txn(what, [guard], [remove(header_key), remove_prefix(members)], [])

    # -- sets ---------------------------------------------------------------------------
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        """Add ``member``; return the set's size after, atomically.

        One transaction puts the member and counts the members: etcd applies
        transactions one at a time and a range inside one sees its own writes, so
        concurrent adders of different members see distinct sizes without retrying.
        """
        lease = await self._lease("add_to_set", ttl)
        space = self._s(key)
        header_key, member_key = self._h(key), space + member.encode()
        count = prefix_range(space, count_only=True)
        failure = [key_range(header_key), key_range(member_key, keys_only=True), count]
        if ttl is not None:  # every member gets the new deadline: read them all
            failure.append(prefix_range(space, keys_only=True))
        header: Kv | None = None  # first guess: no set, or one without a deadline
        members: list[Kv] = []
        for _ in range(_MAX_ATTEMPTS):
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
            result = await self._txn("add_to_set", compare, success, failure)
            if result.succeeded:
                return result.count(len(success) - 1)
            header, found = result.first(0), result.first(1)
            members = result.kvs(3) if ttl is not None else []
            if header is None:
                if found is not None:  # members without a header cannot be: clear them
                    await self._purge("add_to_set", absent(header_key), header_key, space)
            elif not _live(header, _now_ms()):
                await self._purge("add_to_set", unchanged(header), header_key, space)
                header = None
            elif found is not None and ttl is None:
                return result.count(2)  # already a member, as of this revision
        raise self._gave_up("add_to_set")

    async def remove_from_set(self, key: str, member: str) -> bool:
        """Remove ``member``; ``True`` only for the one caller that removed it."""
        space = self._s(key)
        header_key, member_key = self._h(key), space + member.encode()
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
        for _ in range(_MAX_ATTEMPTS):
            compare = [exists(member_key), lease_is(header_key, lease)]
            result = await self._txn(
                "remove_from_set", compare, [remove(member_key), alone], reads
            )
            if result.succeeded:
                return True
            header, found = result.first(0), result.first(1)
            if header is None or found is None or not _live(header, _now_ms()):
                return False
            lease = header.lease
        raise self._gave_up("remove_from_set")

    async def set_members(self, key: str) -> list[str]:
        """The members of the set at ``key`` in first-added order."""
        space = self._s(key)
        result = await self._read(
            "set_members", [key_range(self._h(key)), prefix_range(space, keys_only=True)]
        )
        if self._check_live(result.first(0), _now_ms()) is None:
            return []
        return [kv.key[len(space) :].decode() for kv in _ordered(result.kvs(1))]

    # -- counters and lists -------------------------------------------------------------
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Add ``by`` to the integer at ``key`` (absent = 0): a compare-and-set loop."""
        vkey = self._v(key)
        # Increments of one key by this store's tasks queue up here rather than make
        # each other retry: contention is then only between processes.
        async with self._key_lock(vkey):
            lease = await self._lease("increment", ttl)
            return await self._increment(key, vkey, by, ttl, lease)

    async def _increment(
        self, key: str, vkey: bytes, by: int, ttl: float | None, lease: int
    ) -> int:
        kv: Kv | None = None  # first guess: absent
        for _ in range(_MAX_ATTEMPTS):
            if kv is None:
                total = by
                compare = [absent(vkey)]
                success = [put(vkey, b"%d" % total, lease)]
            else:
                compare = [unchanged(kv)]
                if _live(kv, _now_ms()):
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
            result = await self._txn("increment", compare, success, [key_range(vkey)])
            if result.succeeded:
                return total
            kv = result.first(0)
        raise self._gave_up("increment")

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Append ``value`` to the list at ``key``."""
        await self._commit("append", [Append(key, value, ttl)], {})

    async def read_list(self, key: str) -> list[bytes]:
        """Every item of the list at ``key``, oldest first."""
        result = await self._read(
            "read_list", [key_range(self._m(key)), prefix_range(self._l(key))]
        )
        if self._check_live(result.first(0), _now_ms()) is None:
            return []
        return [kv.value for kv in _ordered(result.kvs(1))]

    # -- lifetime -----------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        """Remove ``key`` whatever it holds, in one transaction."""
        ops = [
            remove(self._v(key)),
            remove(self._h(key)),
            remove_prefix(self._s(key)),
            remove(self._m(key)),
            remove_prefix(self._l(key)),
        ]
        await self._txn("delete", [], ops, [])

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key of any kind starting with ``prefix``; count the live ones."""
        text = prefix.encode()
        spaces = [self._root + kind + text for kind in (b"v/", b"h/", b"s/", b"m/", b"l/")]
        counted = [spaces[0], spaces[1], spaces[3]]  # values and the headers of sets, lists
        ops = [prefix_range(space, keys_only=True) for space in counted]
        ops += [remove_prefix(space) for space in spaces]
        result = await self._txn("delete_prefix", [], ops, [])
        now = _now_ms()
        return sum(_live(kv, now) for index in range(len(counted)) for kv in result.kvs(index))

    async def expire(self, key: str, ttl: float) -> None:
        """Make ``key`` (of any kind) expire ``ttl`` seconds from now."""
        lease = await self._lease("expire", ttl)
        value_key, set_key, list_key = self._v(key), self._h(key), self._m(key)
        reads = [
            key_range(value_key, keys_only=True),
            key_range(set_key, keys_only=True),
            prefix_range(self._s(key), keys_only=True),
            key_range(list_key, keys_only=True),
            prefix_range(self._l(key), keys_only=True),
        ]
        result = await self._read("expire", reads)
        for _ in range(_MAX_ATTEMPTS):
            now = _now_ms()
            compare: list[Json] = []
            success: list[Json] = []
            # Each kind that lives gets the lease; an absent or expired one stays as it
            # is. Every addition rewrites the header, so an unchanged header means no
            # member or item was added; a set member's own revision shows that it was not
            # removed (list items are only ever removed with their header).
            for name, header_index, members_index in (
                (value_key, 0, None),
                (set_key, 1, 2),
                (list_key, 3, 4),
            ):
                kv = result.first(header_index)
                compare.append(absent(name) if kv is None else unchanged(kv))
                if kv is not None and _live(kv, now):
                    success.append(touch(kv.key, lease))
                    if members_index is not None:
                        members = result.kvs(members_index)
                        success += [touch(m.key, lease) for m in members]
                        if name == set_key:
                            compare += map(unchanged, members)
            if not success:
                return
            result = await self._txn("expire", compare, success, reads)
            if result.succeeded:
                return
        raise self._gave_up("expire")


def _endpoint(host: str, scheme: str, shown: str) -> str:
    """``http(s)://host:port`` of one ``host[:port]`` of an etcd URL."""
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(f"etcd store URL {shown!r}: bad host:port {host!r}") from None
    hostname = parts.hostname
    if not hostname or parts.path or parts.username is not None:
        raise ConfigurationError(f"etcd store URL {shown!r}: bad host:port {host!r}")
    if ":" in hostname:  # IPv6
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{port}"
