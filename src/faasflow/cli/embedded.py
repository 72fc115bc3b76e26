"""What the commands that run hops in this process share (``run``, ``recover``, and
``resume``/``redrive`` on a local store): the engine for a flow file, its handler folder,
the request's input, and the commands suggested after a Ctrl-C."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from faasflow.cli.options import state_url
from faasflow.cli.progress import Progress
from faasflow.config import get_int
from faasflow.errors import ConfigurationError
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import FlowFile

__all__ = [
    "build_engine",
    "functions_dir",
    "outlives_process",
    "read_input",
    "recover_command",
    "status_command",
]


def build_engine(args: argparse.Namespace, flow: FlowFile, *, name: str | None = None) -> Engine:
    """The engine the options describe; build it inside the event loop that will run it
    (its transport and pools belong to that loop).

    Raises:
        ConfigurationError: a bad option (a store URL, ``--functions``).
    """
    # Resolved here rather than by the engine, so that the commands printed after a
    # Ctrl-C name the very store this process used.
    args.state = state_url(args, default=True)
    engine = Engine(
        flow.define,
        flow_name=name or args.name or flow.stem,
        functions_dir=functions_dir(args, flow),
        gateway=args.gateway,
        state_store=args.state,
        data_store=args.data_store,
        max_input_size=get_int("max_body_size"),
    )
    if getattr(args, "verbose", False):
        engine.observe(Progress())
    return engine


def functions_dir(args: argparse.Namespace, flow: FlowFile) -> Path | None:
    """``--functions``, else ``functions/`` next to the flow file when it exists.

    Raises:
        ConfigurationError: ``--functions`` is not a directory.
    """
    if args.functions is not None:
        folder = Path(args.functions)
        if not folder.is_dir():
            raise ConfigurationError(f"--functions {args.functions!r} is not a directory")
        return folder
    beside = flow.path.parent / "functions"
    return beside if beside.is_dir() else None


def outlives_process(args: argparse.Namespace) -> bool:
    """Whether the state store of ``args`` (once :func:`build_engine` resolved it) keeps
    requests after this process ends; ``memory://`` does not."""
    return not str(args.state).startswith("memory:")


def recover_command(args: argparse.Namespace) -> str:
    """``faasflow recover`` with the flow and the engine options of ``args``, to paste."""
    words = ["faasflow", "recover", args.target]
    for option, value in (
        ("--name", args.name),
        ("--functions", args.functions),
        ("--gateway", args.gateway),
        ("--state", args.state),
        ("--data-store", args.data_store),
    ):
        if value:
            words += [option, str(value)]
    return shlex.join(words)


def status_command(args: argparse.Namespace, request_id: str) -> str:
    """``faasflow status ID`` on the state store of ``args``, to paste."""
    words = ["faasflow", "status", request_id]
    return shlex.join([*words, "--state", str(args.state)] if args.state else words)


def read_input(args: argparse.Namespace) -> bytes:
    """The request's input: ``--data``, ``--data-file`` (``-``: stdin), else stdin unless
    it is a terminal (then empty: nobody means to type it).

    Raises:
        ConfigurationError: the file or stdin cannot be read.
    """
    if args.data is not None:
        # fsencode undoes the surrogate escapes of undecodable argv bytes.
        return os.fsencode(args.data)
    if args.data_file == "-":
        return _read_stdin()
    if args.data_file is not None:
        try:
            return Path(args.data_file).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read --data-file {args.data_file!r}: {exc.strerror or exc}"
            ) from exc
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return b""
    return _read_stdin()


def _read_stdin() -> bytes:
    try:
        return sys.stdin.buffer.read()
    except (OSError, AttributeError) as exc:
        raise ConfigurationError(
            f"cannot read standard input ({exc}); pass --data or --data-file"
        ) from exc
