"""Redis stores: shared state and data for several processes and hosts.

Every key lives under the store's ``namespace`` and a kind prefix, so one Redis can hold
several flows' stores and the contract's separate namespaces (plain values, sets,
lists, ordered indexes) never collide::

    {ns}v:{key}   plain value (a string; counters are ASCII digits)
    {ns}s:{key}   set: a sorted set scored by first-add order ({ns}q:{key} is its counter)
    {ns}l:{key}   list
    {ns}x:{key}   ordered index: a sorted set of ``score bytes + member``, all scored 0,
                  so that its lexicographic order is the index's order ({ns}y:{key} maps
                  each member to its score bytes, to move or drop it)
    {ns}d:{key}   data store bytes
    {ns}i:{folder}  the folder's keys (see below)

Folders: a key's first segments (2 for state, ``r/R/…``; 1 for data, ``R/…``) are its
folder, and a key with more segments than that is listed in its folder's index set,
written in the same round trip as the key. Deleting a folder, or listing the keys under
a prefix within one folder (one request's node records), then costs that folder's own
keys, not a scan of the server's keyspace (which grows with every result kept); any
other prefix is found by scanning.

Redis Cluster: the folder part of every name is a hash tag (``{ns}v:{r/R}/n/a``, see
:mod:`faasflow.stores._redis_names`), so all keys of one request, its record and its
folder index share a slot, and every script or transaction over one request's keys is
valid in a cluster. Operations over several requests' keys are refused there with
``CROSSSLOT``: the engine's commits that also write flow-wide keys (indexes, the
engine's heartbeat) and reads of many requests' records do that, so against a cluster
give the store a namespace with its own hash tag (``?namespace={app}:``), which puts
the whole store in one slot (on one node). The client speaks to one server and does not
follow ``MOVED`` redirections.

Every read-modify-write is one Lua script (:mod:`faasflow.stores._redis_lua`), so it
is atomic on the server and costs one round trip: compare-and-set, add-to-set-and-count,
and ``commit``, sent by digest (EVALSHA). An ordered index's range is one
``ZRANGEBYLEX`` (``ZREVRANGEBYLEX`` descending) with exclusive bounds made of the
entries' bytes: ``O(log n + limit)``. The connection is :mod:`faasflow.stores._resp`, a
small RESP client: a command through redis-py cost more Python time than its round
trip. Errors are raised as :class:`~faasflow.errors.StoreError`; a value longer than
the server takes in one argument (``proto-max-bulk-len``, 512 MB by default, read from
the server) is refused before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores._redis_lua import CAS, COMMIT, SET_ADD, SET_REMOVE, digest
from faasflow.stores._redis_names import Names
from faasflow.stores._resp import RespConnectionError, RespError, RespPool
from faasflow.stores._sortable import ascending, entry_from_ascending, score_bytes
from faasflow.stores._urls import redact_url
from faasflow.stores.base import (
    Append,
    DataStore,
    Delete,
    Entry,
    IndexDrop,
    IndexPut,
    Put,
    StateStore,
    WriteOp,
)

__all__ = ["RedisDataStore", "RedisStateStore"]

_SECONDS = ("socket_timeout", "socket_connect_timeout")
"""The URL's options that the connection reads (see :class:`~faasflow.stores._resp.RespPool`)."""

_SURELY_FITS: Final = 1 << 20
"""Redis refuses to set ``proto-max-bulk-len`` below 1 MiB: a value this long is never
too long, and only longer ones make the store ask the server for its limit."""

_DEFAULT_BULK_LIMIT: Final = 512 << 20
"""Redis's default ``proto-max-bulk-len``: assumed when the server will not say
(``CONFIG`` disabled or renamed, as on managed services)."""


def _ms(ttl: float | None) -> int:
    """Redis wants whole milliseconds; a positive TTL never rounds down to "none"."""
    if ttl is None:
        return 0
    return max(1, round(ttl * 1000))


def _size(count: int) -> str:
    return f"{count} bytes ({count / (1 << 20):.1f} MiB)"


class _RedisStore:
    """Connection handling, folder indexes and value limits shared by both Redis stores."""

    folder_depth = 1
    """Segments of a key that name its folder (see the module docstring)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "faasflow:",
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.namespace = namespace
        self._names = Names(namespace, self.folder_depth)
        self._pool: RespPool | None = None
        self._bulk_limit: int | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """The store a ``redis://`` (``rediss://`` for TLS) URL names, not yet opened.

        ``redis://[[user]:password@]host[:port][/db]?namespace=faasflow:``; the options
        ``socket_timeout`` and ``socket_connect_timeout`` (seconds) go to the connection.

        Raises:
            ConfigurationError: the port or database is malformed, or an option is unknown
                or bad; the message names it and masks the password.
        """
        shown = redact_url(url)
        parts = urlsplit(url)
        if "@" in parts.path:
            raise ConfigurationError(
                f"store URL {shown!r}: percent-encode the credentials ('/' is %2F); "
                "an unencoded '/' ends the host part early"
            )
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            # Not urlsplit's message: it quotes the port's text.
            raise ConfigurationError(
                f"store URL {shown!r}: the port must be a number from 0 to 65535"
            ) from None
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigurationError(f"store URL {shown!r}: database {db!r} is not a number")
        namespace = "faasflow:"
        passed: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "namespace":
                namespace = value
            elif name in _SECONDS:
                try:
                    float(value)
                except ValueError:
                    raise ConfigurationError(
                        f"store URL {shown!r}: {name}={value!r} is not a number of seconds"
                    ) from None
                passed.append((name, value))
            else:
                known = ", ".join(("namespace", *_SECONDS))
                raise ConfigurationError(
                    f"store URL {shown!r}: unknown option {name!r} (known: {known})"
                )
        return cls(urlunsplit(parts._replace(query=urlencode(passed))), namespace=namespace)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace!r}>"

    @property
    def pool(self) -> RespPool:
        if self._pool is None:
            self._pool = RespPool(self.url, self.max_connections)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _failed(self, what: str, cause: object) -> StoreError:
        return StoreError(f"Redis store {self.namespace!r}: {what} failed: {cause}")

    async def _call(self, what: str, *args: Any) -> Any:
        """One command; its reply, or a :class:`StoreError` naming ``what``."""
        try:
            return await self.pool.call(*args)
        except (RespError, RespConnectionError, ValueError) as exc:
            raise self._failed(what, exc) from exc

    async def _pipeline(self, what: str, commands: list[list[Any]]) -> list[Any]:
        """``commands`` in one round trip (not atomic); their replies."""
        try:
            replies = await self.pool.pipeline(commands)
        except (RespConnectionError, ValueError) as exc:
            raise self._failed(what, exc) from exc
        for reply in replies:
            if isinstance(reply, RespError):
                raise self._failed(what, reply)
        return replies

    async def _transaction(self, what: str, commands: list[list[Any]]) -> list[Any]:
        """``commands`` in MULTI/EXEC, in one round trip; their replies."""
        try:
            replies = await self.pool.pipeline([["MULTI"], *commands, ["EXEC"]])
        except (RespError, RespConnectionError, ValueError) as exc:
            raise self._failed(what, exc) from exc
        results = replies[-1]
        failed = [r for r in [*replies[:-1], *(results or [])] if isinstance(r, RespError)]
        if failed or results is None:
            raise self._failed(what, failed[0] if failed else "transaction aborted")
        return list(results)

    async def _eval(self, what: str, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Run a Lua script by its digest (EVALSHA); load it when the server lacks it
        (first use, or after a restart)."""
        try:
            return await self.pool.call("EVALSHA", digest(script), numkeys, *keys_and_args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise self._failed(what, exc) from exc
        except RespConnectionError as exc:
            raise self._failed(what, exc) from exc
        return await self._call(what, "EVAL", script, numkeys, *keys_and_args)

    # -- value limits -------------------------------------------------------------------
    async def _check_values(self, what: str, values: Iterable[tuple[str, bytes | None]]) -> None:
        """Refuse a value the server would refuse: Redis answers an argument longer than
        its ``proto-max-bulk-len`` by closing the connection, which says nothing of
        which key or which limit."""
        for key, value in values:
            if value is not None and len(value) > _SURELY_FITS:
                limit = await self._server_bulk_limit(what)
                if len(value) > limit:
                    raise StoreError(
                        f"Redis store {self.namespace!r}: {what} of {key!r} refused: its value "
                        f"is {_size(len(value))}, more than the server takes in one argument "
                        f"(its proto-max-bulk-len, {_size(limit)}); raise that setting, or "
                        "keep such values in a data store without that limit (S3, files)"
                    )

    async def _server_bulk_limit(self, what: str) -> int:
        """The server's ``proto-max-bulk-len``, asked once per store object."""
        if self._bulk_limit is None:
            try:
                reply = await self.pool.call("CONFIG", "GET", "proto-max-bulk-len")
                self._bulk_limit = int(reply[1]) if len(reply) == 2 else _DEFAULT_BULK_LIMIT
            except RespError:  # CONFIG refused: assume the default
                self._bulk_limit = _DEFAULT_BULK_LIMIT
            except RespConnectionError as exc:
                raise self._failed(what, exc) from exc
        return self._bulk_limit

    # -- folders ------------------------------------------------------------------------
    async def _write_indexed(self, what: str, name: str, key: str, command: list[Any]) -> None:
        """Run ``command`` (which writes ``name``) and list ``name`` in ``key``'s folder
        index, in one transaction."""
        index = self._names.index_of(key)
        if index is None:
            await self._call(what, *command)
        else:
            await self._transaction(what, [command, ["SADD", index, name]])

    async def _listed(self, what: str, folder: str, starts: Sequence[str]) -> list[bytes]:
        """The names in ``folder``'s index that start with one of ``starts``."""
        names: list[bytes] = await self._call(
            what, "SMEMBERS", self._names.folder_index(folder)
        )
        wanted = tuple(start.encode() for start in starts)
        return [name for name in names if name.startswith(wanted)]

    async def _delete_listed(
        self,
        prefix: str,
        folder: str,
        kinds: Sequence[str],
        companions: Callable[[bytes], list[str]] = lambda name: [],
    ) -> int:
        """Delete the keys under ``prefix`` (within ``folder``) that its index lists;
        the number of live keys deleted. ``companions`` maps a listed name to keys
        deleted with it (a set's counter, an index's scores)."""
        index = self._names.folder_index(folder)
        doomed = await self._listed("delete_prefix", folder, [
            self._names.prefix(kind, prefix) for kind in kinds])
        whole = prefix == folder
        if not doomed:
            if whole:
                await self._call("delete_prefix", "DEL", index)
            return 0
        extra = [c for name in doomed for c in companions(name)]
        commands = [["DEL", *doomed]]
        if extra:
            commands.append(["DEL", *extra])
        commands.append(["DEL", index] if whole else ["SREM", index, *doomed])
        results = await self._transaction("delete_prefix", commands)
        return int(results[0])

    async def _scan(self, pattern: str) -> list[bytes]:
        found: list[bytes] = []
        cursor: bytes = b"0"
        while True:
            cursor, keys = await self._call("scan", "SCAN", cursor, "MATCH", pattern,
                                            "COUNT", 1000)
            found += keys
            if cursor == b"0":
                return found

    async def _delete(self, what: str, names: list[Any]) -> int:
        return int(await self._call(what, "DEL", *names)) if names else 0


class RedisStateStore(_RedisStore, StateStore):
    """:class:`StateStore` on Redis: atomic operations are Lua scripts.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS).
        namespace: prefix of every key, so stores can share one Redis.
        max_connections: connections open at once.
    """

    folder_depth = 2

    def _v(self, key: str) -> str:
        return self._names.name("v", key)

    def _s(self, key: str) -> str:
        return self._names.name("s", key)

    def _q(self, key: str) -> str:
        return self._names.name("q", key)

    def _l(self, key: str) -> str:
        return self._names.name("l", key)

    def _x(self, key: str) -> str:
        return self._names.name("x", key)

    def _y(self, key: str) -> str:
        return self._names.name("y", key)

    def _all(self, key: str) -> list[str]:
        """Every name ``key`` may have, of every kind."""
        return [self._names.name(kind, key) for kind in "vsqlxy"]

    def _companions(self, name: bytes) -> list[str]:
        """The keys that go with a listed set (its counter) or index (its scores)."""
        for main, companion in (("s", "q"), ("x", "y")):
            start = self._names.prefix(main, "").encode()
            if name.startswith(start):
                return [self._names.name(companion, self._names.key(main, name))]
        return []

    # -- plain values -----------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", "GET", self._v(key))
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self._call(
            "get_many", "MGET", *[self._v(k) for k in keys]
        )
        return values

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._check_values("set", [(key, value)])
        name = self._v(key)
        command: list[Any] = ["SET", name, value]
        if ttl is not None:
            command += ["PX", _ms(ttl)]
        await self._write_indexed("set", name, key, command)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        await self._check_values("compare_and_set", [(key, expected), (key, new)])
        args = [
            "1" if expected is not None else "0",
            expected or b"",
            "1" if new is not None else "0",
            new or b"",
            _ms(ttl),
        ]
        index = self._names.index_of(key)
        names = [self._v(key)] if index is None else [self._v(key), index]
        done = await self._eval("compare_and_set", CAS, len(names), *names, *args)
        return bool(done)

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        required = list((require or {}).items())
        await self._check_values("commit", [
            *required,
            *((op.key, op.value) for op in writes if isinstance(op, Put | Append)),
        ])
        keys = [self._v(k) for k, _ in required]
        args: list[Any] = [len(required), len(writes)]
        for _, expected in required:
            args += ["1" if expected is not None else "0", expected or b""]
        folders: dict[str, int] = {}  # folder index name -> its position in KEYS (1-based)
        first_folder = len(keys) + len(writes) + 1
        first_folder += sum(isinstance(op, IndexPut | IndexDrop) for op in writes)
        for op in writes:
            key = op.index if isinstance(op, IndexPut | IndexDrop) else op.key
            folder = self._names.index_of(key)
            position = 0
            if folder is not None:
                position = folders.setdefault(folder, first_folder + len(folders))
            if isinstance(op, Put):
                keys.append(self._v(op.key))
                args += ["P", op.value, b"", _ms(op.ttl), position]
            elif isinstance(op, Delete):
                keys.append(self._v(op.key))
                args += ["D", b"", b"", 0, position]
            elif isinstance(op, Append):
                keys.append(self._l(op.key))
                args += ["A", op.value, b"", _ms(op.ttl), position]
            elif isinstance(op, IndexPut):
                keys += [self._x(op.index), self._y(op.index)]
                args += ["X", op.member, score_bytes(op.score), _ms(op.ttl), position]
            else:
                keys += [self._x(op.index), self._y(op.index)]
                args += ["Z", op.member, b"", 0, position]
        keys += list(folders)
        done = await self._eval("commit", COMMIT, len(keys), *keys, *args)
        return bool(done)

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        """Plain-value keys starting with ``prefix``, sorted, at most ``limit``.

        A prefix within one folder (``r/R/…``) is read from the folder's index: it costs
        the folder's keys. Any other prefix scans the server's keyspace.
        """
        if limit is not None and limit <= 0:
            return []
        folder = self._names.folder(prefix)
        if folder is None:
            names = await self._scan(self._names.pattern("v", prefix))
        else:
            listed = await self._listed("keys", folder, [self._names.prefix("v", prefix)])
            # A listed key may have expired since: Redis does not tell its index.
            live = await self._pipeline("keys", [["EXISTS", name] for name in listed])
            names = [name for name, found in zip(listed, live, strict=True) if found]
        found = sorted(self._names.key("v", name) for name in names)
        return found if limit is None else found[:limit]

    # -- sets -------------------------------------------------------------------------
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        index = self._names.index_of(key)
        names = [self._s(key), self._q(key)] + ([index] if index is not None else [])
        size = await self._eval("add_to_set", SET_ADD, len(names), *names, member, _ms(ttl))
        return int(size)

    async def remove_from_set(self, key: str, member: str) -> bool:
        removed = await self._eval(
            "remove_from_set", SET_REMOVE, 2, self._s(key), self._q(key), member
        )
        return bool(removed)

    async def set_members(self, key: str) -> list[str]:
        members = await self._call("set_members", "ZRANGE", self._s(key), 0, -1)
        return [m.decode() for m in members]

    # -- counters and lists -----------------------------------------------------------
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        name, index = self._v(key), self._names.index_of(key)
        commands: list[list[Any]] = [["INCRBY", name, by]]
        if ttl is not None:
            commands.append(["PEXPIRE", name, _ms(ttl)])
        if index is not None:
            commands.append(["SADD", index, name])
        results = await self._transaction("increment", commands)
        return int(results[0])

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self.commit([Append(key, value, ttl)])

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        """``items[start:stop]``: one LRANGE, whose bounds count from the end when
        negative, as Python's do, but include the last index where Python's exclude it."""
        if stop == 0:
            return []  # LRANGE's last index would be -1: the end of the list
        last = -1 if stop is None else stop - 1
        items: list[bytes] = await self._call("read_list", "LRANGE", self._l(key), start, last)
        return items

    async def list_length(self, key: str) -> int:
        length: int = await self._call("list_length", "LLEN", self._l(key))
        return length

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
        if limit <= 0:
            return []
        low = b"-" if after is None else b"(" + ascending(*after)
        high = b"+" if before is None else b"(" + ascending(*before)
        command = ["ZREVRANGEBYLEX", self._x(index), high, low] if descending else [
            "ZRANGEBYLEX", self._x(index), low, high]
        found = await self._call("index_range", *command, "LIMIT", 0, limit)
        return [entry_from_ascending(item) for item in found]

    async def index_size(self, index: str) -> int:
        size: int = await self._call("index_size", "ZCARD", self._x(index))
        return size

    # -- lifetime -----------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        names = self._all(key)
        index = self._names.index_of(key)
        commands = [["DEL", *names]] + ([["SREM", index, *names]] if index else [])
        await self._transaction("delete", commands)

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._names.folder(prefix)
        if folder is not None:
            return await self._delete_listed(prefix, folder, "vslx", self._companions)
        doomed: list[bytes] = []
        for kind in "vslx":
            doomed += await self._scan(self._names.pattern(kind, prefix))
        companions = [c for name in doomed for c in self._companions(name)]
        indexes = await self._scan(self._names.pattern("i", prefix))
        deleted = await self._delete("delete_prefix", doomed)
        await self._delete("delete_prefix", [*companions, *indexes])
        return deleted

    async def expire(self, key: str, ttl: float) -> None:
        await self._transaction(
            "expire", [["PEXPIRE", name, _ms(ttl)] for name in self._all(key)]
        )


class RedisDataStore(_RedisStore, DataStore):
    """:class:`DataStore` on Redis, for payloads up to the server's
    ``proto-max-bulk-len`` (512 MB by default; a longer one is a :class:`StoreError`
    naming the key, raised before anything is sent).

    Args: as :class:`RedisStateStore`.
    """

    def _d(self, key: str) -> str:
        return self._names.name("d", key)

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        await self._check_values("put", [(key, data)])
        name = self._d(key)
        command: list[Any] = ["SET", name, data]
        if ttl is not None:
            command += ["PX", _ms(ttl)]
        await self._write_indexed("put", name, key, command)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", "GET", self._d(key))
        return value

    async def delete(self, key: str) -> None:
        name, index = self._d(key), self._names.index_of(key)
        commands = [["DEL", name]] + ([["SREM", index, name]] if index else [])
        await self._transaction("delete", commands)

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._names.folder(prefix)
        if folder is not None:
            return await self._delete_listed(prefix, folder, "d")
        doomed = await self._scan(self._names.pattern("d", prefix))
        indexes = await self._scan(self._names.pattern("i", prefix))
        await self._delete("delete_prefix", indexes)
        return await self._delete("delete_prefix", doomed)

    async def expire(self, key: str, ttl: float) -> None:
        await self._call("expire", "PEXPIRE", self._d(key), _ms(ttl))
