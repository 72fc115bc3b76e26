"""The byte encodings of ordered-index entries sort as the entries do."""

from __future__ import annotations

import math
import random

import pytest

from faasflow.stores._sortable import (
    ascending,
    descending,
    entry_from_ascending,
    entry_from_descending,
)

_SCORES = [-math.inf, -1e308, -2.5, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 2.5,
           1796000000000.0, 1e308, math.inf]
_MEMBERS = ["", "a", "ab", "b", "\x00", "a\x00", "é", "~1", "\U0010ffff", "zz", "a/b:c"]


def _entries() -> list[tuple[float, str]]:
    entries = [(score, member) for score in _SCORES for member in _MEMBERS]
    random.Random(7).shuffle(entries)
    return entries


def _normal(entry: tuple[float, str]) -> tuple[float, str]:
    return entry[0] + 0.0, entry[1]  # -0.0 is stored, and compares, as 0.0


def test_ascending_bytes_sort_as_the_entries() -> None:
    entries = _entries()
    by_bytes = sorted(entries, key=lambda entry: ascending(*entry))
    assert [_normal(e) for e in by_bytes] == sorted(_normal(e) for e in entries)


def test_descending_bytes_sort_in_reverse() -> None:
    entries = _entries()
    by_bytes = sorted(entries, key=lambda entry: descending(*entry))
    assert [_normal(e) for e in by_bytes] == sorted((_normal(e) for e in entries), reverse=True)


def test_entries_come_back_as_they_went_in() -> None:
    for entry in _entries():
        assert entry_from_ascending(ascending(*entry)) == _normal(entry)
        assert entry_from_descending(descending(*entry)) == _normal(entry)


def test_nan_has_no_place() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ascending(math.nan, "m")
