"""PostgreSQL stores (asyncpg): shared state and data for several processes and hosts.

Each store keeps one asyncpg connection pool (:mod:`faasflow.stores._postgres_db`).
Opening a store creates its tables and functions if they are missing, or brings those
of an earlier version up to date (``CREATE … IF NOT EXISTS`` and migration steps under
an advisory lock, so processes opening at once do not collide); the layout is described
in :mod:`faasflow.stores._postgres_schema`, the state store's locking, which makes each
operation atomic, in :mod:`faasflow.stores._postgres_state`.

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
raised as :class:`~faasflow.errors.StoreError` naming the operation; so is a call whose
values would pass PostgreSQL's 1 GB limit on one value or one message, before it is
sent (the server would drop the connection).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from faasflow.stores._keyrange import prefix_end
from faasflow.stores._postgres_db import PURGE_BATCH, Pool, PostgresBase
from faasflow.stores._postgres_schema import DataSql, data_ddl
from faasflow.stores._postgres_state import StateSql, state_ddl
from faasflow.stores.base import (
    Append,
    DataStore,
    Delete,
    Entry,
    IndexPut,
    Put,
    StateStore,
    WriteOp,
)

__all__ = ["PostgresDataStore", "PostgresStateStore"]


class PostgresStateStore(PostgresBase, StateStore):
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

    async def _purge_batch(self, pool: Pool) -> int:
        removed: int = await pool.fetchval(self._sql.purge, PURGE_BATCH)
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
        self._check_sizes("set", [(key, value)])
        await self._call("set", lambda pool: pool.execute(self._sql.put, key, value, ttl))

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        self._check_sizes("compare_and_set", [(key, expected), (key, new)])
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
        self._check_sizes("commit", [
            *required.items(),
            *((op.key, op.value) for op in writes if isinstance(op, Put | Append)),
        ])
        ops: list[str] = []
        keys: list[str] = []
        values: list[bytes] = []
        ttls: list[float | None] = []
        members: list[str | None] = []
        scores: list[float | None] = []
        for op in writes:
            member: str | None = None
            score: float | None = None
            if isinstance(op, Put | Append):
                ops.append("P" if isinstance(op, Put) else "A")
                keys.append(op.key)
                values.append(op.value)
                ttls.append(op.ttl)
            elif isinstance(op, Delete):
                ops.append("D")
                keys.append(op.key)
                values.append(b"")
                ttls.append(None)
            else:
                if isinstance(op, IndexPut):
                    if math.isnan(op.score):
                        raise ValueError("an index score must be a number, not NaN")
                    ops.append("X")
                    score = op.score
                    ttls.append(op.ttl)
                else:
                    ops.append("Z")
                    ttls.append(None)
                keys.append(op.index)
                values.append(b"")
                member = op.member
            members.append(member)
            scores.append(score)
        args = (list(required), list(required.values()), ops, keys, values, ttls, members,
                scores)
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
        self._check_sizes("append", [(key, value)])
        await self._call(
            "append", lambda pool: pool.execute(self._sql.append, key, value, ttl)
        )

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        """``items[start:stop]``: an index range over the items' positions."""
        rows = await self._call(
            "read_list", lambda pool: pool.fetch(self._sql.read_list, key, start, stop)
        )
        return [row[0] for row in rows]

    async def list_length(self, key: str) -> int:
        length: int | None = await self._call(
            "list_length", lambda pool: pool.fetchval(self._sql.list_length, key)
        )
        return length or 0

    # -- ordered indexes --------------------------------------------------------------
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
        sql = self._sql.index_ranges[after is not None, before is not None, descending]
        args: list[object] = [index, *(after or ()), *(before or ()), limit]
        rows = await self._call("index_range", lambda pool: pool.fetch(sql, *args))
        return [(float(row[0]), row[1]) for row in rows]

    async def index_size(self, index: str) -> int:
        """How many members ``index`` holds: counted, so it costs the index's size."""
        size: int = await self._call(
            "index_size", lambda pool: pool.fetchval(self._sql.index_size, index)
        )
        return size

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


class PostgresDataStore(PostgresBase, DataStore):
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

    async def _purge_batch(self, pool: Pool) -> int:
        status = await pool.execute(self._sql.purge, PURGE_BATCH)
        return int(status.rpartition(" ")[2])  # "DELETE n"

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        self._check_sizes("put", [(key, data)])
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
