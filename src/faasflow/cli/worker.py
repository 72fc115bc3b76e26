"""``faasflow worker FILE[:define]``: run a flow's hops from NATS JetStream until stopped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from faasflow.cli.common import EXIT_FAILED, EXIT_USAGE, error
from faasflow.cli.distributed import add_connection_options, nats_url, state_url
from faasflow.cli.loader import FlowFile, load_define
from faasflow.errors import ConfigurationError, FaasFlowError, FlowDefinitionError

if TYPE_CHECKING:
    from faasflow.workers import Worker

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow worker`` and its options."""
    parser = subparsers.add_parser(
        "worker",
        help="run a flow's hops from NATS JetStream (start any number, anywhere)",
        description=(
            "Take the hops of the flow in FILE from NATS JetStream and run them, until "
            "SIGTERM or Ctrl-C (running nodes finish first). Every worker and client of a "
            "flow must use the same --name, NATS server and stores."
        ),
    )
    parser.add_argument("target", metavar="FILE[:define]", help="the flow file and function")
    parser.add_argument("--name", metavar="FLOW", help="the flow name (default: FILE's stem)")
    add_connection_options(parser)
    parser.add_argument("--data", dest="data_store", metavar="URL",
                        help="same as --data-store")
    parser.add_argument("--concurrency", type=int, default=64, metavar="N",
                        help="hops run at once by this worker (default 64)")
    parser.add_argument("--ack-wait", type=float, default=30.0, metavar="S",
                        help="seconds before a silent worker's hop goes to another (default 30)")
    parser.add_argument("--max-deliveries", type=int, default=5, metavar="N",
                        help="deliveries of one hop before its request fails (default 5)")
    parser.add_argument("--functions", metavar="DIR",
                        help="handler folders for apply() (default: functions/ next to FILE)")
    parser.add_argument("--gateway", metavar="URL", help="an OpenFaaS gateway for apply()")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow worker``; returns the exit status once stopped."""
    try:
        flow = load_define(args.target)
        worker = _worker(args, flow)
        worker.describe()  # a bad definition fails now, not on the first hop
    except (ConfigurationError, FlowDefinitionError) as exc:
        return error(str(exc), EXIT_USAGE)
    try:
        asyncio.run(_serve(worker))
    except FaasFlowError as exc:
        return error(str(exc), EXIT_FAILED)
    return 0


def _worker(args: argparse.Namespace, flow: FlowFile) -> Worker:
    # Imported here: nats-py is an extra (faasflow[nats]); other commands work without it.
    from faasflow.workers import Worker

    folder = Path(args.functions) if args.functions else flow.path.parent / "functions"
    return Worker(
        flow.define,
        flow_name=args.name or flow.stem,
        nats=nats_url(args),
        state_store=state_url(args),
        data_store=args.data_store,
        concurrency=args.concurrency,
        ack_wait=args.ack_wait,
        max_deliveries=args.max_deliveries,
        functions_dir=folder if folder.is_dir() else None,
        gateway=args.gateway,
    )


async def _serve(worker: Worker) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with worker:
        sys.stderr.write(f"faasflow worker for flow {worker.flow_name!r} ready\n")
        sys.stderr.flush()
        await stopping.wait()
