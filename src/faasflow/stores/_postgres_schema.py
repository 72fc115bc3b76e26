"""The tables, server-side functions and statements of the PostgreSQL stores.

Every name starts with the store's ``table_prefix`` (and sits in its ``schema`` when one
is given), so several stores share one database::

    {p}values       plain values and counters: key, value bytea, expires_at
    {p}set_heads    one row per set: its size and deadline; adders lock it
    {p}set_members  key, member, seq (first-add order, from a sequence)
    {p}list_heads   one row per list: its deadline; appenders lock it
    {p}list_items   key, seq (append order), value
    {p}blobs        the data store: key, value bytea, expires_at

Keys are ``text COLLATE "C"``: compared as bytes, so they sort as Python sorts ``str``
and a prefix is an index range. ``expires_at`` is compared with the server's ``now()``,
so every client agrees on what has expired; ``NULL`` means never.

A set's or a list's deadline lives in its head row, and every change to its rows is
made while holding that head row's lock. That is how concurrent adders see distinct
sizes, how a collection that expired starts again cleanly, and why the statements
that delete collections delete heads first and then the rows of exactly those heads.

The read-modify-write operations are PL/pgSQL functions: each is one round trip, one
transaction, and (being VOLATILE) takes a fresh snapshot per statement, so what a
statement reads after waiting for a lock includes the work of whoever held it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Bumped when the tables or functions change: a store whose marker differs runs the DDL.
SCHEMA_VERSION: Final = 1
# The advisory lock taken around the DDL, so that processes opening stores at once do not
# race on CREATE (which can fail with a duplicate key in the catalogues).
DDL_LOCK: Final = 0x66616173666C6F77  # "faasflow"

IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]*")
MAX_PREFIX: Final = 40  # the longest suffix ("set_members_order") must fit in 63 bytes

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


def _range(low: str, high: str | None) -> str:
    return f"key >= {low}" if high is None else f"key >= {low} AND key < {high}"


# -- the state store ---------------------------------------------------------------------


def state_ddl(n: Names) -> list[str]:
    """The statements creating the state store's tables and functions (idempotent)."""
    v, sh, sm, lh, li = (
        n("values"), n("set_heads"), n("set_members"), n("list_heads"), n("list_items")
    )
    tables = [
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
            expires_at timestamptz)""",
        f"""CREATE TABLE IF NOT EXISTS {li} (
            key text COLLATE "C" NOT NULL,
            seq bigserial NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (key, seq))""",
        *(
            f"CREATE INDEX IF NOT EXISTS {n.prefix}{name}_expiry ON {n(name)} (expires_at) "
            "WHERE expires_at IS NOT NULL"
            for name in ("values", "set_heads", "list_heads")
        ),
    ]
    # Lock the head row of a collection, creating it when absent. A freshly inserted row
    # is as good as locked: it is invisible to others, and their inserts wait for us.
    # The loop covers a head deleted between our insert's conflict and our SELECT.
    lock_head = """
  LOOP
    SELECT {cols} INTO {into} FROM {head} WHERE key = k FOR UPDATE;
    EXIT WHEN FOUND;
    INSERT INTO {head} (key{extra_col}) VALUES (k{extra_val}) ON CONFLICT DO NOTHING;
    IF FOUND THEN {fresh} EXIT; END IF;
  END LOOP;"""
    lock_set = lock_head.format(
        cols="size, expires_at", into="n, deadline", head=sh, extra_col=", size",
        extra_val=", 0", fresh="n := 0; deadline := NULL;",
    )
    lock_list = lock_head.format(
        cols="expires_at", into="deadline", head=lh, extra_col="", extra_val="",
        fresh="deadline := NULL;",
    )
    fn = {name: n(name) for name in (
        "set_add", "set_remove", "list_append", "commit", "delete_key", "delete_prefix", "purge"
    )}
    deadline_ttl, deadline_wt = ttl_deadline("ttl"), ttl_deadline("wt[i]")
    set_add = f"""
CREATE OR REPLACE FUNCTION {fn['set_add']}(k text, m text, ttl float8) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
  deadline timestamptz;
  changed boolean := false;
BEGIN{lock_set}
  IF deadline <= now() THEN  -- expired: the set starts again
    DELETE FROM {sm} WHERE key = k;
    n := 0;
    deadline := NULL;
    changed := true;
  END IF;
  INSERT INTO {sm} (key, member) VALUES (k, m) ON CONFLICT DO NOTHING;
  IF FOUND THEN
    n := n + 1;
    changed := true;
  END IF;
  IF ttl IS NOT NULL THEN
    deadline := {deadline_ttl};
    changed := true;
  END IF;
  IF changed THEN
    UPDATE {sh} SET size = n, expires_at = deadline WHERE key = k;
  END IF;
  RETURN n;
END $$"""
    set_remove = f"""
CREATE OR REPLACE FUNCTION {fn['set_remove']}(k text, m text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz;
BEGIN
  SELECT expires_at INTO deadline FROM {sh} WHERE key = k FOR UPDATE;
  IF NOT FOUND OR deadline <= now() THEN
    RETURN false;
  END IF;
  DELETE FROM {sm} WHERE key = k AND member = m;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  -- An empty set does not exist: its head (and deadline) goes with the last member.
  DELETE FROM {sh} WHERE key = k AND size <= 1;
  IF NOT FOUND THEN
    UPDATE {sh} SET size = size - 1 WHERE key = k;
  END IF;
  RETURN true;
END $$"""
    list_append = f"""
CREATE OR REPLACE FUNCTION {fn['list_append']}(k text, v bytea, ttl float8) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz;
  changed boolean := false;
BEGIN{lock_list}
  IF deadline <= now() THEN  -- expired: the list starts again
    DELETE FROM {li} WHERE key = k;
    deadline := NULL;
    changed := true;
  END IF;
  INSERT INTO {li} (key, value) VALUES (k, v);
  IF ttl IS NOT NULL THEN
    deadline := {deadline_ttl};
    changed := true;
  END IF;
  IF changed THEN
    UPDATE {lh} SET expires_at = deadline WHERE key = k;
  END IF;
END $$"""
    commit = f"""
CREATE OR REPLACE FUNCTION {fn['commit']}(
  rk text[], rv bytea[], ops text[], wk text[], wv bytea[], wt float8[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  cur bytea;
  deadline timestamptz;
  made text[] := ARRAY[]::text[];
  ok boolean := true;
BEGIN
  -- Lock each required key's row, in key order so that two commits cannot deadlock on
  -- them. An absent key gets an already expired placeholder row to lock: whoever would
  -- create the key meanwhile waits for this transaction. Placeholders go at the end.
  FOR i IN SELECT u.i FROM unnest(rk) WITH ORDINALITY AS u(k, i) ORDER BY u.k COLLATE "C"
  LOOP
    LOOP
      SELECT value, expires_at INTO cur, deadline FROM {v} WHERE key = rk[i] FOR UPDATE;
      EXIT WHEN FOUND;
      INSERT INTO {v} (key, value, expires_at) VALUES (rk[i], ''::bytea, '-infinity')
        ON CONFLICT DO NOTHING;
      IF FOUND THEN
        made := made || rk[i];
        deadline := '-infinity';
        EXIT;
      END IF;
    END LOOP;
    IF deadline <= now() THEN
      cur := NULL;
    END IF;
    IF cur IS DISTINCT FROM rv[i] THEN
      ok := false;
      EXIT;
    END IF;
  END LOOP;
  IF ok THEN
    FOR i IN 1 .. coalesce(array_length(wk, 1), 0) LOOP
      IF ops[i] = 'P' THEN
        INSERT INTO {v} AS t (key, value, expires_at)
          VALUES (wk[i], wv[i], {deadline_wt})
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                                          expires_at = EXCLUDED.expires_at;
      ELSIF ops[i] = 'D' THEN
        DELETE FROM {v} WHERE key = wk[i];
      ELSE
        PERFORM {fn['list_append']}(wk[i], wv[i], wt[i]);
      END IF;
    END LOOP;
  END IF;
  IF cardinality(made) > 0 THEN
    DELETE FROM {v} WHERE key = ANY (made) AND expires_at = '-infinity';
  END IF;
  RETURN ok;
END $$"""
    delete_key = f"""
CREATE OR REPLACE FUNCTION {fn['delete_key']}(k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM {v} WHERE key = k;
  -- Rows of exactly the heads deleted (and so locked) here: a collection being created
  -- right now is not ours to half-delete.
  DELETE FROM {sh} WHERE key = k;
  IF FOUND THEN
    DELETE FROM {sm} WHERE key = k;
  END IF;
  DELETE FROM {lh} WHERE key = k;
  IF FOUND THEN
    DELETE FROM {li} WHERE key = k;
  END IF;
END $$"""

    def prefix_body(high: str | None) -> str:
        where = _range("lo", high)
        return f"""
    WITH d AS (DELETE FROM {v} WHERE {where} RETURNING expires_at)
      SELECT count(*) FILTER (WHERE {LIVE}) INTO n FROM d;
    WITH d AS (DELETE FROM {sh} WHERE {where} RETURNING key, expires_at)
      SELECT count(*) FILTER (WHERE {LIVE}), array_agg(key) INTO c, gone FROM d;
    n := n + c;
    IF gone IS NOT NULL THEN
      DELETE FROM {sm} WHERE key = ANY (gone);
    END IF;
    WITH d AS (DELETE FROM {lh} WHERE {where} RETURNING key, expires_at)
      SELECT count(*) FILTER (WHERE {LIVE}), array_agg(key) INTO c, gone FROM d;
    n := n + c;
    IF gone IS NOT NULL THEN
      DELETE FROM {li} WHERE key = ANY (gone);
    END IF;"""

    delete_prefix = f"""
CREATE OR REPLACE FUNCTION {fn['delete_prefix']}(lo text, hi text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
  c integer;
  gone text[];
BEGIN
  -- Two copies of the statements: with and without an upper bound, so that each one's
  -- plan is an index range scan.
  IF hi IS NULL THEN{prefix_body(None)}
  ELSE{prefix_body("hi")}
  END IF;
  RETURN n;
END $$"""
    purge = f"""
CREATE OR REPLACE FUNCTION {fn['purge']}(batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
  c integer;
  gone text[];
BEGIN
  -- The outer expiry test is checked again on a row that changed while we waited for
  -- it: a key whose deadline was just pushed back stays.
  DELETE FROM {v} WHERE key IN (SELECT key FROM {v} WHERE expires_at <= now() LIMIT batch)
    AND expires_at <= now();
  GET DIAGNOSTICS n = ROW_COUNT;
  WITH d AS (DELETE FROM {sh}
             WHERE key IN (SELECT key FROM {sh} WHERE expires_at <= now() LIMIT batch)
               AND expires_at <= now() RETURNING key)
    SELECT count(*), array_agg(key) INTO c, gone FROM d;
  n := n + c;
  IF gone IS NOT NULL THEN
    DELETE FROM {sm} WHERE key = ANY (gone);
  END IF;
  WITH d AS (DELETE FROM {lh}
             WHERE key IN (SELECT key FROM {lh} WHERE expires_at <= now() LIMIT batch)
               AND expires_at <= now() RETURNING key)
    SELECT count(*), array_agg(key) INTO c, gone FROM d;
  n := n + c;
  IF gone IS NOT NULL THEN
    DELETE FROM {li} WHERE key = ANY (gone);
  END IF;
  RETURN n;
END $$"""
    return [*tables, set_add, set_remove, list_append, commit, delete_key, delete_prefix, purge]


@dataclass(frozen=True)
class StateSql:
    """The state store's statements, for one set of names."""

    marker_table: str
    get: str
    get_many: str
    put: str
    create: str
    exists: str
    swap: str
    delete_if: str
    increment: str
    keys_bounded: str
    keys_unbounded: str
    set_add: str
    set_remove: str
    set_members: str
    append: str
    read_list: str
    commit: str
    delete: str
    delete_prefix: str
    expire: str
    purge: str

    @classmethod
    def build(cls, n: Names) -> StateSql:
        """Format every statement with the store's table names."""
        v, sh, sm, lh, li = (
            n("values"), n("set_heads"), n("set_members"), n("list_heads"), n("list_items")
        )
        put = (
            f"INSERT INTO {v} AS t (key, value, expires_at) VALUES ($1, $2, {ttl_deadline('$3')}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "expires_at = EXCLUDED.expires_at"
        )
        keys = f"SELECT key FROM {v} WHERE {{}} AND {LIVE} ORDER BY key LIMIT $3::bigint"
        expired = "t.expires_at IS NOT NULL AND t.expires_at <= now()"
        return cls(
            marker_table=v,
            get=f"SELECT value FROM {v} WHERE key = $1 AND {LIVE}",
            get_many=f"SELECT key, value FROM {v} WHERE key = ANY ($1::text[]) AND {LIVE}",
            put=put,
            # Create if absent: insert, or take over a row whose deadline has passed. Of
            # concurrent creators one inserts; the others wait for it, then find it live.
            create=(
                f"INSERT INTO {v} AS t (key, value, expires_at) "
                f"VALUES ($1, $2, {ttl_deadline('$3')}) ON CONFLICT (key) DO UPDATE "
                f"SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at WHERE {expired} "
                "RETURNING true"
            ),
            exists=f"SELECT EXISTS (SELECT FROM {v} WHERE key = $1 AND {LIVE})",
            # An UPDATE that waited for a concurrent writer re-checks its WHERE against
            # the row that writer left: of concurrent swappers exactly one matches.
            swap=(
                f"UPDATE {v} SET value = $3, expires_at = {ttl_deadline('$4')} "
                f"WHERE key = $1 AND value = $2 AND {LIVE} RETURNING true"
            ),
            delete_if=f"DELETE FROM {v} WHERE key = $1 AND value = $2 AND {LIVE} RETURNING true",
            # An expired counter starts from 0 (and loses its deadline unless given one);
            # without a TTL a live counter keeps its deadline.
            increment=(
                f"INSERT INTO {v} AS t (key, value, expires_at) "
                f"VALUES ($1, convert_to($2::bigint::text, 'UTF8'), {ttl_deadline('$3')}) "
                "ON CONFLICT (key) DO UPDATE SET "
                f"value = convert_to((CASE WHEN {expired} THEN 0 "
                "ELSE convert_from(t.value, 'UTF8')::bigint END + $2::bigint)::text, 'UTF8'), "
                "expires_at = CASE WHEN $3::float8 IS NOT NULL THEN EXCLUDED.expires_at "
                f"WHEN {expired} THEN NULL ELSE t.expires_at END "
                "RETURNING convert_from(t.value, 'UTF8')::bigint"
            ),
            keys_bounded=keys.format(_range("$1", "$2")),
            keys_unbounded=keys.format("key >= $1 AND $2::text IS NULL"),
            set_add=f"SELECT {n('set_add')}($1, $2, $3)",
            set_remove=f"SELECT {n('set_remove')}($1, $2)",
            set_members=(
                f"SELECT m.member FROM {sm} m JOIN {sh} h ON h.key = m.key "
                f"WHERE m.key = $1 AND (h.expires_at IS NULL OR h.expires_at > now()) "
                "ORDER BY m.seq"
            ),
            append=f"SELECT {n('list_append')}($1, $2, $3)",
            read_list=(
                f"SELECT i.value FROM {li} i JOIN {lh} h ON h.key = i.key "
                f"WHERE i.key = $1 AND (h.expires_at IS NULL OR h.expires_at > now()) "
                "ORDER BY i.seq"
            ),
            commit=f"SELECT {n('commit')}($1, $2, $3, $4, $5, $6)",
            delete=f"SELECT {n('delete_key')}($1)",
            delete_prefix=f"SELECT {n('delete_prefix')}($1, $2)",
            # Only live keys get a new deadline: expire never revives an expired key.
            expire=(
                f"WITH a AS (UPDATE {v} SET expires_at = {ttl_deadline('$2')} "
                f"WHERE key = $1 AND {LIVE}), "
                f"b AS (UPDATE {sh} SET expires_at = {ttl_deadline('$2')} "
                f"WHERE key = $1 AND {LIVE}) "
                f"UPDATE {lh} SET expires_at = {ttl_deadline('$2')} WHERE key = $1 AND {LIVE}"
            ),
            purge=f"SELECT {n('purge')}($1)",
        )


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
            delete_prefix_bounded=delete_prefix.format(_range("$1", "$2")),
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
