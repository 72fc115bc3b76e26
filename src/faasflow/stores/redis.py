"""Redis stores: shared state and data for several processes and hosts.

Every key lives under the store's ``namespace`` and a kind prefix, so one Redis can hold
several flows' stores and the contract's separate namespaces (plain values, sets,
lists) never collide::

    {ns}v:{key}   plain value (a string; counters are ASCII digits)
    {ns}s:{key}   set: a sorted set scored by first-add order ({ns}q:{key} is its counter)
    {ns}l:{key}   list
    {ns}d:{key}   data store bytes
    {ns}i:{folder}  the folder's keys (see below)

Keys are grouped into folders for :meth:`delete_prefix`: a key with more segments than
the store's ``folder_depth`` (2 for state, ``r/R/…``; 1 for data, ``R/…``) is listed in
its folder's index set, written in the same round trip as the key. Deleting a whole
folder then costs its own keys, not a scan of the server's keyspace (which grows with
every result kept); any other prefix is found by scanning.

Every read-modify-write is one Lua script, so it is atomic on the server and costs one
round trip: compare-and-set, add-to-set-and-count, and ``commit``, sent by digest
(EVALSHA). The connection is :mod:`faasflow.stores._resp`, a small RESP client: a
command through redis-py cost more Python time than its round trip. Errors are raised
as :class:`~faasflow.errors.StoreError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores._resp import RespConnectionError, RespError, RespPool
from faasflow.stores._urls import redact_url
from faasflow.stores.base import Append, DataStore, Delete, Put, StateStore, WriteOp

# KEYS[1] value key, KEYS[2] its folder index (optional);
# ARGV: has_expected, expected, has_new, new, ttl_ms (0 = none)
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  if tonumber(ARGV[5]) > 0 then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
  if KEYS[2] then redis.call('SADD', KEYS[2], KEYS[1]) end
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1] set, KEYS[2] its counter, KEYS[3] its folder index (optional);
# ARGV: member, ttl_ms (0 = keep the deadline)
_SET_ADD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
  if KEYS[3] then redis.call('SADD', KEYS[3], KEYS[1]) end
  local left = redis.call('PTTL', KEYS[1])
  if tonumber(ARGV[2]) == 0 and left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] set, KEYS[2] its counter; ARGV: member
_SET_REMOVE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return removed
"""

# KEYS: the required keys, then the written keys, in order, then the folder indexes.
# ARGV: n_required, n_written, then per required key (present, value), then per write
# (op, value, ttl_ms, index) where op is P (put), D (delete) or A (append) and index is
# the position in KEYS of the written key's folder index (0: none).
_COMMIT = """
local n = tonumber(ARGV[1])
local last = n + tonumber(ARGV[2])
local arg = 3
for i = 1, n do
  local current = redis.call('GET', KEYS[i])
  if ARGV[arg] == '1' then
    if current ~= ARGV[arg + 1] then return 0 end
  elseif current then
    return 0
  end
  arg = arg + 2
end
for i = n + 1, last do
  local op, value, ttl = ARGV[arg], ARGV[arg + 1], tonumber(ARGV[arg + 2])
  local index = tonumber(ARGV[arg + 3])
  if op == 'P' then
    if ttl > 0 then redis.call('SET', KEYS[i], value, 'PX', ttl)
    else redis.call('SET', KEYS[i], value) end
  elseif op == 'D' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('RPUSH', KEYS[i], value)
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
  if index > 0 then
    if op == 'D' then redis.call('SREM', KEYS[index], KEYS[i])
    else redis.call('SADD', KEYS[index], KEYS[i]) end
  end
  arg = arg + 4
end
return 1
"""


def _ms(ttl: float | None) -> int:
    """Redis wants whole milliseconds; a positive TTL never rounds down to "none"."""
    if ttl is None:
        return 0
    return max(1, round(ttl * 1000))


_SECONDS = ("socket_timeout", "socket_connect_timeout")
"""The URL's options that the connection reads (see :class:`~faasflow.stores._resp.RespPool`)."""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class _RedisStore:
    """Connection handling and folder indexes shared by both Redis stores."""

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
        self._pool: RespPool | None = None

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

    async def _call(self, what: str, *args: Any) -> Any:
        """One command; its reply, or a :class:`StoreError` naming ``what``."""
        try:
            return await self.pool.call(*args)
        except (RespError, RespConnectionError, ValueError) as exc:
            raise StoreError(f"Redis store {self.namespace!r}: {what} failed: {exc}") from exc

    async def _transaction(self, what: str, commands: list[list[Any]]) -> list[Any]:
        """``commands`` in MULTI/EXEC, in one round trip; their replies."""
        try:
            replies = await self.pool.pipeline([["MULTI"], *commands, ["EXEC"]])
        except (RespError, RespConnectionError, ValueError) as exc:
            raise StoreError(f"Redis store {self.namespace!r}: {what} failed: {exc}") from exc
        results = replies[-1]
        failed = [r for r in [*replies[:-1], *(results or [])] if isinstance(r, RespError)]
        if failed or results is None:
            cause = failed[0] if failed else "transaction aborted"
            raise StoreError(f"Redis store {self.namespace!r}: {what} failed: {cause}")
        return list(results)

    async def _eval(self, what: str, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Run a Lua script by its digest (EVALSHA); load it when the server lacks it
        (first use, or after a restart)."""
        digest = _digest(script)
        try:
            return await self.pool.call("EVALSHA", digest, numkeys, *keys_and_args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise StoreError(
                    f"Redis store {self.namespace!r}: {what} failed: {exc}"
                ) from exc
        except RespConnectionError as exc:
            raise StoreError(f"Redis store {self.namespace!r}: {what} failed: {exc}") from exc
        return await self._call(what, "EVAL", script, numkeys, *keys_and_args)

    def _index(self, key: str) -> str | None:
        """The index set of ``key``'s folder, or ``None`` for a key too short to have one."""
        parts = key.split("/", self.folder_depth)
        if len(parts) <= self.folder_depth:
            return None
        return f"{self.namespace}i:{'/'.join(parts[: self.folder_depth])}/"

    def _is_folder(self, prefix: str) -> bool:
        """Whether ``prefix`` is exactly one folder (``a/b/`` at depth 2)."""
        parts = prefix.split("/")
        return len(parts) == self.folder_depth + 1 and parts[-1] == "" and all(parts[:-1])

    async def _write_indexed(self, what: str, name: str, key: str, command: list[Any]) -> None:
        """Run ``command`` (which writes ``name``) and list ``name`` in ``key``'s folder
        index, in one transaction."""
        index = self._index(key)
        if index is None:
            await self._call(what, *command)
        else:
            await self._transaction(what, [command, ["SADD", index, name]])

    async def _delete_folder(self, prefix: str, companions: Any = None) -> int:
        """Delete every key listed in the folder ``prefix``'s index, and the index; the
        number of live keys deleted. ``companions`` maps a listed name to keys deleted
        with it (a set's counter)."""
        index = f"{self.namespace}i:{prefix}"
        names: list[bytes] = await self._call("delete_prefix", "SMEMBERS", index)
        if not names:
            await self._call("delete_prefix", "DEL", index)
            return 0
        extra = [c for n in names for c in (companions(n) if companions else ())]
        commands = [["DEL", *names]]
        if extra:
            commands.append(["DEL", *extra])
        commands.append(["DEL", index])
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


def _digest(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class RedisStateStore(_RedisStore, StateStore):
    """:class:`StateStore` on Redis: atomic operations are Lua scripts.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS).
        namespace: prefix of every key, so stores can share one Redis.
        max_connections: connections open at once.
    """

    folder_depth = 2

    def _v(self, key: str) -> str:
        return f"{self.namespace}v:{key}"

    def _s(self, key: str) -> str:
        return f"{self.namespace}s:{key}"

    def _q(self, key: str) -> str:
        return f"{self.namespace}q:{key}"

    def _l(self, key: str) -> str:
        return f"{self.namespace}l:{key}"

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
        name = self._v(key)
        command: list[Any] = ["SET", name, value]
        if ttl is not None:
            command += ["PX", _ms(ttl)]
        await self._write_indexed("set", name, key, command)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        args = [
            "1" if expected is not None else "0",
            expected or b"",
            "1" if new is not None else "0",
            new or b"",
            _ms(ttl),
        ]
        index = self._index(key)
        names = [self._v(key)] if index is None else [self._v(key), index]
        done = await self._eval("compare_and_set", _CAS, len(names), *names, *args)
        return bool(done)

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        required = list((require or {}).items())
        keys = [self._v(k) for k, _ in required]
        args: list[Any] = [len(required), len(writes)]
        for _, expected in required:
            args += ["1" if expected is not None else "0", expected or b""]
        indexes: dict[str, int] = {}  # index name -> its position in KEYS (1-based)
        first_index = len(keys) + len(writes) + 1
        for op in writes:
            index = self._index(op.key)
            position = 0
            if index is not None:
                position = indexes.setdefault(index, first_index + len(indexes))
            if isinstance(op, Put):
                keys.append(self._v(op.key))
                args += ["P", op.value, _ms(op.ttl), position]
            elif isinstance(op, Delete):
                keys.append(self._v(op.key))
                args += ["D", b"", 0, position]
            else:
                keys.append(self._l(op.key))
                args += ["A", op.value, _ms(op.ttl), position]
        keys += list(indexes)
        done = await self._eval("commit", _COMMIT, len(keys), *keys, *args)
        return bool(done)

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        start = len(self._v(""))
        pattern = _glob_escape(self._v(prefix)) + "*"
        found = sorted(k.decode()[start:] for k in await self._scan(pattern))
        return found if limit is None else found[:limit]

    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        index = self._index(key)
        names = [self._s(key), self._q(key)] + ([index] if index is not None else [])
        size = await self._eval("add_to_set", _SET_ADD, len(names), *names, member, _ms(ttl))
        return int(size)

    async def remove_from_set(self, key: str, member: str) -> bool:
        removed = await self._eval(
            "remove_from_set", _SET_REMOVE, 2, self._s(key), self._q(key), member
        )
        return bool(removed)

    async def set_members(self, key: str) -> list[str]:
        members = await self._call("set_members", "ZRANGE", self._s(key), 0, -1)
        return [m.decode() for m in members]

    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        name, index = self._v(key), self._index(key)
        commands: list[list[Any]] = [["INCRBY", name, by]]
        if ttl is not None:
            commands.append(["PEXPIRE", name, _ms(ttl)])
        if index is not None:
            commands.append(["SADD", index, name])
        results = await self._transaction("increment", commands)
        return int(results[0])

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self.commit([Append(key, value, ttl)])

    async def read_list(self, key: str) -> list[bytes]:
        items: list[bytes] = await self._call("read_list", "LRANGE", self._l(key), 0, -1)
        return items

    async def delete(self, key: str) -> None:
        names = [self._v(key), self._s(key), self._q(key), self._l(key)]
        index = self._index(key)
        commands = [["DEL", *names]] + ([["SREM", index, *names]] if index else [])
        await self._transaction("delete", commands)

    async def delete_prefix(self, prefix: str) -> int:
        if self._is_folder(prefix):
            sets = self._s("").encode()
            return await self._delete_folder(
                prefix,
                lambda name: [self._q(name[len(sets) :].decode())]
                if name.startswith(sets)
                else [],
            )
        doomed: list[bytes] = []
        for kind in ("v", "s", "l"):
            doomed += await self._scan(_glob_escape(f"{self.namespace}{kind}:{prefix}") + "*")
        counters = [
            self._q(k.decode()[len(self._s("")) :])
            for k in doomed
            if k.startswith(self._s("").encode())
        ]
        indexes = await self._scan(_glob_escape(f"{self.namespace}i:{prefix}") + "*")
        deleted = await self._delete("delete_prefix", doomed)
        await self._delete("delete_prefix", [*counters, *indexes])
        return deleted

    async def expire(self, key: str, ttl: float) -> None:
        await self._transaction(
            "expire",
            [
                ["PEXPIRE", name, _ms(ttl)]
                for name in (self._v(key), self._s(key), self._q(key), self._l(key))
            ],
        )


class RedisDataStore(_RedisStore, DataStore):
    """:class:`DataStore` on Redis (for payloads up to Redis's 512 MB string limit).

    Args: as :class:`RedisStateStore`.
    """

    def _d(self, key: str) -> str:
        return f"{self.namespace}d:{key}"

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        name = self._d(key)
        command: list[Any] = ["SET", name, data]
        if ttl is not None:
            command += ["PX", _ms(ttl)]
        await self._write_indexed("put", name, key, command)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", "GET", self._d(key))
        return value

    async def delete(self, key: str) -> None:
        name, index = self._d(key), self._index(key)
        commands = [["DEL", name]] + ([["SREM", index, name]] if index else [])
        await self._transaction("delete", commands)

    async def delete_prefix(self, prefix: str) -> int:
        if self._is_folder(prefix):
            return await self._delete_folder(prefix)
        doomed = await self._scan(_glob_escape(self._d(prefix)) + "*")
        indexes = await self._scan(_glob_escape(f"{self.namespace}i:{prefix}") + "*")
        await self._delete("delete_prefix", indexes)
        return await self._delete("delete_prefix", doomed)

    async def expire(self, key: str, ttl: float) -> None:
        await self._call("expire", "PEXPIRE", self._d(key), _ms(ttl))
