"""Start, read and control requests without an HTTP server.

``faasflow submit FILE[:define]`` starts one for workers (printing its id, or with
``--wait`` its result); ``status``, ``result``, ``pause``, ``resume``, ``stop`` and
``redrive`` take a request id, ``requests`` a flow name. Reading and pausing need only
the stores, so they work on the base install, for requests run by ``faasflow run``,
a flow server or workers alike. ``resume`` and ``redrive`` send hops: to the workers
with ``--nats``; without it they run the hops in this process, with the flow file
(``--flow``), and wait for the request's end as ``faasflow run`` does. ``stop`` runs the
flow's hooks here, so it needs the flow file too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from faasflow.cli import options
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    configuration_error,
    error,
    seconds,
    write_result,
)
from faasflow.cli.embedded import build_engine, read_input, recover_command
from faasflow.cli.interrupt import Interrupted, exit_interrupted, until_interrupted
from faasflow.cli.report import format_requests, format_status, parse_statuses
from faasflow.config import get_int
from faasflow.engine.views import STATUSES
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    FlowDefinitionError,
    TransportError,
)
from faasflow.runtime import RequestsApi
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import FlowFile, load_define
from faasflow.transports.base import HopHandler, Transport
from faasflow.wire.hop import Hop

if TYPE_CHECKING:
    from faasflow.workers import Client

__all__ = ["add_parsers"]

HINT_AFTER = 5.0
"""Seconds ``submit --wait`` waits for a worker to take the first hop before it says
that none has (or half of ``--wait``, when that is shorter)."""

_DONE = {
    "pause": "paused",
    "resume": "resumed ({} held hop(s) sent)",
    "stop": "stopped",
    "redrive": "redriven ({} hop(s) sent)",
}
"""What each control verb reports on stderr; ``{}`` is the number of hops it sent."""


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``submit``, ``status``, ``requests``, ``result``, ``pause``, ``resume``,
    ``stop`` and ``redrive``."""
    submit = subparsers.add_parser(
        "submit",
        parents=[options.flow_file(), options.request_input(), options.nats(),
                 options.stores(shared=True)],
        help="start a request for workers to run",
        description="Start a request of the flow in FILE on the workers (faasflow worker) "
        "of the same --name, NATS server and stores; print its id, or with --wait its "
        "result. Needs the nats extra: pip install 'faasflow[nats]'.",
    )
    submit.add_argument(
        "--wait", metavar="S", type=seconds,
        help="wait up to S seconds for the request to end and print its result instead "
        "of its id; say so when no worker takes it (default: print the id at once)",
    )
    submit.set_defaults(handler=_submit)

    status = subparsers.add_parser(
        "status", parents=[options.stores(data=False)],
        help="a request's status and node tree with timings",
        description="Print a request's status and its nodes as a tree (sub-DAGs and "
        "branches nested), each with its state, attempt, duration and sizes. Reads the "
        "state store only.",
    )
    status.add_argument("request_id", metavar="ID", help="the request's id")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=lambda args: _read(args, _status))

    listing = subparsers.add_parser(
        "requests", parents=[options.stores(data=False)],
        help="list a flow's requests, newest first",
        description="List the requests of FLOW still on record (finished ones are kept "
        "for the result TTL), newest first, a page at a time. Reads the state store only.",
    )
    listing.add_argument("flow_name", metavar="FLOW", help="the flow's name")
    listing.add_argument("--status", type=parse_statuses, metavar="S[,S]",
                         help=f"only these statuses: {', '.join(STATUSES)} (default: all)")
    listing.add_argument("--limit", type=_limit, default=20, metavar="N",
                         help="requests per page, 1-1000 (default: 20)")
    listing.add_argument("--before", metavar="CURSOR",
                         help="the next page: the cursor the previous page printed "
                         "(default: the first page)")
    listing.add_argument("--json", action="store_true", help="print the page as JSON")
    listing.set_defaults(handler=lambda args: _read(args, _requests))

    result = subparsers.add_parser(
        "result", parents=[options.stores()],
        help="a succeeded request's result, to stdout",
        description="Write a succeeded request's result to stdout, unchanged (on a "
        "terminal, followed by a newline). Reads the stores only. Exit status: 1 when the "
        "request has no result (running, failed, stopped, unknown or expired).",
    )
    result.add_argument("request_id", metavar="ID", help="the request's id")
    result.set_defaults(handler=lambda args: _read(args, _result))

    pause = subparsers.add_parser(
        "pause", parents=[options.stores()],
        help="hold a request: running nodes finish, the next wait for resume",
        description="Pause a running request: nodes running now finish, the hops after "
        "them are kept until `faasflow resume`. Writes the state store only.",
    )
    pause.add_argument("request_id", metavar="ID", help="the request's id")
    _name_option(pause)
    pause.set_defaults(handler=lambda args: _read(args, _verb("pause")))

    for verb, text, what in (
        ("resume", "continue a paused request",
         "Resume a paused request: each hop held while it was paused is sent once."),
        ("redrive", "run a failed request again from its failed node",
         "Run a failed request again from the node(s) that failed, keeping every result "
         "already computed."),
    ):
        parser = subparsers.add_parser(
            verb, parents=[options.nats(), options.stores(), options.functions()],
            help=text,
            description=f"{what} With --nats the workers run the hops; without, this "
            "process runs them with the flow file (--flow), waits for the request's end "
            "and writes its result to stdout, as `faasflow run` does.",
        )
        parser.add_argument("request_id", metavar="ID", help="the request's id")
        parser.add_argument(
            "--flow", metavar="FILE[:define]",
            help="the flow file, to run the hops here (needed without --nats)",
        )
        _name_option(parser)
        parser.add_argument("-v", "--verbose", action="store_true",
                            help="without --nats: print each node's events on stderr")
        parser.set_defaults(handler=lambda args, verb=verb: _control(args, verb))

    stop = subparsers.add_parser(
        "stop", parents=[options.nats(), options.stores()],
        help="end a request now (its hooks run once)",
        description="End a running, paused or failed request now. Its on_failure and "
        "finally_ hooks run once, here: pass the flow file.",
    )
    stop.add_argument("request_id", metavar="ID", help="the request's id")
    stop.add_argument("--flow", metavar="FILE[:define]", required=True,
                      help="the flow file (its on_failure/finally_ hooks run here)")
    _name_option(stop)
    stop.set_defaults(handler=lambda args: _control(args, "stop"))


def _name_option(parser: argparse.ArgumentParser) -> None:
    # No variable here: the request's record names its flow, and a FAASFLOW_NAME set
    # for workers of another flow must not point a control verb at the wrong keys.
    parser.add_argument("--name", metavar="FLOW",
                        help="the flow's name (default: the one on the request's record)")


def _limit(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1-1000, got {text!r}")
    return value


# -- reading: the stores only -------------------------------------------------------------


class _StoresOnly(Transport):
    """The transport of a command that reads or pauses: it sends no hop."""

    async def start(self, handler: HopHandler) -> None:
        pass

    async def send(self, hop: Hop) -> None:
        raise ConfigurationError(f"cannot send hop {hop.id}: this command only reads")

    async def close(self) -> None:
        pass


def _no_definition(flow: Any, context: Any) -> None:
    raise ConfigurationError("this command has no flow file: it only reads")


def _reader(args: argparse.Namespace, flow_name: str = "flow") -> Engine:
    """An engine on the stores of ``args`` that reads (and pauses), and runs nothing.

    The embedded engine rather than the workers' client: reading needs no NATS, so it
    works on the base install and on the embedded default store alike.
    """
    return Engine(
        _no_definition, flow_name=flow_name,
        state_store=options.state_url(args, default=True),
        data_store=getattr(args, "data_store", None),
        transport=_StoresOnly(), sweep_interval=None,
    )  # fmt: skip


def _read(
    args: argparse.Namespace, action: Callable[[RequestsApi, argparse.Namespace], Awaitable[None]]
) -> int:
    async def go() -> None:
        name = getattr(args, "flow_name", None) or getattr(args, "name", None) or "flow"
        async with _reader(args, name) as reader:
            await action(reader, args)

    try:
        asyncio.run(go())
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FaasFlowError as exc:
        return error(str(exc), EXIT_FAILED)
    return 0


async def _status(reader: RequestsApi, args: argparse.Namespace) -> None:
    info = await reader.info(args.request_id, nodes=True)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_status(info))


async def _requests(reader: RequestsApi, args: argparse.Namespace) -> None:
    page = await reader.list_requests(status=args.status, limit=args.limit, before=args.before)
    print(format_requests(page, as_json=args.json))


async def _result(reader: RequestsApi, args: argparse.Namespace) -> None:
    write_result(await reader.result(args.request_id))


def _verb(verb: str) -> Callable[[RequestsApi, argparse.Namespace], Awaitable[None]]:
    async def act(runtime: RequestsApi, args: argparse.Namespace) -> None:
        sent = await getattr(runtime, verb)(args.request_id)
        print(f"{args.request_id} {_DONE[verb].format(sent)}", file=sys.stderr)

    return act


# -- control: hops sent to workers, or run here -------------------------------------------


def _control(args: argparse.Namespace, verb: str) -> int:
    try:
        if args.nats:
            return _on_workers(args, verb)
        if args.flow is None:
            raise ConfigurationError(
                f"faasflow {verb} sends hops: pass --nats URL (or set FAASFLOW_NATS) for "
                "the workers to run them, or --flow FILE to run them here"
            )
        return _here(args, verb, load_define(args.flow))
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except (FaasFlowError, TimeoutError) as exc:
        return error(str(exc), EXIT_FAILED)


async def _flow_name(args: argparse.Namespace) -> str:
    """``--name``, else the flow on the request's record (hops and data are the flow's)."""
    if args.name:
        return str(args.name)
    async with _reader(args) as reader:
        return (await reader.info(args.request_id)).flow


def _on_workers(args: argparse.Namespace, verb: str) -> int:
    url = options.nats_url(args)
    state = options.state_url(args, default=False)
    options.check_nats(url, options.source(args.nats, "--nats"))
    flow = load_define(args.flow) if args.flow else None
    # Imported here: nats-py is an extra (faasflow[nats]); other commands work without it.
    from faasflow.workers import Client

    async def go() -> None:
        name = await _flow_name(args)
        client = Client(flow.define if flow else None, flow_name=name, nats=url,
                        state_store=state, data_store=args.data_store)
        async with client:
            await _verb(verb)(client, args)

    try:
        asyncio.run(go())
    except TransportError as exc:
        return error(options.nats_trouble(exc, url), EXIT_FAILED)
    return 0


def _here(args: argparse.Namespace, verb: str, flow: FlowFile) -> int:
    args.target = args.flow  # what `faasflow recover` would be given
    for missing in ("functions", "gateway", "verbose"):
        if not hasattr(args, missing):
            setattr(args, missing, None)

    async def go() -> bytes | None:
        engine = build_engine(args, flow, name=await _flow_name(args))
        async with engine:
            await _verb(verb)(engine, args)
            if verb == "stop":
                return None

            def notice() -> str:
                return (f"interrupted: request {args.request_id} is still running; continue "
                        f"it with `{recover_command(args)}`")

            return await until_interrupted(engine.wait(args.request_id), notice)

    try:
        result = asyncio.run(go())
    except Interrupted:
        exit_interrupted()
    if result is not None:
        write_result(result)
    return 0


# -- submitting ---------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    try:
        state, data_store = options.shared_stores(args)
        url = options.nats_url(args)
        flow = load_define(args.target)
        options.check_nats(url, options.source(args.nats, "--nats"))
        data = read_input(args)
        # Imported here: nats-py is an extra (faasflow[nats]); other commands work without it.
        from faasflow.workers import Client

        name = str(args.name or flow.stem)
        client = Client(flow.define, flow_name=name, nats=url, state_store=state,
                        data_store=data_store, max_input_size=get_int("max_body_size"))
    except ConfigurationError as exc:
        return configuration_error(exc)
    except TransportError as exc:
        return error(str(exc), EXIT_FAILED)
    hint = (f"no worker has taken request {{rid}} of flow {name!r} yet: are workers running "
            f"with --name {name}, --nats {url} and --state {state}?")

    async def go() -> bytes | str:
        async with client:
            rid = await client.submit(data, request_id=args.request_id, query=args.query)
            if args.wait is None:
                return rid
            return await _wait_noting(client, rid, args.wait, hint.replace("{rid}", rid))

    try:
        out = asyncio.run(go())
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except TransportError as exc:
        return error(options.nats_trouble(exc, url), EXIT_FAILED)
    except (FaasFlowError, TimeoutError) as exc:
        return error(str(exc), EXIT_FAILED)
    if isinstance(out, str):
        print(out)
    else:
        write_result(out)
    return 0


async def _wait_noting(client: Client, rid: str, wait: float, hint: str) -> bytes:
    """Wait up to ``wait`` seconds for ``rid``'s result; if no worker has taken its
    first hop after :data:`HINT_AFTER` seconds, say so on stderr (and in the error if
    it never ends): workers of another flow name or on other stores never will."""
    early = min(HINT_AFTER, wait / 2)
    try:
        return await client.wait(rid, early, poll=0.05)
    except TimeoutError:
        pass
    if not await _taken(client, rid):
        sys.stderr.write(f"faasflow submit: {hint}\n")
        sys.stderr.flush()
    try:
        return await client.wait(rid, wait - early, poll=0.05)
    except TimeoutError:
        ended = f"request {rid} did not end within {wait:g}s"
        if not await _taken(client, rid):
            raise TimeoutError(f"{ended}; {hint}") from None
        raise TimeoutError(ended) from None


async def _taken(client: Client, rid: str) -> bool:
    """Whether a worker started any node of ``rid`` (its history says so)."""
    return any(entry.get("kind") == "node" for entry in await client.history(rid))
