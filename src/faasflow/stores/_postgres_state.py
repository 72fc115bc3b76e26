"""The PostgreSQL state store's tables, server-side functions and statements.

The tables are in :mod:`faasflow.stores._postgres_schema`. A set's, a list's or
an ordered index's deadline lives in its head row, and every change to its rows is made
while holding that head row's lock. That is how concurrent adders see distinct sizes,
how appenders number items without gaps, how a collection that expired starts again
cleanly, and why the statements that delete collections delete heads first and then the
rows of exactly those heads. Set adders and list appenders hold their head exclusively
(``FOR UPDATE``); index writers share theirs (``FOR KEY SHARE``, which only excludes
deleting the head), so that writers of one busy index — every request moving through a
flow's status index — do not queue behind each other's commits.

Reads cost what they return: a list's items carry their position (``pos``), so a page,
or the last item, is an index range over ``(key, pos)``, its negative bounds resolved
against the length in the head row; an index range is a row comparison
``(score, member) > (…)`` over the ``(key, score, member)`` index.

The read-modify-write operations are PL/pgSQL functions: each is one round trip, one
transaction, and (being VOLATILE) takes a fresh snapshot per statement, so what a
statement reads after waiting for a lock includes the work of whoever held it.

Upgrading: the DDL is idempotent and brings version 1 tables up to date (lists gain
their positions and lengths, numbered in append order; the index tables are created).
Functions are replaced, so every process must run this version: an older one that opens
the store puts its own functions back (and then fails loudly on appends, which must now
set ``pos``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from faasflow.stores._postgres_schema import LIVE, Names, key_range, state_tables, ttl_deadline

__all__ = ["StateSql", "state_ddl"]


# Lock the head row of a collection, creating it when absent. A freshly inserted row is
# as good as locked: it is invisible to others, and their inserts wait for us. The loop
# covers a head deleted between our insert's conflict and our SELECT.
_LOCK_HEAD: Final = """
  LOOP
    SELECT {cols} INTO {into} FROM {head} WHERE key = k FOR {mode};
    EXIT WHEN FOUND;
    INSERT INTO {head} (key{extra_col}) VALUES (k{extra_val}) ON CONFLICT DO NOTHING;
    IF FOUND THEN {fresh} EXIT; END IF;
  END LOOP;"""


def _collections(n: Names) -> list[str]:
    """The functions that write sets, lists and ordered indexes."""
    sh, sm, lh, li = n("set_heads"), n("set_members"), n("list_heads"), n("list_items")
    ih, ie = n("index_heads"), n("index_entries")
    lock_set = _LOCK_HEAD.format(
        cols="size, expires_at", into="n, deadline", head=sh, extra_col=", size",
        extra_val=", 0", fresh="n := 0; deadline := NULL;", mode="UPDATE",
    )
    lock_list = _LOCK_HEAD.format(
        cols="size, expires_at", into="n, deadline", head=lh, extra_col="", extra_val="",
        fresh="n := 0; deadline := NULL;", mode="UPDATE",
    )
    lock_index = _LOCK_HEAD.format(
        cols="expires_at", into="deadline", head=ih, extra_col="", extra_val="",
        fresh="deadline := NULL;", mode="KEY SHARE",
    )
    new_deadline = ttl_deadline("ttl")
    set_add = f"""
CREATE OR REPLACE FUNCTION {n('set_add')}(k text, m text, ttl float8) RETURNS integer
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
    deadline := {new_deadline};
    changed := true;
  END IF;
  IF changed THEN
    UPDATE {sh} SET size = n, expires_at = deadline WHERE key = k;
  END IF;
  RETURN n;
END $$"""
    set_remove = f"""
CREATE OR REPLACE FUNCTION {n('set_remove')}(k text, m text) RETURNS boolean
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
CREATE OR REPLACE FUNCTION {n('list_append')}(k text, v bytea, ttl float8) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  deadline timestamptz;
BEGIN{lock_list}
  IF deadline <= now() THEN  -- expired: the list starts again
    DELETE FROM {li} WHERE key = k;
    n := 0;
    deadline := NULL;
  END IF;
  INSERT INTO {li} (key, pos, value) VALUES (k, n, v);
  IF ttl IS NOT NULL THEN
    deadline := {new_deadline};
  END IF;
  UPDATE {lh} SET size = n + 1, expires_at = deadline WHERE key = k;
END $$"""
    index_put = f"""
CREATE OR REPLACE FUNCTION {n('index_put')}(k text, m text, s float8, ttl float8)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz;
BEGIN
  -- An expired index starts again: its head goes first, with its entries (deleting the
  -- head waits for every writer sharing it).
  SELECT expires_at INTO deadline FROM {ih} WHERE key = k;
  IF deadline <= now() THEN
    DELETE FROM {ih} WHERE key = k AND expires_at <= now();
    IF FOUND THEN
      DELETE FROM {ie} WHERE key = k;
    END IF;
  END IF;{lock_index}
  IF deadline <= now() THEN
    -- It expired while we waited for it: start over, deleting it first this time.
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = 'ordered index ' || k || ' expired meanwhile';
  END IF;
  INSERT INTO {ie} (key, member, score) VALUES (k, m, s)
    ON CONFLICT (key, member) DO UPDATE SET score = EXCLUDED.score;
  IF ttl IS NOT NULL THEN
    UPDATE {ih} SET expires_at = {new_deadline} WHERE key = k;
  ELSIF deadline IS NOT NULL AND NOT EXISTS (
      SELECT FROM {ie} WHERE key = k AND member <> m) THEN
    -- Every entry was dropped: an empty index does not exist, nor does its deadline.
    UPDATE {ih} SET expires_at = NULL WHERE key = k;
  END IF;
END $$"""
    return [set_add, set_remove, list_append, index_put]


def _commit(n: Names) -> str:
    v, ie = n("values"), n("index_entries")
    return f"""
CREATE OR REPLACE FUNCTION {n('commit')}(
  rk text[], rv bytea[], ops text[], wk text[], wv bytea[], wt float8[], wm text[],
  ws float8[]) RETURNS boolean
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
          VALUES (wk[i], wv[i], {ttl_deadline("wt[i]")})
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                                          expires_at = EXCLUDED.expires_at;
      ELSIF ops[i] = 'D' THEN
        DELETE FROM {v} WHERE key = wk[i];
      ELSIF ops[i] = 'A' THEN
        PERFORM {n('list_append')}(wk[i], wv[i], wt[i]);
      ELSIF ops[i] = 'X' THEN
        PERFORM {n('index_put')}(wk[i], wm[i], ws[i], wt[i]);
      ELSE
        DELETE FROM {ie} WHERE key = wk[i] AND member = wm[i];
      END IF;
    END LOOP;
  END IF;
  IF cardinality(made) > 0 THEN
    DELETE FROM {v} WHERE key = ANY (made) AND expires_at = '-infinity';
  END IF;
  RETURN ok;
END $$"""


# The collections: (head, rows) tables, by their names' suffixes.
_COLLECTIONS: Final = (
    ("set_heads", "set_members"), ("list_heads", "list_items"),
    ("index_heads", "index_entries"),
)


def _deletions(n: Names) -> list[str]:
    """The functions that delete keys: one key, a prefix, the expired ones."""
    v = n("values")
    # Rows of exactly the heads deleted (and so locked) here: a collection being created
    # right now is not ours to half-delete.
    delete_rows = "".join(f"""
  DELETE FROM {n(head)} WHERE key = k;
  IF FOUND THEN
    DELETE FROM {n(rows)} WHERE key = k;
  END IF;""" for head, rows in _COLLECTIONS)
    delete_key = f"""
CREATE OR REPLACE FUNCTION {n('delete_key')}(k text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM {v} WHERE key = k;{delete_rows}
END $$"""

    def prefix_body(high: str | None) -> str:
        where = key_range("lo", high)
        body = f"""
    WITH d AS (DELETE FROM {v} WHERE {where} RETURNING expires_at)
      SELECT count(*) FILTER (WHERE {LIVE}) INTO n FROM d;"""
        for head, rows in _COLLECTIONS:
            # An index whose entries were all dropped is not a key: not counted.
            counted = LIVE if head != "index_heads" else (
                f"{LIVE} AND EXISTS (SELECT FROM {n(rows)} e WHERE e.key = d.key)")
            body += f"""
    WITH d AS (DELETE FROM {n(head)} WHERE {where} RETURNING key, expires_at)
      SELECT count(*) FILTER (WHERE {counted}), array_agg(key) INTO c, gone FROM d;
    n := n + c;
    IF gone IS NOT NULL THEN
      DELETE FROM {n(rows)} WHERE key = ANY (gone);
    END IF;"""
        return body

    delete_prefix = f"""
CREATE OR REPLACE FUNCTION {n('delete_prefix')}(lo text, hi text) RETURNS integer
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
    expired = "".join(f"""
  WITH d AS (DELETE FROM {n(head)}
             WHERE key IN (SELECT key FROM {n(head)} WHERE expires_at <= now() LIMIT batch)
               AND expires_at <= now() RETURNING key)
    SELECT count(*), array_agg(key) INTO c, gone FROM d;
  n := n + c;
  IF gone IS NOT NULL THEN
    DELETE FROM {n(rows)} WHERE key = ANY (gone);
  END IF;""" for head, rows in _COLLECTIONS)
    ih, ie = n("index_heads"), n("index_entries")
    purge = f"""
CREATE OR REPLACE FUNCTION {n('purge')}(batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
  c integer;
  gone text[];
  k text;
BEGIN
  -- The outer expiry test is checked again on a row that changed while we waited for
  -- it: a key whose deadline was just pushed back stays.
  DELETE FROM {v} WHERE key IN (SELECT key FROM {v} WHERE expires_at <= now() LIMIT batch)
    AND expires_at <= now();
  GET DIAGNOSTICS n = ROW_COUNT;{expired}
  -- Heads of indexes whose entries were all dropped. Locked first, skipping any that a
  -- writer holds, then deleted only if still empty as of the lock (a writer that held
  -- it has committed its entry by then, and a new statement sees it).
  FOR k IN SELECT h.key FROM {ih} h
           WHERE NOT EXISTS (SELECT FROM {ie} e WHERE e.key = h.key)
           LIMIT batch FOR UPDATE SKIP LOCKED
  LOOP
    DELETE FROM {ih} WHERE key = k AND NOT EXISTS (SELECT FROM {ie} WHERE key = k);
  END LOOP;
  RETURN n;
END $$"""
    return [delete_key, delete_prefix, purge]


def state_ddl(n: Names) -> list[str]:
    """The statements creating (or bringing up to date) the state store's tables and
    functions; idempotent."""
    return [*state_tables(n), *_collections(n), _commit(n), *_deletions(n)]


def _index_range(n: Names, after: bool, before: bool, descending: bool) -> str:
    """An index range statement: ``$1`` the index, then each bound's score and member,
    then the limit. Each shape is its own statement (not ``$2 IS NULL OR …``), so that
    its plan starts the index scan at the bound."""
    where = ["key = $1", f"EXISTS (SELECT FROM {n('index_heads')} WHERE key = $1 AND {LIVE})"]
    param = 2
    for given, op in ((after, ">"), (before, "<")):
        if given:
            where.append(f"(score, member) {op} (${param}::float8, ${param + 1}::text)")
            param += 2
    order = "DESC" if descending else "ASC"
    return (
        f"SELECT score, member FROM {n('index_entries')} WHERE {' AND '.join(where)} "
        f"ORDER BY score {order}, member {order} LIMIT ${param}::bigint"
    )


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
    list_length: str
    index_ranges: dict[tuple[bool, bool, bool], str]
    index_size: str
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
        ih, ie = n("index_heads"), n("index_entries")
        put = (
            f"INSERT INTO {v} AS t (key, value, expires_at) VALUES ($1, $2, {ttl_deadline('$3')}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "expires_at = EXCLUDED.expires_at"
        )
        keys = f"SELECT key FROM {v} WHERE {{}} AND {LIVE} ORDER BY key LIMIT $3::bigint"
        expired = "t.expires_at IS NOT NULL AND t.expires_at <= now()"
        head_live = "(h.expires_at IS NULL OR h.expires_at > now())"
        retime = ", ".join(
            f"{name} AS (UPDATE {table} SET expires_at = {ttl_deadline('$2')} "
            f"WHERE key = $1 AND {LIVE})"
            for name, table in (("a", v), ("b", sh), ("c", lh))
        )
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
            keys_bounded=keys.format(key_range("$1", "$2")),
            keys_unbounded=keys.format("key >= $1 AND $2::text IS NULL"),
            set_add=f"SELECT {n('set_add')}($1, $2, $3)",
            set_remove=f"SELECT {n('set_remove')}($1, $2)",
            set_members=(
                f"SELECT m.member FROM {sm} m JOIN {sh} h ON h.key = m.key "
                f"WHERE m.key = $1 AND {head_live} ORDER BY m.seq"
            ),
            append=f"SELECT {n('list_append')}($1, $2, $3)",
            # items[$2:$3] as Python slices: negative bounds count back from the length.
            read_list=(
                f"SELECT i.value FROM {lh} h JOIN {li} i ON i.key = h.key "
                f"WHERE h.key = $1 AND {head_live} "
                "AND i.pos >= CASE WHEN $2::bigint < 0 THEN h.size + $2 ELSE $2 END "
                "AND i.pos < CASE WHEN $3::bigint IS NULL THEN h.size "
                "WHEN $3 < 0 THEN h.size + $3 ELSE $3 END "
                "ORDER BY i.pos"
            ),
            list_length=f"SELECT size FROM {lh} WHERE key = $1 AND {LIVE}",
            index_ranges={
                (after, before, descending): _index_range(n, after, before, descending)
                for after in (False, True)
                for before in (False, True)
                for descending in (False, True)
            },
            # Counting reads every entry of the index (an index-only scan): a counter
            # kept in the head would make every writer of the index wait for the others.
            index_size=(
                f"SELECT count(*) FROM {ie} WHERE key = $1 "
                f"AND EXISTS (SELECT FROM {ih} WHERE key = $1 AND {LIVE})"
            ),
            commit=f"SELECT {n('commit')}($1, $2, $3, $4, $5, $6, $7, $8)",
            delete=f"SELECT {n('delete_key')}($1)",
            delete_prefix=f"SELECT {n('delete_prefix')}($1, $2)",
            # Only live keys get a new deadline: expire never revives an expired key.
            expire=(
                f"WITH {retime} "
                f"UPDATE {ih} SET expires_at = {ttl_deadline('$2')} WHERE key = $1 AND {LIVE}"
            ),
            purge=f"SELECT {n('purge')}($1)",
        )
