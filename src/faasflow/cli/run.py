"""``faasflow run FILE[:define]``: run one request embedded and write its result to stdout."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from faasflow.cli.common import EXIT_FAILED, EXIT_USAGE, error, seconds, write_stdout
from faasflow.cli.embedded import (
    add_engine_options,
    build_engine,
    outlives_process,
    recover_command,
    status_command,
)
from faasflow.cli.interrupt import Interrupted, exit_interrupted, until_interrupted
from faasflow.cli.loader import FlowFile, load_define
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    RequestError,
    RequestFailedError,
)
from faasflow.runtime import check_request_id, new_request_id

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow run`` and its options."""
    parser = subparsers.add_parser(
        "run",
        help="run one request of a flow in this process",
        description=(
            "Run one request of the flow defined in FILE (its define(flow, context), or "
            "FILE:NAME) and write the result bytes to stdout, unchanged. On Ctrl-C, print "
            "the request's id and the `faasflow recover` command that continues it, and "
            "exit at once (a node running in a thread dies with the process and runs again "
            "on recovery). Exit status: 0 success, 1 the request failed, 2 a bad argument "
            "or flow definition, 130 interrupted."
        ),
    )
    parser.add_argument("target", metavar="FILE[:define]", help="the flow file and function")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="TEXT", help="the request input")
    source.add_argument(
        "--data-file", metavar="PATH", help="read the input from PATH ('-' for stdin)"
    )
    add_engine_options(parser)
    parser.add_argument(
        "--request-id", metavar="ID", type=_request_id, help="choose the request id"
    )
    parser.add_argument(
        "--query", metavar="QS", default="", help="the request's query string (a=1&b=2)"
    )
    parser.add_argument(
        "--timeout", metavar="S", type=seconds, help="give up waiting after S seconds"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print node events with timings on stderr"
    )
    parser.set_defaults(handler=command)


def _request_id(text: str) -> str:
    try:
        return check_request_id(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow run``; returns the exit status."""
    try:
        flow = load_define(args.target)
        data = _read_input(args)
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)
    try:
        result = asyncio.run(_run(args, flow, data))
    except Interrupted:
        exit_interrupted()
    except (FlowDefinitionError, ConfigurationError) as exc:
        return error(str(exc), EXIT_USAGE)
    except RequestFailedError as exc:
        # The message names request, node, attempt and cause.
        return error(str(exc), EXIT_FAILED)
    except (FaasFlowError, TimeoutError) as exc:
        return error(str(exc), EXIT_FAILED)
    write_stdout(result)
    return 0


def _read_input(args: argparse.Namespace) -> bytes:
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
    # An interactive terminal would wait for input nobody means to type: empty input.
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


async def _run(args: argparse.Namespace, flow: FlowFile, data: bytes) -> bytes:
    engine = build_engine(args, flow)
    # Chosen before submitting, so that a Ctrl-C at any moment can name it.
    rid = args.request_id or new_request_id()
    started = False

    def notice() -> str:
        recover, status = recover_command(args), status_command(args, rid)
        if not outlives_process(args):
            return f"interrupted: request {rid} ends with this process (its store is in memory)"
        if not started:
            return (
                f"interrupted while starting request {rid}: if `{status}` finds it, "
                f"continue it with `{recover}`"
            )
        return (
            f"interrupted: request {rid} is still running; continue it with `{recover}`, "
            f"see it with `{status}`"
        )

    async def submit_and_wait() -> bytes:
        nonlocal started
        await engine.submit(data, request_id=rid, query=args.query)
        started = True
        return await engine.wait(rid, args.timeout)

    # On Ctrl-C the engine is closed on the way out: the steps it held are released at
    # once, for `faasflow recover` to take over.
    async with engine:
        return await until_interrupted(submit_and_wait(), notice)
