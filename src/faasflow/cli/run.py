"""``faasflow run FILE[:define]``: run one request embedded and write its result to stdout."""

from __future__ import annotations

import argparse
import asyncio

from faasflow.cli import options
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    configuration_error,
    error,
    seconds,
    write_result,
)
from faasflow.cli.embedded import (
    build_engine,
    outlives_process,
    read_input,
    recover_command,
    status_command,
)
from faasflow.cli.interrupt import Interrupted, exit_interrupted, until_interrupted
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    RequestFailedError,
)
from faasflow.runtime import new_request_id
from faasflow.runtime.flowfile import FlowFile, load_define

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow run`` and its options."""
    parser = subparsers.add_parser(
        "run",
        parents=[options.flow_file(), options.request_input(), options.functions(),
                 options.stores(), options.verbose()],
        help="run one request of a flow in this process",
        description=(
            "Run one request of the flow defined in FILE (its define(flow, context), or "
            "FILE:NAME) and write the result bytes to stdout, unchanged (on a terminal, "
            "followed by a newline). On Ctrl-C, print the request's id and the `faasflow "
            "recover` command that continues it, and exit at once (a node running in a "
            "thread dies with the process and runs again on recovery). Exit status: 0 "
            "success, 1 the request failed, 2 a bad argument or flow definition, 3 a "
            "missing extra, 130 interrupted."
        ),
    )
    parser.add_argument(
        "--timeout", metavar="S", type=seconds,
        help="give up waiting after S seconds (default: wait until the request ends)",
    )  # fmt: skip
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow run``; returns the exit status."""
    try:
        flow = load_define(args.target)
        data = read_input(args)
    except ConfigurationError as exc:
        return configuration_error(exc)
    try:
        result = asyncio.run(_run(args, flow, data))
    except Interrupted:
        exit_interrupted()
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except RequestFailedError as exc:
        # The message names request, node, attempt and cause.
        return error(str(exc), EXIT_FAILED)
    except (FaasFlowError, TimeoutError) as exc:
        return error(str(exc), EXIT_FAILED)
    write_result(result)
    return 0


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
