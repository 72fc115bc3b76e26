"""Showing a caller's value in an error message: cut short, quoted.

An error answer names the value it refuses, so that the caller sees what was wrong; a
value of 10,000 characters would make that answer (and every log line relaying it)
10,000 characters long. So only the start of it is shown.
"""

from __future__ import annotations

ECHO_LIMIT = 64
"""The characters of a caller's value that an error message shows."""


def shorten(value: str, limit: int = ECHO_LIMIT) -> str:
    """``value`` cut to its first ``limit`` characters, then ``…``; unchanged if shorter."""
    return value if len(value) <= limit else value[:limit] + "…"


def echo(value: str, limit: int = ECHO_LIMIT) -> str:
    """``value`` quoted as :func:`repr` quotes it, cut by :func:`shorten`."""
    return repr(shorten(value, limit))
