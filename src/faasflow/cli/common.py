"""What every subcommand shares: exit statuses, error lines, binary-safe output, and
the type of ``--timeout``-like options."""

from __future__ import annotations

import argparse
import sys

from faasflow.errors import ConfigurationError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING_TOOL",
    "EXIT_OK",
    "EXIT_USAGE",
    "configuration_error",
    "error",
    "missing_extra",
    "seconds",
    "write_result",
    "write_stdout",
]

EXIT_OK = 0
EXIT_FAILED = 1
"""The request failed, or something went wrong at run time."""
EXIT_USAGE = 2
"""A bad argument, flow file or flow definition (argparse uses 2 as well)."""
EXIT_MISSING_TOOL = 3
"""A program or an extra (``pip install 'faasflow[nats]'``…) the command needs is not
installed."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, what shells report for a process ended by it)."""


def error(message: str, status: int) -> int:
    """Print ``error: message`` on stderr and return ``status``, the exit status."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return status


def missing_extra(exc: BaseException) -> bool:
    """Whether ``exc`` says an extra is missing: raised while importing its package
    failed, naming the ``pip install 'faasflow[...]'`` that brings it."""
    if "pip install 'faasflow[" not in str(exc):
        return False
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, ImportError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def configuration_error(exc: ConfigurationError) -> int:
    """Report ``exc``; its exit status: :data:`EXIT_MISSING_TOOL` for a missing extra,
    else :data:`EXIT_USAGE`."""
    return error(str(exc), EXIT_MISSING_TOOL if missing_extra(exc) else EXIT_USAGE)


def write_result(data: bytes) -> None:
    """Write a request's result to stdout unchanged; on a terminal, end the line (a
    shell prompt would otherwise follow the result on its line, or overwrite it)."""
    write_stdout(data)
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is not None and isatty() and not data.endswith(b"\n"):
        write_stdout(b"\n")


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
