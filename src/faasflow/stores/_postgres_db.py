"""What both PostgreSQL stores share: the connection pool, creating or upgrading the
schema, translating errors, retrying what PostgreSQL aborted, purging expired rows, and
refusing calls larger than PostgreSQL takes.

Opening creates the tables and functions if they are missing, or brings those of an
earlier version up to date: the DDL runs under an advisory lock, so processes opening
at once do not collide, and only when the schema's marker (a comment on the marker
table) names another version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Self, TypeAlias, TypeVar

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # asyncpg-stubs types it
from asyncpg import exceptions as pgerrors

from faasflow.errors import ConfigurationError, StoreError
from faasflow.resources import AsyncResource
from faasflow.stores._postgres_schema import (
    DDL_LOCK,
    IDENTIFIER,
    MAX_PREFIX,
    SCHEMA_VERSION,
    Names,
)
from faasflow.stores._postgres_url import parse_url
from faasflow.stores._urls import redact_url

__all__ = ["PURGE_BATCH", "Pool", "PostgresBase"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

# What the client raises when the server or the network fails (TimeoutError is an OSError).
_ERRORS: Final = (pgerrors.PostgresError, pgerrors.InterfaceError,
                  pgerrors.InternalClientError, OSError)
# A deadlock or serialisation failure aborts the whole statement (each operation is one),
# so it is safe to run again; PostgreSQL picks the victim, we retry it a few times.
_RETRIED: Final = (pgerrors.DeadlockDetectedError, pgerrors.SerializationError)
_RETRIES: Final = 5
PURGE_BATCH: Final = 1000  # expired keys deleted per statement of a purge

_MESSAGE_LIMIT: Final = (1 << 30) - 1
"""PostgreSQL's limit on one value (a ``bytea``, or the array of a commit's values) and on
one message of the protocol (a call with all its parameters): 1 GiB less a byte."""

_OVERHEAD: Final = 64
"""Bytes allowed for each parameter's framing and an array element's header."""


def _size(count: int) -> str:
    return f"{count} bytes ({count / (1 << 20):.1f} MiB)"


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Reset nothing when a connection goes back to the pool.

    asyncpg's default runs ``RESET ALL``, ``UNLISTEN *`` and friends on every release:
    a second round trip per operation. These stores leave no session state behind (no
    SET, LISTEN, cursors or session-level locks), and asyncpg still rolls back a
    transaction left open before calling this.
    """


class PostgresBase(AsyncResource):
    """The pool, the schema, errors, the purge and the size limit, shared by both
    PostgreSQL stores (which set ``_KIND`` and implement ``_ddl`` and ``_purge_batch``)."""

    _KIND = ""

    max_message_bytes: int = _MESSAGE_LIMIT
    """The most bytes of values and keys one call sends: PostgreSQL's own limit (it drops
    the connection of a client that sends more); a call over it is refused first."""

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
        self._pool: Pool | None = None
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
            if removed < PURGE_BATCH:
                return total

    async def _purge_batch(self, pool: Pool) -> int:
        raise NotImplementedError

    def _ddl(self) -> tuple[str, list[str]]:
        """The table that carries the schema marker, and the DDL statements."""
        raise NotImplementedError

    async def _ready(self, what: str) -> Pool:
        pool = self._pool
        if pool is not None:
            return pool
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect(what)
            return self._pool

    async def _connect(self, what: str) -> Pool:
        pool: Pool | None = None
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

    def _check_sizes(self, what: str, sized: Iterable[tuple[str, bytes | str | None]]) -> None:
        """Refuse a call whose keys and values pass :attr:`max_message_bytes`, naming the
        key of the largest value."""
        total, largest, largest_key = 0, -1, ""
        for key, value in sized:
            size = 0 if value is None else len(value)
            total += len(key) + size + _OVERHEAD
            if size > largest:
                largest, largest_key = size, key
        if total > self.max_message_bytes:
            raise StoreError(
                f"PostgreSQL store {self._where}: {what} of {largest_key!r} refused: its "
                f"values come to {_size(total)}, the largest {_size(largest)}, more than "
                f"PostgreSQL takes in one value or one message ({_size(self.max_message_bytes)})"
                "; keep such values in a data store without that limit (S3, files)"
            )

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail = str(exc) or type(exc).__name__
        return StoreError(f"PostgreSQL store {self._where}: {what} failed: {detail}")

    async def _call(
        self,
        what: str,
        run: Callable[[Pool], Awaitable[T]],
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
