"""PostgreSQL stores (asyncpg): shared state and data for several processes and hosts.

Each store keeps one asyncpg connection pool. Opening a store creates its tables and
functions if they are missing (``CREATE … IF NOT EXISTS`` under an advisory lock, so
processes opening at once do not collide); the layout and the locking that makes each
operation atomic are described in :mod:`faasflow.stores._postgres_schema`.

Every operation is one statement, so one round trip and one transaction: plain reads and
writes are single SQL statements, and the read-modify-writes (add-to-set, append,
``commit``, deleting collections) call PL/pgSQL functions. asyncpg prepares each
statement once per connection and reuses it.

Expiry compares ``expires_at`` with the server's clock (``now()``), so every client
agrees on it. Expired rows read as absent; a purge deletes them in batches at most once
per ``purge_interval`` seconds, started in the background by whatever operation comes
along first, and :meth:`purge_expired` does it on demand.

``from_url`` reads ``postgresql://user:password@host:port/dbname?table_prefix=faasflow_``
(options: :mod:`faasflow.stores._postgres_url`). Errors of the client or the server are
raised as :class:`~faasflow.errors.StoreError` naming the operation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Self, TypeAlias, TypeVar

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # asyncpg-stubs types it
from asyncpg import exceptions as pgerrors

from faasflow.errors import ConfigurationError, StoreError
from faasflow.resources import AsyncResource
from faasflow.stores._keyrange import prefix_end
from faasflow.stores._postgres_schema import (
    DDL_LOCK,
    IDENTIFIER,
    MAX_PREFIX,
    SCHEMA_VERSION,
    DataSql,
    Names,
    StateSql,
    data_ddl,
    state_ddl,
)
from faasflow.stores._postgres_url import parse_url
from faasflow.stores._urls import redact_url
from faasflow.stores.base import DataStore, Delete, Put, StateStore, WriteOp

__all__ = ["PostgresDataStore", "PostgresStateStore"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
_Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

# What the client raises when the server or the network fails (TimeoutError is an OSError).
_ERRORS: Final = (pgerrors.PostgresError, pgerrors.InterfaceError,
                  pgerrors.InternalClientError, OSError)
# A deadlock or serialisation failure aborts the whole statement (each operation is one),
# so it is safe to run again; PostgreSQL picks the victim, we retry it a few times.
_RETRIED: Final = (pgerrors.DeadlockDetectedError, pgerrors.SerializationError)
_RETRIES: Final = 5
_PURGE_BATCH: Final = 1000


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Reset nothing when a connection goes back to the pool.

    asyncpg's default runs ``RESET ALL``, ``UNLISTEN *`` and friends on every release:
    a second round trip per operation. These stores leave no session state behind (no
    SET, LISTEN, cursors or session-level locks), and asyncpg still rolls back a
    transaction left open before calling this.
    """


class _PostgresStore(AsyncResource):
    """The pool, the schema, errors and the purge, shared by both PostgreSQL stores."""

    _KIND = ""

    def __init__(
        self,
        dsn: str = "postgresql://localhost/faasflow",
        *,
        table_prefix: str = "faasflow_",
        schema: str | None = None,
        pool_min: int = 1,
        pool_max: int = 10,
        purge_interval: float = 60.0,
        connect_timeout: float = 10.0,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        if not IDENTIFIER.fullmatch(table_prefix) or len(table_prefix) > MAX_PREFIX:
            raise ConfigurationError(
                f"table_prefix={table_prefix!r}: use 1 to {MAX_PREFIX} characters of "
                "a-z, 0-9 and _, not starting with a digit"
            )
        if schema is not None and (
            not IDENTIFIER.fullmatch(schema) or len(schema) > 63 or schema.startswith("pg_")
        ):
            raise ConfigurationError(
                f"schema={schema!r}: use 1 to 63 characters of a-z, 0-9 and _, not starting "
                "with a digit or pg_"
            )
        if pool_max < 1 or not 0 <= pool_min <= pool_max:
            raise ConfigurationError(
                f"pool_min={pool_min}, pool_max={pool_max}: need 0 <= pool_min <= pool_max, "
                "pool_max >= 1"
            )
        if purge_interval <= 0:
            raise ConfigurationError(f"purge_interval={purge_interval!r} must be > 0 seconds")
        if connect_timeout <= 0:
            raise ConfigurationError(f"connect_timeout={connect_timeout!r} must be > 0 seconds")
        self.dsn = dsn
        self.table_prefix = table_prefix
        self.schema = schema
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.purge_interval = purge_interval
        self.connect_timeout = connect_timeout
        self.server_settings = {"application_name": "faasflow", **(server_settings or {})}
        self._names = Names(schema, table_prefix)
        self._pool: _Pool | None = None
        self._opening = asyncio.Lock()
        self._next_purge = 0.0  # the first operation purges what earlier runs left behind
        self._purger: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """The store a ``postgresql://`` (or ``postgres://``) URL names, not yet opened.

        Raises:
            ConfigurationError: the URL is malformed or has an unknown or bad option; the
                message names it and shows the URL with its password masked.
        """
        try:
            dsn, options = parse_url(url)
            return cls(dsn, **options)
        except (ConfigurationError, ValueError) as exc:
            raise ConfigurationError(f"store URL {redact_url(url)!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where}>"

    @property
    def _where(self) -> str:
        return f"{redact_url(self.dsn)} {self._names('*')}"

    # -- lifetime ---------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and create the tables (and functions) if they are missing."""
        await self._ready("open")

    async def close(self) -> None:
        """Stop the purge and close the pool; a later operation opens a new one."""
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            await asyncio.gather(purger, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            # A server that went away must not make closing fail: terminate instead.
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except _ERRORS:  # TimeoutError is an OSError
                pool.terminate()

    async def purge_expired(self) -> int:
        """Delete every expired row now; return how many keys went."""
        total = 0
        while True:
            removed = await self._call("purge", self._purge_batch, purge=False)
            total += removed
            if removed < _PURGE_BATCH:
                return total

    async def _purge_batch(self, pool: _Pool) -> int:
        raise NotImplementedError

    def _ddl(self) -> tuple[str, list[str]]:
        """The table that carries the schema marker, and the DDL statements."""
        raise NotImplementedError

    async def _ready(self, what: str) -> _Pool:
        pool = self._pool
        if pool is not None:
            return pool
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect(what)
            return self._pool

    async def _connect(self, what: str) -> _Pool:
        pool: _Pool | None = None
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min,
                max_size=self.pool_max,
                timeout=self.connect_timeout,
                server_settings=dict(self.server_settings),
                reset=_keep_session,
            )
            async with pool.acquire() as conn:
                await self._migrate(conn)
            return pool
        except BaseException as exc:
            if pool is not None:
                pool.terminate()
            if isinstance(exc, pgerrors.ClientConfigurationError):
                raise ConfigurationError(f"PostgreSQL store {self._where}: {exc}") from exc
            if isinstance(exc, _ERRORS):
                raise self._error(what, exc) from exc
            raise

    async def _migrate(self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        """Create the tables and functions unless the marker says they are current."""
        table, statements = self._ddl()
        marker = f"faasflow {self._KIND} store schema {SCHEMA_VERSION}"
        found = await conn.fetchval("SELECT obj_description(to_regclass($1), 'pg_class')", table)
        if found == marker:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
            if self.schema and await conn.fetchval(
                "SELECT to_regnamespace($1)", self.schema
            ) is None:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(f"COMMENT ON TABLE {table} IS '{marker}'")

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail = str(exc) or type(exc).__name__
        return StoreError(f"PostgreSQL store {self._where}: {what} failed: {detail}")

    async def _call(
        self,
        what: str,
        run: Callable[[_Pool], Awaitable[T]],
        *,
        purge: bool = True,
    ) -> T:
        """``run(pool)`` with errors translated; retried if PostgreSQL aborted it."""
        pool = await self._ready(what)
        attempts = _RETRIES
        while True:
            try:
                result = await run(pool)
            except _RETRIED as exc:
                attempts -= 1
                if attempts > 0:
                    continue
                raise self._error(what, exc) from exc
            except _ERRORS as exc:
                raise self._error(what, exc) from exc
            if purge:
                self._maybe_purge()
            return result

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge or (self._purger is not None and not self._purger.done()):
            return
        self._next_purge = now + self.purge_interval
        self._purger = asyncio.get_running_loop().create_task(self._purge_quietly())

    async def _purge_quietly(self) -> None:
        try:
            await self.purge_expired()
        except StoreError as exc:
            # Expired rows read as absent anyway; the next interval tries again.
            _log.warning("%s", exc)


class PostgresStateStore(_PostgresStore, StateStore):
    """:class:`StateStore` on PostgreSQL.

    Args:
        dsn: the connection URL as asyncpg reads it (``postgresql://user@host/db``).
        table_prefix: prefix of every table and function name, so several stores can
            share one database (lower-case letters, digits and ``_``).
        schema: the schema for the tables (created if missing); by default the first
            one on the connection's ``search_path``.
        pool_min: connections kept open.
        pool_max: the most connections open at once; more concurrent operations wait.
        purge_interval: at most this often (seconds) expired rows are deleted.
        connect_timeout: seconds to wait for a new connection.
        server_settings: server parameters set on every connection.

    Raises :class:`~faasflow.errors.StoreError` when PostgreSQL or the network fails,
    naming the operation.
    """

    _KIND = "state"

    def __init__(self, dsn: str = "postgresql://localhost/faasflow", **options: Any) -> None:
        super().__init__(dsn, **options)
        self._sql = StateSql.build(self._names)

    def _ddl(self) -> tuple[str, list[str]]:
        return self._sql.marker_table, state_ddl(self._names)

    async def _purge_batch(self, pool: _Pool) -> int:
        removed: int = await pool.fetchval(self._sql.purge, _PURGE_BATCH)
        return removed

    # -- plain values -----------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call(
            "get", lambda pool: pool.fetchval(self._sql.get, key)
        )
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        rows = await self._call(
            "get_many", lambda pool: pool.fetch(self._sql.get_many, list(keys))
        )
        found: dict[str, bytes] = {row[0]: row[1] for row in rows}
        return [found.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._call("set", lambda pool: pool.execute(self._sql.put, key, value, ttl))

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        sql = self._sql
        if expected is None and new is None:  # "delete if absent": true exactly when absent
            exists: bool = await self._call(
                "compare_and_set", lambda pool: pool.fetchval(sql.exists, key)
            )
            return not exists
        if expected is None:
            done = await self._call(
                "compare_and_set", lambda pool: pool.fetchval(sql.create, key, new, ttl)
            )
        elif new is None:
            done = await self._call(
                "compare_and_set", lambda pool: pool.fetchval(sql.delete_if, key, expected)
            )
        else:
            done = await self._call(
                "compare_and_set", lambda pool: pool.fetchval(sql.swap, key, expected, new, ttl)
            )
        return done is True

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        end = prefix_end(prefix)
        sql = self._sql.keys_unbounded if end is None else self._sql.keys_bounded
        rows = await self._call("keys", lambda pool: pool.fetch(sql, prefix, end, limit))
        return [row[0] for row in rows]

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        required = dict(require or {})
        ops: list[str] = []
        values: list[bytes] = []
        ttls: list[float | None] = []
        for op in writes:
            if isinstance(op, Put):
                ops.append("P")
                values.append(op.value)
                ttls.append(op.ttl)
            elif isinstance(op, Delete):
                ops.append("D")
                values.append(b"")
                ttls.append(None)
            else:
                ops.append("A")
                values.append(op.value)
                ttls.append(op.ttl)
        args = (
            list(required), list(required.values()), ops, [op.key for op in writes], values,
            ttls,
        )
        done: bool = await self._call(
            "commit", lambda pool: pool.fetchval(self._sql.commit, *args)
        )
        return done

    # -- sets -------------------------------------------------------------------------
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        size: int = await self._call(
            "add_to_set", lambda pool: pool.fetchval(self._sql.set_add, key, member, ttl)
        )
        return size

    async def remove_from_set(self, key: str, member: str) -> bool:
        removed: bool = await self._call(
            "remove_from_set", lambda pool: pool.fetchval(self._sql.set_remove, key, member)
        )
        return removed

    async def set_members(self, key: str) -> list[str]:
        rows = await self._call(
            "set_members", lambda pool: pool.fetch(self._sql.set_members, key)
        )
        return [row[0] for row in rows]

    # -- counters and lists -----------------------------------------------------------
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Add ``by`` to the counter; without ``ttl`` the counter keeps its deadline."""
        value: int = await self._call(
            "increment", lambda pool: pool.fetchval(self._sql.increment, key, by, ttl)
        )
        return value

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._call(
            "append", lambda pool: pool.execute(self._sql.append, key, value, ttl)
        )

    async def read_list(self, key: str) -> list[bytes]:
        rows = await self._call("read_list", lambda pool: pool.fetch(self._sql.read_list, key))
        return [row[0] for row in rows]

    # -- lifetime ---------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        await self._call("delete", lambda pool: pool.execute(self._sql.delete, key))

    async def delete_prefix(self, prefix: str) -> int:
        end = prefix_end(prefix)
        count: int = await self._call(
            "delete_prefix", lambda pool: pool.fetchval(self._sql.delete_prefix, prefix, end)
        )
        return count

    async def expire(self, key: str, ttl: float) -> None:
        await self._call("expire", lambda pool: pool.execute(self._sql.expire, key, ttl))


class PostgresDataStore(_PostgresStore, DataStore):
    """:class:`DataStore` on PostgreSQL: ``bytea`` values (up to 1 GB each) with TTLs.

    Args: as :class:`PostgresStateStore`; a state store and a data store may share a
    database and a ``table_prefix`` (their tables have distinct names).
    """

    _KIND = "data"

    def __init__(self, dsn: str = "postgresql://localhost/faasflow", **options: Any) -> None:
        super().__init__(dsn, **options)
        self._sql = DataSql.build(self._names)

    def _ddl(self) -> tuple[str, list[str]]:
        return self._sql.marker_table, data_ddl(self._names)

    async def _purge_batch(self, pool: _Pool) -> int:
        status = await pool.execute(self._sql.purge, _PURGE_BATCH)
        return int(status.rpartition(" ")[2])  # "DELETE n"

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        await self._call("put", lambda pool: pool.execute(self._sql.put, key, data, ttl))

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call(
            "get", lambda pool: pool.fetchval(self._sql.get, key)
        )
        return value

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda pool: pool.execute(self._sql.delete, key))

    async def delete_prefix(self, prefix: str) -> int:
        end = prefix_end(prefix)
        sql = self._sql.delete_prefix_unbounded if end is None else self._sql.delete_prefix_bounded
        count: int = await self._call(
            "delete_prefix", lambda pool: pool.fetchval(sql, prefix, end)
        )
        return count

    async def expire(self, key: str, ttl: float) -> None:
        await self._call("expire", lambda pool: pool.execute(self._sql.expire, key, ttl))
