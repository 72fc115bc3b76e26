"""Redis stores (``redis.asyncio``): shared state and data for several processes and hosts.

Every key lives under the store's ``namespace`` and a kind prefix, so one Redis can hold
several flows' stores and the contract's separate namespaces (plain values, sets,
lists) never collide::

    {ns}v:{key}   plain value (a string; counters are ASCII digits)
    {ns}s:{key}   set: a sorted set scored by first-add order ({ns}q:{key} is its counter)
    {ns}l:{key}   list
    {ns}d:{key}   data store bytes

Every read-modify-write is one Lua script, so it is atomic on the server and costs one
round trip: compare-and-set, add-to-set-and-count, and ``commit``. Errors of the client
are raised as :class:`~faasflow.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from faasflow.errors import StoreError
from faasflow.stores.base import Append, DataStore, Delete, Put, StateStore, WriteOp

# KEYS[1] value key; ARGV: has_expected, expected, has_new, new, ttl_ms (0 = none)
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
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1] set, KEYS[2] its counter; ARGV: member, ttl_ms (0 = keep the deadline)
_SET_ADD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
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

# KEYS: the required keys, then the written keys, in order.
# ARGV: n_required, then per required key (present, value), then per write
# (op, value, ttl_ms) where op is P (put), D (delete) or A (append).
_COMMIT = """
local n = tonumber(ARGV[1])
local arg = 2
for i = 1, n do
  local current = redis.call('GET', KEYS[i])
  if ARGV[arg] == '1' then
    if current ~= ARGV[arg + 1] then return 0 end
  elseif current then
    return 0
  end
  arg = arg + 2
end
for i = n + 1, #KEYS do
  local op, value, ttl = ARGV[arg], ARGV[arg + 1], tonumber(ARGV[arg + 2])
  if op == 'P' then
    if ttl > 0 then redis.call('SET', KEYS[i], value, 'PX', ttl)
    else redis.call('SET', KEYS[i], value) end
  elseif op == 'D' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('RPUSH', KEYS[i], value)
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
  arg = arg + 3
end
return 1
"""


def _ms(ttl: float | None) -> int:
    """Redis wants whole milliseconds; a positive TTL never rounds down to "none"."""
    if ttl is None:
        return 0
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class _RedisStore:
    """Connection handling shared by both Redis stores."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "faasflow:",
        client: aioredis.Redis | None = None,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.namespace = namespace
        self._client = client
        self._owns_client = client is None
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace!r}>"

    @property
    def redis(self) -> aioredis.Redis:
        if self._client is None:
            # A blocking pool: many concurrent hops wait for a connection rather than
            # fail with "too many connections".
            # A command on a pooled connection that the server closed (it restarted, or a
            # proxy timed it out) is sent again on a new connection, with a short backoff.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=30,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            self._client = aioredis.Redis.from_pool(pool)  # owns the pool: closed with it
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
            self._scripts.clear()  # bound to the closed client

    def _eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]:
        """Run a Lua script by its SHA (EVALSHA), loading it once per server.

        Sending only the digest saves the script's text on every call; after a server
        restart (scripts forgotten) it is loaded again.
        """
        runner = self._scripts.get(script)
        if runner is None:
            runner = self._scripts[script] = self.redis.register_script(script)
        return runner(keys=keys_and_args[:numkeys], args=keys_and_args[numkeys:])

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        # redis-py types replies loosely (bytes | str | ...); with decode_responses=False
        # they are bytes, and each caller annotates what it gets.
        try:
            return await awaitable
        except RedisError as exc:
            raise StoreError(f"Redis store {self.namespace!r}: {what} failed: {exc}") from exc

    async def _scan(self, pattern: str) -> list[bytes]:
        found: list[bytes] = []
        async for key in self.redis.scan_iter(match=pattern, count=1000):
            found.append(key)
        return found


class RedisStateStore(_RedisStore, StateStore):
    """:class:`StateStore` on Redis: atomic operations are Lua scripts.

    Args:
        url: ``redis://[:password@]host:port/db``.
        namespace: prefix of every key, so stores can share one Redis.
        client: an existing ``redis.asyncio.Redis`` (``decode_responses=False``).
    """

    def _v(self, key: str) -> str:
        return f"{self.namespace}v:{key}"

    def _s(self, key: str) -> str:
        return f"{self.namespace}s:{key}"

    def _q(self, key: str) -> str:
        return f"{self.namespace}q:{key}"

    def _l(self, key: str) -> str:
        return f"{self.namespace}l:{key}"

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", self.redis.get(self._v(key)))
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self._call(
            "get_many", self.redis.mget([self._v(k) for k in keys])
        )
        return values

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._call("set", self.redis.set(self._v(key), value, px=_ms(ttl) or None))

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
        done = await self._call("compare_and_set", self._eval(_CAS, 1, self._v(key), *args))
        return bool(done)

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        required = list((require or {}).items())
        keys = [self._v(k) for k, _ in required]
        args: list[Any] = [len(required)]
        for _, expected in required:
            args += ["1" if expected is not None else "0", expected or b""]
        for op in writes:
            if isinstance(op, Put):
                keys.append(self._v(op.key))
                args += ["P", op.value, _ms(op.ttl)]
            elif isinstance(op, Delete):
                keys.append(self._v(op.key))
                args += ["D", b"", 0]
            else:
                keys.append(self._l(op.key))
                args += ["A", op.value, _ms(op.ttl)]
        done = await self._call("commit", self._eval(_COMMIT, len(keys), *keys, *args))
        return bool(done)

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        start = len(self._v(""))
        pattern = _glob_escape(self._v(prefix)) + "*"
        found = sorted(k.decode()[start:] for k in await self._call("keys", self._scan(pattern)))
        return found if limit is None else found[:limit]

    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        size = await self._call(
            "add_to_set",
            self._eval(_SET_ADD, 2, self._s(key), self._q(key), member, _ms(ttl)),
        )
        return int(size)

    async def remove_from_set(self, key: str, member: str) -> bool:
        removed = await self._call(
            "remove_from_set",
            self._eval(_SET_REMOVE, 2, self._s(key), self._q(key), member),
        )
        return bool(removed)

    async def set_members(self, key: str) -> list[str]:
        members = await self._call("set_members", self.redis.zrange(self._s(key), 0, -1))
        return [m.decode() for m in members]

    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(self._v(key), by)
            if ttl is not None:
                pipe.pexpire(self._v(key), _ms(ttl))
            results = await self._call("increment", pipe.execute())
        return int(results[0])

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self.commit([Append(key, value, ttl)])

    async def read_list(self, key: str) -> list[bytes]:
        items: list[bytes] = await self._call("read_list", self.redis.lrange(self._l(key), 0, -1))
        return items

    async def delete(self, key: str) -> None:
        await self._call(
            "delete", self.redis.delete(self._v(key), self._s(key), self._q(key), self._l(key))
        )

    async def delete_prefix(self, prefix: str) -> int:
        doomed: list[bytes] = []
        for kind in ("v", "s", "l"):
            pattern = _glob_escape(f"{self.namespace}{kind}:{prefix}") + "*"
            doomed += await self._call("delete_prefix", self._scan(pattern))
        counters = [
            self._q(k.decode()[len(self._s("")) :])
            for k in doomed
            if k.startswith(self._s("").encode())
        ]
        if not doomed:
            return 0
        deleted = await self._call("delete_prefix", self.redis.delete(*doomed))
        if counters:
            await self._call("delete_prefix", self.redis.delete(*counters))
        return int(deleted)

    async def expire(self, key: str, ttl: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in (self._v(key), self._s(key), self._q(key), self._l(key)):
                pipe.pexpire(name, _ms(ttl))
            await self._call("expire", pipe.execute())


class RedisDataStore(_RedisStore, DataStore):
    """:class:`DataStore` on Redis (for payloads up to Redis's 512 MB string limit).

    Args: as :class:`RedisStateStore`.
    """

    def _d(self, key: str) -> str:
        return f"{self.namespace}d:{key}"

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        await self._call("put", self.redis.set(self._d(key), data, px=_ms(ttl) or None))

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", self.redis.get(self._d(key)))
        return value

    async def delete(self, key: str) -> None:
        await self._call("delete", self.redis.delete(self._d(key)))

    async def delete_prefix(self, prefix: str) -> int:
        doomed = await self._call("delete_prefix", self._scan(_glob_escape(self._d(prefix)) + "*"))
        if not doomed:
            return 0
        return int(await self._call("delete_prefix", self.redis.delete(*doomed)))

    async def expire(self, key: str, ttl: float) -> None:
        await self._call("expire", self.redis.pexpire(self._d(key), _ms(ttl)))
