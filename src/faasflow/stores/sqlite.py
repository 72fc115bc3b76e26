"""SQLite stores: the embedded default, one file on the local disk.

Durable across a killed process and safe for several processes on one machine:

* the database runs in WAL mode, so readers never block the writer and a commit is one
  append to the ``-wal`` file;
* ``synchronous="NORMAL"`` (the default) survives the process crashing or being killed at
  any point, but a power loss or kernel crash may lose the last few commits (never
  corrupting the file); ``synchronous="FULL"`` also fsyncs every commit, which makes
  each one survive a power loss at the price of a disk flush per write;
* every read-modify-write runs in a ``BEGIN IMMEDIATE`` transaction (or is one atomic
  statement), and ``busy_timeout`` makes a process wait for another's write lock instead
  of failing.

Each store object keeps one connection, opened on first use and called synchronously
from the caller's thread: an SQLite statement on a local file takes a few microseconds,
far less than handing it to a worker thread would cost. No operation awaits while it
holds a transaction, so on one event loop each operation is atomic like the in-memory
store's. The flip side is that waiting for another *process's* write lock (at most
``busy_timeout`` seconds) blocks the event loop. A lock makes a store object safe to
share between threads, and a process forked with an open store reconnects in the child.

Expiry uses wall-clock time (``time.time()``), so every process agrees on it. Expired
rows read as absent and are deleted lazily: the first write after ``purge_interval``
seconds deletes every expired row of the store's tables.

A :class:`SqliteStateStore` and a :class:`SqliteDataStore` may share one file: their
tables have distinct names (``ff_state_*`` and ``ff_data_*``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from faasflow.errors import ConfigurationError
from faasflow.stores._keyrange import prefix_end
from faasflow.stores._sqlite_db import Database
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

__all__ = ["SqliteDataStore", "SqliteStateStore"]

Synchronous = Literal["NORMAL", "FULL"]

# A live row: no deadline, or a deadline still ahead of the ``?`` bound to "now".
_LIVE: Final = "(expires_at IS NULL OR expires_at > ?)"
# Prefix matches are a key range ``prefix <= key < _prefix_end(prefix)`` so that the
# primary-key index serves them (``LIKE`` is case-insensitive and has wildcards).
_RANGE: Final = "key >= ? AND key < ?"


def _prefix_end(prefix: str) -> str | bytes:
    """The upper bound of ``prefix``'s key range (:func:`~faasflow.stores._keyrange.prefix_end`).

    When there is none this returns an empty BLOB: SQLite sorts every TEXT value before
    every BLOB, so ``key < x''`` holds for all keys.
    """
    end = prefix_end(prefix)
    return b"" if end is None else end


def _deadline(ttl: float | None, now: float) -> float | None:
    return None if ttl is None else now + ttl


class _SqliteStore:
    """What both SQLite stores share: the options, open, close and purge."""

    _SCHEMA: tuple[str, ...] = ()
    _TABLES: tuple[str, ...] = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        purge_interval: float = 5.0,
    ) -> None:
        self._db = Database(
            os.fspath(path),
            schema=self._SCHEMA,
            tables=self._TABLES,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            purge_interval=purge_interval,
        )

    @classmethod
    def from_url(cls, url: str) -> Self:
        """The store an ``sqlite://`` URL names, not yet opened.

        URLs read as SQLAlchemy's do: the path is everything after ``sqlite:///``, so
        ``sqlite:///x.db`` is the relative path ``x.db``, ``sqlite:////tmp/x.db`` the
        absolute path ``/tmp/x.db``, and ``sqlite://`` alone (or ``sqlite:///:memory:``)
        a private in-memory database. The path is percent-decoded. Options:
        ``?synchronous=FULL`` and ``?busy_timeout=10`` (seconds).

        Raises:
            ConfigurationError: the URL has a host or a fragment, or an unknown or bad
                option; the message names it.
        """
        parts = urlsplit(url)
        if parts.netloc:
            raise ConfigurationError(
                f"store URL {url!r}: an SQLite URL has no host; "
                "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        if parts.fragment:
            raise ConfigurationError(f"store URL {url!r}: unexpected '#' fragment")
        path = unquote(parts.path[1:]) if parts.path else ""
        options: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "synchronous":
                if value.upper() not in ("NORMAL", "FULL"):
                    raise ConfigurationError(
                        f"store URL {url!r}: synchronous={value!r}, expected NORMAL or FULL"
                    )
                options[name] = value.upper()
            elif name == "busy_timeout":
                try:
                    options[name] = float(value)
                except ValueError:
                    raise ConfigurationError(
                        f"store URL {url!r}: busy_timeout={value!r} is not a number of seconds"
                    ) from None
            else:
                raise ConfigurationError(
                    f"store URL {url!r}: unknown option {name!r} "
                    "(known: busy_timeout, synchronous)"
                )
        return cls(path or ":memory:", **options)

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self._db.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._db.path!r})"

    async def open(self) -> None:
        """Open the connection now (creating the file and tables) rather than on first use."""
        with self._db.session("open"):
            pass

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        self._db.close()

    async def purge_expired(self) -> int:
        """Delete every expired row now; return how many rows went."""
        with self._db.session("purge") as conn:
            return self._db.purge(conn)


# -- the state store -------------------------------------------------------------------

_V: Final = "ff_state_values"
_S: Final = "ff_state_sets"
_L: Final = "ff_state_lists"
_X: Final = "ff_state_indexes"

# Every row of one set or list carries the same expires_at: the key's deadline.
_STATE_SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS {_V} (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {_S} (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        member TEXT NOT NULL,
        expires_at REAL,
        UNIQUE (key, member)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {_L} (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_at REAL
    )""",
    f"CREATE INDEX IF NOT EXISTS {_L}_key ON {_L} (key)",
    f"""CREATE TABLE IF NOT EXISTS {_X} (
        key TEXT NOT NULL,
        member TEXT NOT NULL,
        score REAL NOT NULL,
        expires_at REAL,
        PRIMARY KEY (key, member)
    ) WITHOUT ROWID""",
    f"CREATE INDEX IF NOT EXISTS {_X}_order ON {_X} (key, score, member)",
    *(
        f"CREATE INDEX IF NOT EXISTS {table}_expiry ON {table} (expires_at) "
        "WHERE expires_at IS NOT NULL"
        for table in (_V, _S, _L, _X)
    ),
)

_V_GET: Final = f"SELECT value FROM {_V} WHERE key = ? AND {_LIVE}"
_V_GET_ROW: Final = f"SELECT value, expires_at FROM {_V} WHERE key = ?"
_V_PUT: Final = (
    f"INSERT INTO {_V} (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
# Create-if-absent: insert, or take over a row whose deadline has passed.
_V_CREATE: Final = (
    f"INSERT INTO {_V} (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
    f"WHERE {_V}.expires_at IS NOT NULL AND {_V}.expires_at <= ?"
)
_V_SWAP: Final = (
    f"UPDATE {_V} SET value = ?, expires_at = ? WHERE key = ? AND value = ? AND {_LIVE}"
)
_V_DELETE_IF: Final = f"DELETE FROM {_V} WHERE key = ? AND value = ? AND {_LIVE}"
_V_KEYS: Final = f"SELECT key FROM {_V} WHERE {_RANGE} AND {_LIVE} ORDER BY key LIMIT ?"

# (read the deadline, drop the expired collection, move the deadline) of sets, of lists
_S_DEADLINE: Final = (
    f"SELECT expires_at FROM {_S} WHERE key = ? LIMIT 1",
    f"DELETE FROM {_S} WHERE key = ?",
    f"UPDATE {_S} SET expires_at = ? WHERE key = ?",
)
_S_ADD: Final = (
    f"INSERT INTO {_S} (key, member, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key, member) DO NOTHING"
)
_S_COUNT: Final = f"SELECT count(*) FROM {_S} WHERE key = ?"
_S_REMOVE: Final = f"DELETE FROM {_S} WHERE key = ? AND member = ? AND {_LIVE}"
_S_MEMBERS: Final = f"SELECT member FROM {_S} WHERE key = ? AND {_LIVE} ORDER BY seq"

_L_DEADLINE: Final = (
    f"SELECT expires_at FROM {_L} WHERE key = ? LIMIT 1",
    f"DELETE FROM {_L} WHERE key = ?",
    f"UPDATE {_L} SET expires_at = ? WHERE key = ?",
)
_L_ADD: Final = f"INSERT INTO {_L} (key, value, expires_at) VALUES (?, ?, ?)"
_L_PAGE: Final = (
    f"SELECT value FROM {_L} WHERE key = ? AND {_LIVE} ORDER BY seq LIMIT ? OFFSET ?"
)
_L_COUNT: Final = f"SELECT count(*) FROM {_L} WHERE key = ? AND {_LIVE}"
_L_TAIL: Final = (
    f"SELECT value FROM {_L} WHERE key = ? AND {_LIVE} ORDER BY seq DESC LIMIT ?"
)

_X_DEADLINE: Final = (
    f"SELECT expires_at FROM {_X} WHERE key = ? LIMIT 1",
    f"DELETE FROM {_X} WHERE key = ?",
    f"UPDATE {_X} SET expires_at = ? WHERE key = ?",
)
_X_PUT: Final = (
    f"INSERT INTO {_X} (key, member, score, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key, member) DO UPDATE SET score = excluded.score"
)
_X_DROP: Final = f"DELETE FROM {_X} WHERE key = ? AND member = ?"
_X_COUNT: Final = f"SELECT count(*) FROM {_X} WHERE key = ? AND {_LIVE}"

_TABLES_ALL: Final = (_V, _S, _L, _X)
_DELETE: Final = tuple(f"DELETE FROM {table} WHERE key = ?" for table in _TABLES_ALL)
_EXPIRE: Final = tuple(
    f"UPDATE {table} SET expires_at = ? WHERE key = ? AND {_LIVE}" for table in _TABLES_ALL
)
_COUNT_PREFIX: Final = (
    f"SELECT count(*) FROM {_V} WHERE {_RANGE} AND {_LIVE}",
    *(f"SELECT count(DISTINCT key) FROM {table} WHERE {_RANGE} AND {_LIVE}"
      for table in (_S, _L, _X)),
)
_DELETE_PREFIX: Final = tuple(f"DELETE FROM {table} WHERE {_RANGE}" for table in _TABLES_ALL)


def _collection_deadline(
    conn: sqlite3.Connection,
    sql: tuple[str, str, str],
    key: str,
    ttl: float | None,
    now: float,
) -> float | None:
    """Prepare the set or list at ``key`` for one more row; return the row's deadline.

    An expired collection is deleted, so the row starts a new one. A ``ttl`` moves the
    deadline of every existing row; without one the new row keeps the collection's.
    """
    head_sql, drop_sql, retime_sql = sql
    head = conn.execute(head_sql, (key,)).fetchone()
    if head is None:
        return _deadline(ttl, now)
    current: float | None = head[0]
    if current is not None and current <= now:
        conn.execute(drop_sql, (key,))
        return _deadline(ttl, now)
    if ttl is None:
        return current
    deadline = now + ttl
    conn.execute(retime_sql, (deadline, key))
    return deadline


class SqliteStateStore(_SqliteStore, StateStore):
    """:class:`StateStore` in an SQLite file: the embedded default.

    Args:
        path: the database file, created if missing, or ``":memory:"`` for a private
            in-memory database (gone when the store closes).
        synchronous: ``"NORMAL"`` (default) survives a killed process but a power loss
            may lose the last commits; ``"FULL"`` fsyncs every commit.
        busy_timeout: seconds to wait for another process's write lock before failing.
        purge_interval: at most this often (seconds) a write deletes expired rows.

    Raises :class:`~faasflow.errors.StoreError` when SQLite fails, naming the file.
    """

    _SCHEMA = _STATE_SCHEMA
    _TABLES = _TABLES_ALL

    # -- plain values ---------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        with self._db.session("get") as conn:
            row = conn.execute(_V_GET, (key, time.time())).fetchone()
        if row is None:
            return None
        value: bytes = row[0]
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # One read transaction: the values come from a single snapshot.
        values: list[bytes | None] = []
        with self._db.session("get_many", begin="BEGIN" if len(keys) > 1 else "") as conn:
            now = time.time()
            for key in keys:
                row = conn.execute(_V_GET, (key, now)).fetchone()
                values.append(None if row is None else row[0])
        return values

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._db.session("set", write=True) as conn:
            conn.execute(_V_PUT, (key, value, _deadline(ttl, time.time())))

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes | None, *, ttl: float | None = None
    ) -> bool:
        with self._db.session("compare_and_set", write=True) as conn:
            now = time.time()
            if expected is None:
                if new is None:  # "delete if absent": succeeds exactly when absent
                    return conn.execute(_V_GET, (key, now)).fetchone() is None
                cursor = conn.execute(_V_CREATE, (key, new, _deadline(ttl, now), now))
            elif new is None:
                cursor = conn.execute(_V_DELETE_IF, (key, expected, now))
            else:
                cursor = conn.execute(_V_SWAP, (new, _deadline(ttl, now), key, expected, now))
            return cursor.rowcount == 1

    async def commit(
        self, writes: Sequence[WriteOp], *, require: Mapping[str, bytes | None] | None = None
    ) -> bool:
        # One IMMEDIATE transaction: one WAL commit for the whole step, and the checks
        # in ``require`` cannot be raced by another process between check and write.
        with self._db.session("commit", write=True, begin="BEGIN IMMEDIATE") as conn:
            now = time.time()
            for key, expected in (require or {}).items():
                row = conn.execute(_V_GET, (key, now)).fetchone()
                if (None if row is None else row[0]) != expected:
                    return False
            for op in writes:
                if isinstance(op, Put):
                    conn.execute(_V_PUT, (op.key, op.value, _deadline(op.ttl, now)))
                elif isinstance(op, Delete):
                    conn.execute(_DELETE[0], (op.key,))
                elif isinstance(op, Append):
                    deadline = _collection_deadline(conn, _L_DEADLINE, op.key, op.ttl, now)
                    conn.execute(_L_ADD, (op.key, op.value, deadline))
                elif isinstance(op, IndexPut):
                    deadline = _collection_deadline(conn, _X_DEADLINE, op.index, op.ttl, now)
                    conn.execute(_X_PUT, (op.index, op.member, op.score, deadline))
                else:
                    conn.execute(_X_DROP, (op.index, op.member))
        return True

    async def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        with self._db.session("keys") as conn:
            rows = conn.execute(
                _V_KEYS, (prefix, _prefix_end(prefix), time.time(), -1 if limit is None else limit)
            ).fetchall()
        return [row[0] for row in rows]

    # -- sets -----------------------------------------------------------------------
    async def add_to_set(self, key: str, member: str, *, ttl: float | None = None) -> int:
        with self._db.session("add_to_set", write=True, begin="BEGIN IMMEDIATE") as conn:
            deadline = _collection_deadline(conn, _S_DEADLINE, key, ttl, time.time())
            conn.execute(_S_ADD, (key, member, deadline))
            size: int = conn.execute(_S_COUNT, (key,)).fetchone()[0]
        return size

    async def remove_from_set(self, key: str, member: str) -> bool:
        with self._db.session("remove_from_set", write=True) as conn:
            return conn.execute(_S_REMOVE, (key, member, time.time())).rowcount == 1

    async def set_members(self, key: str) -> list[str]:
        with self._db.session("set_members") as conn:
            rows = conn.execute(_S_MEMBERS, (key, time.time())).fetchall()
        return [row[0] for row in rows]

    # -- counters and lists ---------------------------------------------------------
    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Add ``by`` to the counter; without ``ttl`` the counter keeps its deadline."""
        with self._db.session("increment", write=True, begin="BEGIN IMMEDIATE") as conn:
            now = time.time()
            row = conn.execute(_V_GET_ROW, (key,)).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                value, deadline = by, _deadline(ttl, now)
            else:
                value = int(row[0]) + by
                deadline = row[1] if ttl is None else now + ttl
            conn.execute(_V_PUT, (key, str(value).encode(), deadline))
        return value

    async def append(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._db.session("append", write=True, begin="BEGIN IMMEDIATE") as conn:
            deadline = _collection_deadline(conn, _L_DEADLINE, key, ttl, time.time())
            conn.execute(_L_ADD, (key, value, deadline))

    async def read_list(self, key: str, *, start: int = 0, stop: int | None = None) -> list[bytes]:
        with self._db.session("read_list", begin="BEGIN") as conn:
            now = time.time()
            if start < 0 and stop is None:
                # The last items (a history's latest event): from the end, by the index.
                rows = conn.execute(_L_TAIL, (key, now, -start)).fetchall()
                return [row[0] for row in reversed(rows)]
            if start < 0 or (stop is not None and stop < 0):
                length = conn.execute(_L_COUNT, (key, now)).fetchone()[0]
                start, stop, _ = slice(start, stop).indices(length)
            count = -1 if stop is None else max(0, stop - start)
            rows = conn.execute(_L_PAGE, (key, now, count, start)).fetchall()
        return [row[0] for row in rows]

    async def list_length(self, key: str) -> int:
        with self._db.session("list_length") as conn:
            length: int = conn.execute(_L_COUNT, (key, time.time())).fetchone()[0]
        return length

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
        where = ["key = ?", _LIVE]
        params: list[object] = [index, time.time()]
        if after is not None:
            where.append("(score, member) > (?, ?)")
            params += after
        if before is not None:
            where.append("(score, member) < (?, ?)")
            params += before
        order = "DESC" if descending else "ASC"
        sql = (f"SELECT score, member FROM {_X} WHERE {' AND '.join(where)} "
               f"ORDER BY score {order}, member {order} LIMIT ?")
        with self._db.session("index_range") as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [(float(score), member) for score, member in rows]

    async def index_size(self, index: str) -> int:
        with self._db.session("index_size") as conn:
            size: int = conn.execute(_X_COUNT, (index, time.time())).fetchone()[0]
        return size

    # -- lifetime -------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        with self._db.session("delete", write=True, begin="BEGIN IMMEDIATE") as conn:
            for statement in _DELETE:
                conn.execute(statement, (key,))

    async def delete_prefix(self, prefix: str) -> int:
        with self._db.session("delete_prefix", write=True, begin="BEGIN IMMEDIATE") as conn:
            bounds = (prefix, _prefix_end(prefix))
            now = time.time()
            count = 0
            for statement in _COUNT_PREFIX:
                count += conn.execute(statement, (*bounds, now)).fetchone()[0]
            for statement in _DELETE_PREFIX:
                conn.execute(statement, bounds)
        return count

    async def expire(self, key: str, ttl: float) -> None:
        with self._db.session("expire", write=True, begin="BEGIN IMMEDIATE") as conn:
            now = time.time()
            for statement in _EXPIRE:
                conn.execute(statement, (now + ttl, key, now))


# -- the data store --------------------------------------------------------------------

_B: Final = "ff_data_blobs"

_DATA_SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS {_B} (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        expires_at REAL
    )""",
    f"CREATE INDEX IF NOT EXISTS {_B}_expiry ON {_B} (expires_at) WHERE expires_at IS NOT NULL",
)

_B_GET: Final = f"SELECT value FROM {_B} WHERE key = ? AND {_LIVE}"
_B_PUT: Final = (
    f"INSERT INTO {_B} (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_B_DELETE: Final = f"DELETE FROM {_B} WHERE key = ?"
_B_COUNT_PREFIX: Final = f"SELECT count(*) FROM {_B} WHERE {_RANGE} AND {_LIVE}"
_B_DELETE_PREFIX: Final = f"DELETE FROM {_B} WHERE {_RANGE}"
_B_EXPIRE: Final = f"UPDATE {_B} SET expires_at = ? WHERE key = ? AND {_LIVE}"


class SqliteDataStore(_SqliteStore, DataStore):
    """:class:`DataStore` in an SQLite file: the embedded default.

    Takes the same arguments as :class:`SqliteStateStore` and may share its file.
    ``put`` is durable against a killed process when it returns; against a power loss
    only with ``synchronous="FULL"``.
    """

    _SCHEMA = _DATA_SCHEMA
    _TABLES = (_B,)

    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        with self._db.session("put", write=True) as conn:
            conn.execute(_B_PUT, (key, data, _deadline(ttl, time.time())))

    async def get(self, key: str) -> bytes | None:
        with self._db.session("get") as conn:
            row = conn.execute(_B_GET, (key, time.time())).fetchone()
        if row is None:
            return None
        value: bytes = row[0]
        return value

    async def delete(self, key: str) -> None:
        with self._db.session("delete", write=True) as conn:
            conn.execute(_B_DELETE, (key,))

    async def delete_prefix(self, prefix: str) -> int:
        with self._db.session("delete_prefix", write=True, begin="BEGIN IMMEDIATE") as conn:
            bounds = (prefix, _prefix_end(prefix))
            count: int = conn.execute(_B_COUNT_PREFIX, (*bounds, time.time())).fetchone()[0]
            conn.execute(_B_DELETE_PREFIX, bounds)
        return count

    async def expire(self, key: str, ttl: float) -> None:
        with self._db.session("expire", write=True) as conn:
            now = time.time()
            conn.execute(_B_EXPIRE, (now + ttl, key, now))
