"""Where the etcd store keeps each kind of key, and how a key's deadline is read.

Every key of the store lives under its prefix, in one key space per kind, so that the
contract's separate namespaces never collide and every prefix read or delete is one
etcd key range::

    {prefix}v/{key}                   plain value (counters as ASCII digits)
    {prefix}h/{key}                   set header (empty value): exists while the set does
    {prefix}s/{key}\\xff{member}       set member (empty value)
    {prefix}m/{key}                   list header: the list's length (ASCII digits)
    {prefix}l/{key}\\xff{position}     list item, at its position (16 hex digits)
    {prefix}i/{key}                   ordered index header (empty value)
    {prefix}x/{key}\\xff<{ascending}   index entry, in ascending order (empty value)
    {prefix}x/{key}\\xff>{descending}  the same entry, in descending order (empty value)
    {prefix}x/{key}\\xff={member}      the member's score (8 sortable bytes)

The byte ``0xff`` never occurs in UTF-8, so it ends the key unambiguously. An index
entry is written twice, in :mod:`faasflow.stores._sortable`'s two byte orders, because
etcd returns a limited range cheaply only in ascending key order (it reads a whole range
before sorting it, whatever order is asked for); a descending page is an ascending range
of the mirrored keys.

Lists written before items had positions have an empty header value and items keyed by
a writer's token, ordered by their create revision: they are still read (whole) and
appended to that way.

A key's deadline is in its lease's ID: ``deadline_ms << LEASE_SHIFT | random`` (see
:mod:`faasflow.stores.etcd`), so any reader tells an expired key at once.
"""

from __future__ import annotations

import time
from typing import Final

from faasflow.stores._etcd_client import Kv
from faasflow.stores._sortable import ascending, descending

__all__ = ["END", "LEASE_SHIFT", "Spaces", "alive", "live", "now_ms"]

END: Final = b"\xff"
"""Ends a store key inside member and item keys: no UTF-8 text contains this byte."""

LEASE_SHIFT: Final = 20
"""A lease ID is ``deadline_ms << LEASE_SHIFT | random``: positive int64 until 2248."""


def now_ms() -> int:
    """The wall clock in milliseconds, as deadlines are written."""
    return int(time.time() * 1000)


def live(kv: Kv, now: int) -> bool:
    """Whether the key's deadline (its lease ID's high bits) is still ahead of ``now``."""
    return kv.lease == 0 or (kv.lease >> LEASE_SHIFT) > now


def alive(kv: Kv | None, now: int) -> Kv | None:
    """``kv`` if it is there and live, else ``None``."""
    return kv if kv is not None and live(kv, now) else None


class Spaces:
    """The etcd keys of one store's keys, under ``root`` (the store's prefix)."""

    def __init__(self, root: bytes) -> None:
        self.root = root

    def value(self, key: str) -> bytes:
        return self.root + b"v/" + key.encode()

    def set_header(self, key: str) -> bytes:
        return self.root + b"h/" + key.encode()

    def set_members(self, key: str) -> bytes:
        return self.root + b"s/" + key.encode() + END

    def list_header(self, key: str) -> bytes:
        return self.root + b"m/" + key.encode()

    def list_items(self, key: str) -> bytes:
        return self.root + b"l/" + key.encode() + END

    def list_item(self, key: str, position: int) -> bytes:
        return self.list_items(key) + b"%016x" % position

    def index_header(self, index: str) -> bytes:
        return self.root + b"i/" + index.encode()

    def index_keys(self, index: str) -> bytes:
        """The prefix of every key of ``index`` but its header."""
        return self.root + b"x/" + index.encode() + END

    def ascending(self, index: str) -> bytes:
        return self.index_keys(index) + b"<"

    def descending(self, index: str) -> bytes:
        return self.index_keys(index) + b">"

    def members(self, index: str) -> bytes:
        return self.index_keys(index) + b"="

    def entry_keys(self, index: str, score: float, member: str) -> tuple[bytes, bytes]:
        """The entry's two keys: in ascending order and in descending order."""
        return (
            self.ascending(index) + ascending(score, member),
            self.descending(index) + descending(score, member),
        )
