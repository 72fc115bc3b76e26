"""Prefix matches as key ranges, for the SQL backends.

``prefix <= key < prefix_end(prefix)`` selects the keys that start with ``prefix`` and
lets the primary-key index serve the match (``LIKE`` has wildcards and, in SQLite, is
case-insensitive). Keys are compared as UTF-8 bytes, which orders them by code point.
"""

from __future__ import annotations

__all__ = ["prefix_end"]


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``; ``None`` when
    there is none (``prefix`` is empty or all U+10FFFF): the range has no upper bound."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip past them
                code = 0xE000
            return "".join(chars) + chr(code)
    return None
