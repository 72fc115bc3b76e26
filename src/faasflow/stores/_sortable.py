"""Ordered-index entries as bytes whose byte order is the entries' order.

Backends whose only order is byte order — Redis's lexicographic ranges, etcd's key
ranges — keep an index's entries ``(score, member)`` as such bytes, so that a range of
entries is a range of keys, read in ``O(log n + limit)``:

* :func:`ascending` — the score in 8 bytes, then the member's UTF-8: ascending byte
  order is ascending ``(score, member)`` order (members by code point, as UTF-8 bytes
  compare);
* :func:`descending` — both parts inverted, so that ascending byte order is *descending*
  entry order; for a store that can only read key ranges forwards (etcd reads a
  reversed range whole before it applies the limit).

A score's 8 bytes are its IEEE-754 bits made to sort as numbers: a positive float gets
its sign bit set, a negative one has every bit flipped. ``-0.0`` is stored as ``0.0``
(they compare equal in Python); NaN, which has no place in an order, is refused.
"""

from __future__ import annotations

import math
import struct
from typing import Final

__all__ = [
    "ascending",
    "descending",
    "entry_from_ascending",
    "entry_from_descending",
    "score_bytes",
    "score_from_bytes",
]

_SIGN: Final = 1 << 63
_ALL: Final = (1 << 64) - 1
_DOUBLE: Final = struct.Struct(">d")
_WORD: Final = struct.Struct(">Q")

# Mirrors a UTF-8 byte b to 0xFE - b: UTF-8 never holds 0xF5..0xFF, so a mirrored
# member never holds 0xFF, which can then end it and sort after every mirrored byte (a
# member that is a prefix of another comes after it, as descending order wants).
_MIRROR: Final = bytes(0xFE - b if b <= 0xFE else 0xFF for b in range(256))
_END: Final = b"\xff"


def score_bytes(score: float) -> bytes:
    """``score`` as 8 bytes that sort as the numbers do.

    Raises:
        ValueError: ``score`` is NaN.
    """
    if math.isnan(score):
        raise ValueError("an index score must be a number, not NaN")
    (bits,) = _WORD.unpack(_DOUBLE.pack(score + 0.0))  # + 0.0 turns -0.0 into 0.0
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    return _WORD.pack(bits)


def score_from_bytes(data: bytes) -> float:
    """The score whose :func:`score_bytes` are the first 8 bytes of ``data``."""
    (bits,) = _WORD.unpack_from(data)
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
    score: float = _DOUBLE.unpack(_WORD.pack(bits))[0]
    return score


def ascending(score: float, member: str) -> bytes:
    """The entry as bytes in ascending order."""
    return score_bytes(score) + member.encode()


def entry_from_ascending(data: bytes) -> tuple[float, str]:
    """The entry that :func:`ascending` made ``data`` of."""
    return score_from_bytes(data), data[8:].decode()


def descending(score: float, member: str) -> bytes:
    """The entry as bytes in descending order."""
    flipped = (int.from_bytes(score_bytes(score), "big") ^ _ALL).to_bytes(8, "big")
    return flipped + member.encode().translate(_MIRROR) + _END


def entry_from_descending(data: bytes) -> tuple[float, str]:
    """The entry that :func:`descending` made ``data`` of."""
    score = (int.from_bytes(data[:8], "big") ^ _ALL).to_bytes(8, "big")
    return score_from_bytes(score), data[8:-1].translate(_MIRROR).decode()
