"""``faasflow worker FILE[:define]``: run a flow's hops from NATS JetStream until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from typing import TYPE_CHECKING

from faasflow.cli import options
from faasflow.cli.common import EXIT_FAILED, EXIT_USAGE, configuration_error, error
from faasflow.cli.embedded import functions_dir
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    TransportError,
)
from faasflow.metrics import EngineMetrics, MetricsApp, serve_metrics
from faasflow.runtime.flowfile import FlowFile, load_define

if TYPE_CHECKING:
    from faasflow.workers import Worker

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow worker`` and its options."""
    parser = subparsers.add_parser(
        "worker",
        parents=[options.flow_file(), options.nats(), options.stores(shared=True),
                 options.functions()],
        help="run a flow's hops from NATS JetStream (start any number, anywhere)",
        description=(
            "Take the hops of the flow in FILE from NATS JetStream and run them, until "
            "SIGTERM or Ctrl-C (running nodes finish first). Every worker and client of a "
            "flow must use the same --name, NATS server and stores: a memory:// store is "
            "refused (no other process could see it), a SQLite file serves the workers of "
            "one machine only. Needs the nats extra: pip install 'faasflow[nats]'."
        ),
    )
    options.deprecated_data_option(parser)
    parser.add_argument("--concurrency", type=int, default=64, metavar="N",
                        help="hops run at once by this worker (default: 64)")
    parser.add_argument("--ack-wait", type=float, default=30.0, metavar="S",
                        help="seconds before a silent worker's hop goes to another "
                        "(default: 30)")
    parser.add_argument("--max-deliveries", type=int, default=5, metavar="N",
                        help="deliveries of one hop before its request fails (default: 5)")
    parser.add_argument(
        "--resend-after", type=float, default=30.0, metavar="S",
        help="seconds a running request may go without progress and without a running "
        "node before its pending hops are sent again, e.g. hops lost with a NATS restart "
        "(default: 30)",
    )
    parser.add_argument("--sweep-interval", type=float, default=60.0, metavar="S",
                        help="seconds between two looks for such requests (default: 60)")
    parser.add_argument(
        "--metrics-port", metavar="N", default=options.env_default("metrics_port"),
        help="serve Prometheus metrics at http://HOST:N/metrics (and /healthz); 9102 is "
        "the usual choice (default: $FAASFLOW_METRICS_PORT; off)",
    )
    # Loopback, as every other faasflow server: /metrics needs no credentials, so
    # answering other machines (a Prometheus elsewhere, a pod's IP) is a choice to make.
    parser.add_argument(
        "--metrics-host", metavar="ADDR", default="127.0.0.1",
        help="the address the metrics port listens on (default: 127.0.0.1, this machine "
        "only; 0.0.0.0 for every interface, e.g. in a container Prometheus scrapes)",
    )
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow worker``; returns the exit status once stopped."""
    try:
        flow = load_define(args.target)
        worker = _worker(args, flow)
        worker.describe()  # a bad definition fails now, not on the first hop
        sock = _metrics_socket(args)
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except TransportError as exc:
        return error(str(exc), EXIT_FAILED)
    try:
        asyncio.run(_serve(worker, sock))
    except TransportError as exc:
        return error(options.nats_trouble(exc, str(args.nats)), EXIT_FAILED)
    except FaasFlowError as exc:
        return error(str(exc), EXIT_FAILED)
    finally:
        if sock is not None:
            sock.close()
    return 0


def _metrics_socket(args: argparse.Namespace) -> socket.socket | None:
    """The metrics port's listening socket, bound before anything starts so that a
    port in use is a usage error; ``None`` when metrics are off."""
    raw = args.metrics_port
    if raw is None or raw == "":
        return None
    if not str(raw).isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(
            f"--metrics-port ($FAASFLOW_METRICS_PORT) must be a port number, got {str(raw)!r}"
        )
    try:
        # Imported here: uvicorn is an extra (faasflow[server]).
        from faasflow.gateway.server import bind_socket
    except ModuleNotFoundError as missing:
        raise ConfigurationError(
            f"--metrics-port needs the {missing.name} package: pip install 'faasflow[server]'"
        ) from missing
    return bind_socket(args.metrics_host, int(raw))


def _worker(args: argparse.Namespace, flow: FlowFile) -> Worker:
    state, data = options.shared_stores(args)
    url = options.nats_url(args)
    # Imported here: nats-py is an extra (faasflow[nats]); other commands work without it.
    from faasflow.workers import Worker

    worker = Worker(
        flow.define,
        flow_name=args.name or flow.stem,
        nats=url,
        state_store=state,
        data_store=data,
        concurrency=args.concurrency,
        ack_wait=args.ack_wait,
        max_deliveries=args.max_deliveries,
        resend_after=args.resend_after,
        sweep_interval=args.sweep_interval,
        functions_dir=functions_dir(args, flow),
        gateway=args.gateway,
    )
    options.check_nats(url, options.source(args.nats, "--nats"))
    return worker


async def _serve(worker: Worker, metrics_socket: socket.socket | None) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # Attached before the worker starts, so that its first hop is counted too.
    metrics = EngineMetrics(worker) if metrics_socket is not None else None
    async with worker, contextlib.AsyncExitStack() as stack:
        if metrics is not None and metrics_socket is not None:
            await stack.enter_async_context(
                serve_metrics(MetricsApp(metrics.render), metrics_socket)
            )
        sys.stderr.write(f"faasflow worker for flow {worker.flow_name!r} ready\n")
        sys.stderr.flush()
        await stopping.wait()
