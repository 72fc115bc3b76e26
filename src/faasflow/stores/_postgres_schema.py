"""The tables of the PostgreSQL stores, the data store's statements, and the names and
SQL fragments both stores share.

Every name starts with the store's ``table_prefix`` (and sits in its ``schema`` when one
is given), so several stores share one database::

    {p}values         plain values and counters: key, value bytea, expires_at
    {p}set_heads      one row per set: its size and deadline; adders lock it
    {p}set_members    key, member, seq (first-add order, from a sequence)
    {p}list_heads     one row per list: its length and deadline; appenders lock it
    {p}list_items     key, pos (0, 1, … in append order), seq, value
    {p}index_heads    one row per ordered index: its deadline; writers share its lock
    {p}index_entries  key, member, score; ordered by (key, score, member)
    {p}blobs          the data store: key, value bytea, expires_at

Keys and members are ``text COLLATE "C"``: compared as bytes, so they sort as Python
sorts ``str`` and a prefix is an index range. ``expires_at`` is compared with the
server's ``now()``, so every client agrees on what has expired; ``NULL`` means never.

The state store's functions and statements are :mod:`faasflow.stores._postgres_state`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DDL_LOCK",
    "IDENTIFIER",
    "LIVE",
    "MAX_PREFIX",
    "SCHEMA_VERSION",
    "DataSql",
    "Names",
    "data_ddl",
    "key_range",
    "state_tables",
    "ttl_deadline",
]

# Bumped when the tables or functions change: a store whose marker differs runs the DDL,
# which brings the tables of any earlier version up to date (it is idempotent).
SCHEMA_VERSION: Final = 2
# The advisory lock taken around the DDL, so that processes opening stores at once do not
# race on CREATE (which can fail with a duplicate key in the catalogues).
DDL_LOCK: Final = 0x66616173666C6F77  # "faasflow"

IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]*")
MAX_PREFIX: Final = 40  # the longest suffix ("index_entries_order") must fit in 63 bytes

LIVE: Final = "(expires_at IS NULL OR expires_at > now())"
DEADLINE: Final = "now() + {} * interval '1 second'"  # NULL seconds give a NULL deadline


def ttl_deadline(param: str) -> str:
    """The SQL deadline ``ttl`` seconds from now (``NULL`` when the TTL is ``NULL``)."""
    return DEADLINE.format(f"{param}::float8")


@dataclass(frozen=True)
class Names:
    """The qualified names of one store's objects."""

    schema: str | None
    prefix: str

    def __call__(self, name: str) -> str:
        base = f"{self.prefix}{name}"
        return f"{self.schema}.{base}" if self.schema else base


def key_range(low: str, high: str | None) -> str:
    """The condition ``low <= key < high`` (no upper bound when ``high`` is ``None``)."""
    return f"key >= {low}" if high is None else f"key >= {low} AND key < {high}"


# -- the state store ---------------------------------------------------------------------


def state_tables(n: Names) -> list[str]:
    """The statements creating the state store's tables, or bringing version 1 tables up
    to date (idempotent)."""
    v, sh, sm, lh, li = (
        n("values"), n("set_heads"), n("set_members"), n("list_heads"), n("list_items")
    )
    ih, ie = n("index_heads"), n("index_entries")
    return [
        f"""CREATE TABLE IF NOT EXISTS {v} (
            key text COLLATE "C" PRIMARY KEY,
            value bytea NOT NULL,
            expires_at timestamptz)""",
        f"""CREATE TABLE IF NOT EXISTS {sh} (
            key text COLLATE "C" PRIMARY KEY,
            size integer NOT NULL,
            expires_at timestamptz)""",
        f"""CREATE TABLE IF NOT EXISTS {sm} (
            key text COLLATE "C" NOT NULL,
            member text NOT NULL,
            seq bigserial NOT NULL,
            PRIMARY KEY (key, member))""",
        f"CREATE INDEX IF NOT EXISTS {n.prefix}set_members_order ON {sm} (key, seq)",
        f"""CREATE TABLE IF NOT EXISTS {lh} (
            key text COLLATE "C" PRIMARY KEY,
            expires_at timestamptz,
            size bigint NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS {li} (
            key text COLLATE "C" NOT NULL,
            seq bigserial NOT NULL,
            pos bigint NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (key, seq))""",
        # Version 1 lists had neither positions nor lengths: number their items in
        # append order (seq), count them, then make positions required and unique.
        f"ALTER TABLE {lh} ADD COLUMN IF NOT EXISTS size bigint NOT NULL DEFAULT 0",
        f"ALTER TABLE {li} ADD COLUMN IF NOT EXISTS pos bigint",
        f"""UPDATE {li} AS i SET pos = numbered.pos FROM (
              SELECT key, seq, row_number() OVER (PARTITION BY key ORDER BY seq) - 1 AS pos
              FROM {li} WHERE key IN (SELECT key FROM {li} WHERE pos IS NULL)) AS numbered
            WHERE i.key = numbered.key AND i.seq = numbered.seq""",
        f"""UPDATE {lh} AS h SET size = counted.n FROM (
              SELECT key, count(*) AS n FROM {li} GROUP BY key) AS counted
            WHERE h.key = counted.key AND h.size <> counted.n""",
        f"ALTER TABLE {li} ALTER COLUMN pos SET NOT NULL",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {n.prefix}list_items_pos ON {li} (key, pos)",
        f"""CREATE TABLE IF NOT EXISTS {ih} (
            key text COLLATE "C" PRIMARY KEY,
            expires_at timestamptz)""",
        f"""CREATE TABLE IF NOT EXISTS {ie} (
            key text COLLATE "C" NOT NULL,
            member text COLLATE "C" NOT NULL,
            score float8 NOT NULL,
            PRIMARY KEY (key, member))""",
        f"CREATE INDEX IF NOT EXISTS {n.prefix}index_entries_order ON {ie} (key, score, member)",
        *(
            f"CREATE INDEX IF NOT EXISTS {n.prefix}{name}_expiry ON {n(name)} (expires_at) "
            "WHERE expires_at IS NOT NULL"
            for name in ("values", "set_heads", "list_heads", "index_heads")
        ),
    ]



# -- the data store ----------------------------------------------------------------------


def data_ddl(n: Names) -> list[str]:
    """The statements creating the data store's table (idempotent)."""
    b = n("blobs")
    return [
        f"""CREATE TABLE IF NOT EXISTS {b} (
            key text COLLATE "C" PRIMARY KEY,
            value bytea NOT NULL,
            expires_at timestamptz)""",
        f"CREATE INDEX IF NOT EXISTS {n.prefix}blobs_expiry ON {b} (expires_at) "
        "WHERE expires_at IS NOT NULL",
    ]


@dataclass(frozen=True)
class DataSql:
    """The data store's statements, for one set of names."""

    marker_table: str
    get: str
    put: str
    delete: str
    delete_prefix_bounded: str
    delete_prefix_unbounded: str
    expire: str
    purge: str

    @classmethod
    def build(cls, n: Names) -> DataSql:
        """Format every statement with the store's table name."""
        b = n("blobs")
        delete_prefix = (
            f"WITH d AS (DELETE FROM {b} WHERE {{}} RETURNING expires_at) "
            f"SELECT count(*) FILTER (WHERE {LIVE}) FROM d"
        )
        return cls(
            marker_table=b,
            get=f"SELECT value FROM {b} WHERE key = $1 AND {LIVE}",
            put=(
                f"INSERT INTO {b} (key, value, expires_at) VALUES ($1, $2, {ttl_deadline('$3')}) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                "expires_at = EXCLUDED.expires_at"
            ),
            delete=f"DELETE FROM {b} WHERE key = $1",
            delete_prefix_bounded=delete_prefix.format(key_range("$1", "$2")),
            delete_prefix_unbounded=delete_prefix.format("key >= $1 AND $2::text IS NULL"),
            expire=(
                f"UPDATE {b} SET expires_at = {ttl_deadline('$2')} WHERE key = $1 AND {LIVE}"
            ),
            purge=(
                f"DELETE FROM {b} WHERE key IN "
                f"(SELECT key FROM {b} WHERE expires_at <= now() LIMIT $1) "
                "AND expires_at <= now()"
            ),
        )
