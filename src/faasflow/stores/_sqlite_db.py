"""The SQLite stores' connection: one per store, shared by its tasks and threads.

Opened on first use (creating the schema), guarded by a lock, forgotten in a forked
child (which opens its own), and wrapped in :class:`Session`, which opens and commits a
transaction, runs the lazy purge of expired rows after writes, and raises
:class:`sqlite3.Error` as :class:`~faasflow.errors.StoreError` naming the file. What the
stores do with it is :mod:`faasflow.stores.sqlite`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from types import TracebackType

from faasflow.errors import ConfigurationError, StoreError

__all__ = ["Database", "Session"]

# A failed purge is the store's to report: under its logger's name.
_log = logging.getLogger("faasflow.stores.sqlite")


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; a failure here must not hide the error being handled."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()


_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for database in list(_databases):
        database.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Database:
    """One lazily opened connection, its lock, its schema and the lazy purge."""

    def __init__(
        self,
        path: str,
        *,
        schema: Sequence[str],
        tables: Sequence[str],
        synchronous: str,
        busy_timeout: float,
        purge_interval: float,
    ) -> None:
        mode = synchronous.upper()
        if mode not in ("NORMAL", "FULL"):
            raise ConfigurationError(
                f"synchronous={synchronous!r} for SQLite store {path!r}: "
                "expected 'NORMAL' or 'FULL'"
            )
        if busy_timeout < 0:
            raise ConfigurationError(f"busy_timeout={busy_timeout!r} must be >= 0")
        self.path = os.fspath(path)
        self.schema = tuple(schema)
        self.purge_sql = tuple(f"DELETE FROM {table} WHERE expires_at <= ?" for table in tables)
        self.synchronous = mode
        self.busy_timeout = busy_timeout
        self.purge_interval = purge_interval
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.next_purge = 0.0  # the first write purges what earlier runs left behind
        # Connections inherited over fork() are kept (never closed or used) in the child.
        self._inherited: list[sqlite3.Connection] = []
        _databases.add(self)

    def error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"SQLite store {self.path!r}: {what} failed: {exc}")

    def connect(self) -> sqlite3.Connection:
        """The connection, opened (with the schema created) on first use; under the lock."""
        conn = self.conn
        if conn is not None:
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in self.schema:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def close(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    raise self.error("close", exc) from exc

    def purge(self, conn: sqlite3.Connection) -> int:
        """Delete every expired row of this store's tables; under the lock."""
        now = time.time()
        removed = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in self.purge_sql:
                removed += conn.execute(statement, (now,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        self.next_purge = time.monotonic() + self.purge_interval
        return removed

    def maybe_purge(self, conn: sqlite3.Connection) -> None:
        if time.monotonic() < self.next_purge:
            return
        try:
            self.purge(conn)
        except sqlite3.Error as exc:
            # The caller's write has committed; a failed clean-up is retried later.
            self.next_purge = time.monotonic() + self.purge_interval
            _log.warning("SQLite store %r: purging expired rows failed: %s", self.path, exc)

    def forget_after_fork(self) -> None:
        self.lock = threading.Lock()
        if self.conn is not None:
            self._inherited.append(self.conn)
            self.conn = None

    def session(self, what: str, *, write: bool = False, begin: str = "") -> Session:
        return Session(self, what, write, begin)


class Session:
    """``with database.session(...) as conn``: lock, connect, transaction, errors.

    ``begin`` is the statement opening a transaction (``"BEGIN IMMEDIATE"`` for a
    read-modify-write) or ``""`` for one autocommit statement. ``write`` makes the
    session run the lazy purge after it commits. Any exception rolls back; an
    :class:`sqlite3.Error` is raised as :class:`StoreError`.
    """

    __slots__ = ("_begin", "_db", "_what", "_write")

    def __init__(self, db: Database, what: str, write: bool, begin: str) -> None:
        self._db = db
        self._what = what
        self._write = write
        self._begin = begin

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        db.lock.acquire()
        try:
            conn = db.connect()
            if self._begin:
                conn.execute(self._begin)
        except sqlite3.Error as exc:
            db.lock.release()
            raise db.error(self._what, exc) from exc
        except BaseException:
            db.lock.release()
            raise
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db = self._db
        conn = db.conn
        try:
            if conn is None:
                return
            if exc is None:
                if self._begin:
                    conn.execute("COMMIT")
                if self._write:
                    db.maybe_purge(conn)
                return
            _rollback(conn)
        except sqlite3.Error as failure:  # COMMIT failed
            if conn is not None:
                _rollback(conn)
            raise db.error(self._what, failure) from failure
        finally:
            db.lock.release()
        if isinstance(exc, sqlite3.Error):
            raise db.error(self._what, exc) from exc
