"""``faasflow recover FILE[:define]``: continue the requests a process left unfinished.

A ``faasflow run`` that was interrupted (Ctrl-C) or killed leaves its request running in
the store. ``recover`` takes over the flow's unfinished requests whose process has ended
(:meth:`faasflow.Engine.recover`: their pending hops are sent again; a node that was
running when its process ended runs again), waits for them here, and prints one line per
request as it ends: ``ID STATUS``.

The results are not printed: ``faasflow run`` writes its one result to stdout unchanged
(bytes, no newline), which cannot be told apart from other lines; ``faasflow result ID``
writes a result the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from faasflow.cli import options
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    configuration_error,
    error,
    seconds,
)
from faasflow.cli.embedded import build_engine, recover_command
from faasflow.cli.interrupt import Interrupted, exit_interrupted, until_interrupted
from faasflow.engine.views import FAILED, PAUSED, RUNNING, STOPPED, SUCCEEDED
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    RequestFailedError,
    RequestStoppedError,
)
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import FlowFile, load_define

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow recover`` and its options."""
    parser = subparsers.add_parser(
        "recover",
        parents=[options.flow_file(), options.functions(), options.stores(),
                 options.verbose()],
        help="continue the requests of a flow that an ended process left running",
        description=(
            "Take over the unfinished requests of the flow in FILE that a process which "
            "has ended (a `faasflow run` interrupted or killed) left in the store, run "
            "them to their end in this process, and print one line per request as it "
            "ends: its id and status (succeeded, failed, stopped; paused ones are taken "
            "over but not waited for). Results stay in the store: `faasflow result ID` "
            "prints one. Use the same FILE, --state and --name as the run. Exit status: 0 "
            "every request taken over succeeded (or there was none), 1 otherwise, 2 a bad "
            "argument or flow definition, 3 a missing extra, 130 interrupted."
        ),
    )
    parser.add_argument(
        "--timeout", metavar="S", type=seconds,
        help="give up waiting after S seconds; the requests left are reported running "
        "(default: wait until each ends)",
    )  # fmt: skip
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow recover``; returns the exit status."""
    try:
        flow = load_define(args.target)
    except ConfigurationError as exc:
        return configuration_error(exc)
    try:
        return asyncio.run(_recover(args, flow))
    except Interrupted:
        exit_interrupted()
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except FaasFlowError as exc:
        return error(str(exc), EXIT_FAILED)


async def _recover(args: argparse.Namespace, flow: FlowFile) -> int:
    engine = build_engine(args, flow)
    async with engine:
        taken = await engine.recover()
        if not taken:
            sys.stderr.write(
                f"nothing to recover: no unfinished request of flow {engine.flow_name!r} "
                "was left by a process that ended\n"
            )
            return EXIT_OK
        running = set(taken)

        def notice() -> str:
            left = ", ".join(sorted(running))
            return (
                f"interrupted: request(s) {left} still running; continue with "
                f"`{recover_command(args)}`"
            )

        async def report_all() -> int:
            status = EXIT_OK
            waits = [asyncio.create_task(_outcome(engine, rid, args.timeout)) for rid in taken]
            try:
                # A line as each one ends: the first may take much longer than the others.
                for finished in asyncio.as_completed(waits):
                    rid, state, problem = await finished
                    running.discard(rid)
                    print(f"{rid} {state}", flush=True)
                    if problem is not None:
                        error(problem, EXIT_FAILED)
                    if state != SUCCEEDED:
                        status = EXIT_FAILED
            finally:
                for wait in waits:
                    wait.cancel()
            return status

        return await until_interrupted(report_all(), notice)


async def _outcome(engine: Engine, rid: str, timeout: float | None) -> tuple[str, str, str | None]:
    """How request ``rid`` ended: its id, its status and the error to print, if any."""
    if await engine.state_of(rid) == PAUSED:
        return rid, PAUSED, None  # it goes on once resumed; waiting here could be forever
    try:
        await engine.wait(rid, timeout)
    except RequestFailedError as exc:
        return rid, FAILED, str(exc)
    except RequestStoppedError:
        return rid, STOPPED, None
    except TimeoutError as exc:
        return rid, RUNNING, str(exc)
    return rid, SUCCEEDED, None
