"""What every subcommand shares: exit statuses, error lines, binary-safe output, and
the type of ``--timeout``-like options."""

from __future__ import annotations

import argparse
import sys

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING_TOOL",
    "EXIT_OK",
    "EXIT_USAGE",
    "error",
    "seconds",
    "write_stdout",
]

EXIT_OK = 0
EXIT_FAILED = 1
"""The request failed, or something went wrong at run time."""
EXIT_USAGE = 2
"""A bad argument, flow file or flow definition (argparse uses 2 as well)."""
EXIT_MISSING_TOOL = 3
"""An external program the command needs is not installed."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, what shells report for a process ended by it)."""


def error(message: str, status: int) -> int:
    """Print ``error: message`` on stderr and return ``status``, the exit status."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return status


def write_stdout(data: bytes) -> None:
    """Write ``data`` to stdout unchanged: no decoding, no newline added."""
    # Text already written must come out first, then the bytes go under the text layer.
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a stream replaced by a text-only object (some embedders do)
        sys.stdout.write(data.decode("utf-8", "surrogateescape"))
    else:
        buffer.write(data)
        buffer.flush()


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be > 0")
    return value
