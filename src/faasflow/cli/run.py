"""``faasflow run FILE[:define]``: run one request embedded and write its result to stdout."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from faasflow.cli.common import EXIT_FAILED, EXIT_USAGE, error, write_stdout
from faasflow.cli.loader import FlowFile, load_define
from faasflow.cli.progress import Progress
from faasflow.embedded import Engine, check_request_id
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    RequestError,
    RequestFailedError,
)

__all__ = ["add_parser", "command"]

GATEWAY_ENV = "gateway"
"""The OpenFaaS template's variable for the gateway URL; the default of ``--gateway``."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow run`` and its options."""
    parser = subparsers.add_parser(
        "run",
        help="run one request of a flow in this process",
        description=(
            "Run one request of the flow defined in FILE (its define(flow, context), or "
            "FILE:NAME) and write the result bytes to stdout, unchanged. Exit status: 0 "
            "success, 1 the request failed, 2 a bad argument or flow definition."
        ),
    )
    parser.add_argument("target", metavar="FILE[:define]", help="the flow file and function")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="TEXT", help="the request input")
    source.add_argument(
        "--data-file", metavar="PATH", help="read the input from PATH ('-' for stdin)"
    )
    parser.add_argument(
        "--functions",
        metavar="DIR",
        help="a folder of OpenFaaS python3-http handler folders (default: functions/ "
        "next to FILE, when it exists)",
    )
    parser.add_argument(
        "--gateway",
        metavar="URL",
        default=os.environ.get(GATEWAY_ENV) or None,
        help=f"an OpenFaaS gateway for the other function names (default: ${GATEWAY_ENV})",
    )
    parser.add_argument(
        "--state",
        metavar="URL",
        help="state store URL, e.g. memory:// or sqlite:///flows.db (default: "
        "$FAASFLOW_STORE, else a SQLite file in the cache directory)",
    )
    parser.add_argument(
        "--data-store", metavar="URL", help="data store URL (default: the state store's URL)"
    )
    parser.add_argument("--name", metavar="FLOW", help="the flow name (default: FILE's stem)")
    parser.add_argument(
        "--request-id", metavar="ID", type=_request_id, help="choose the request id"
    )
    parser.add_argument(
        "--query", metavar="QS", default="", help="the request's query string (a=1&b=2)"
    )
    parser.add_argument(
        "--timeout", metavar="S", type=_seconds, help="give up waiting after S seconds"
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be > 0")
    return value


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow run``; returns the exit status."""
    try:
        flow = load_define(args.target)
        data = _read_input(args)
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)
    try:
        result = asyncio.run(_run(args, flow, data))
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


def _functions_dir(args: argparse.Namespace, flow: FlowFile) -> Path | None:
    if args.functions is not None:
        folder = Path(args.functions)
        if not folder.is_dir():
            raise ConfigurationError(f"--functions {args.functions!r} is not a directory")
        return folder
    beside = flow.path.parent / "functions"
    return beside if beside.is_dir() else None


async def _run(args: argparse.Namespace, flow: FlowFile, data: bytes) -> bytes:
    # The engine is built inside the loop: its transport and pools belong to this run.
    engine = Engine(
        flow.define,
        flow_name=args.name or flow.stem,
        functions_dir=_functions_dir(args, flow),
        gateway=args.gateway,
        state_store=args.state,
        data_store=args.data_store,
    )
    if args.verbose:
        engine.executor.listeners.append(Progress())
    async with engine:
        return await engine.run(
            data, request_id=args.request_id, query=args.query, timeout=args.timeout
        )
