"""Start and control requests run by workers, without an HTTP server.

``faasflow submit FILE[:define]`` starts one (printing its id, or with ``--wait`` its
result); ``status``, ``result``, ``pause``, ``resume``, ``stop`` and ``redrive`` take a
request id. Reading and pausing need only the stores; the commands that send hops need
NATS; ``submit`` and ``stop`` (which runs the flow's hooks) need the flow file too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from faasflow.cli.common import EXIT_FAILED, EXIT_USAGE, error, seconds, write_stdout
from faasflow.cli.distributed import add_connection_options, nats_url, state_url
from faasflow.cli.loader import load_define
from faasflow.cli.report import format_requests, format_status, parse_statuses
from faasflow.cli.run import _read_input, _request_id
from faasflow.engine.views import STATUSES
from faasflow.errors import ConfigurationError, FaasFlowError, FlowDefinitionError

if TYPE_CHECKING:
    from faasflow.workers import Client

__all__ = ["add_parsers"]


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``submit``, ``status``, ``result``, ``pause``, ``resume``, ``stop``, ``redrive``."""
    submit = subparsers.add_parser(
        "submit", help="start a request for workers to run",
        description="Start a request of the flow in FILE on the workers; print its id "
        "(or, with --wait, its result).",
    )
    submit.add_argument("target", metavar="FILE[:define]", help="the flow file and function")
    submit.add_argument("--name", metavar="FLOW", help="the flow name (default: FILE's stem)")
    source = submit.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="TEXT", help="the request input")
    source.add_argument("--data-file", metavar="PATH", help="read the input from PATH ('-': stdin)")
    submit.add_argument("--request-id", metavar="ID", type=_request_id, help="choose the id")
    submit.add_argument("--query", metavar="QS", default="", help="the request's query string")
    submit.add_argument("--wait", metavar="S", type=seconds,
                        help="wait up to S seconds and print the result instead of the id")
    add_connection_options(submit)
    submit.set_defaults(handler=_submit)

    status = subparsers.add_parser(
        "status", help="a request's status and node tree with timings",
        description="Print a request's status and its nodes as a tree (sub-DAGs and "
        "branches nested), each with its state, attempt, duration and sizes.",
    )
    status.add_argument("request_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_connection_options(status, nats=False, data=False)
    status.set_defaults(handler=lambda args: _control(args, _status, needs=()))

    listing = subparsers.add_parser(
        "requests", help="list a flow's requests, newest first",
        description="List the requests of FLOW still on record (finished ones are kept "
        "for the result TTL), newest first, a page at a time.",
    )
    listing.add_argument("name", metavar="FLOW", help="the flow name")
    listing.add_argument("--status", type=parse_statuses, metavar="S[,S]",
                         help=f"only these statuses ({', '.join(STATUSES)})")
    listing.add_argument("--limit", type=_limit, default=20, metavar="N",
                         help="requests per page (default 20)")
    listing.add_argument("--before", metavar="CURSOR",
                         help="the next page: the cursor the previous page printed")
    listing.add_argument("--json", action="store_true", help="print the page as JSON")
    add_connection_options(listing, nats=False, data=False)
    listing.set_defaults(handler=lambda args: _control(args, _requests, needs=()))

    result = subparsers.add_parser("result", help="a succeeded request's result, to stdout")
    result.add_argument("request_id", metavar="ID")
    add_connection_options(result, nats=False)
    result.set_defaults(handler=lambda args: _control(args, _result, needs=()))

    for verb, needs, text in (
        ("pause", (), "hold a request: running nodes finish, the next wait for resume"),
        ("resume", ("nats",), "continue a paused request"),
        ("stop", ("nats", "flow"), "end a request now (its hooks run once)"),
        ("redrive", ("nats",), "run a failed request again from its failed node"),
    ):
        parser = subparsers.add_parser(verb, help=text)
        parser.add_argument("request_id", metavar="ID")
        if "flow" in needs:
            parser.add_argument("--flow", metavar="FILE[:define]", required=True,
                                help="the flow file (its on_failure/finally_ hooks run)")
        parser.add_argument("--name", metavar="FLOW", help="the flow name")
        add_connection_options(parser, nats="nats" in needs)
        parser.set_defaults(
            handler=lambda args, verb=verb, needs=needs: _control(args, _verb(verb), needs)
        )


async def _client(args: argparse.Namespace, needs: tuple[str, ...]) -> Client:
    """A client for ``args``; its flow name is ``--name``, else the flow file's stem, else
    the one on the request's record (hops must go to that flow's subject)."""
    # Imported here: nats-py is an extra (faasflow[nats]); other commands work without it.
    from faasflow.workers import Client

    define, name = None, getattr(args, "name", None)
    if "flow" in needs:
        flow = load_define(args.flow)
        define, name = flow.define, name or flow.stem
    # Reading works on the embedded default store too (where `faasflow run` keeps them).
    state = state_url(args, default=not needs)
    data = getattr(args, "data_store", None)
    if name is None and "nats" in needs:
        async with Client(state_store=state) as reader:
            name = (await reader.info(args.request_id)).flow
    return Client(
        define,
        flow_name=name or "flow",
        nats=nats_url(args) if "nats" in needs else None,
        state_store=state,
        data_store=data,
    )


def _submit(args: argparse.Namespace) -> int:
    try:
        from faasflow.workers import Client

        flow = load_define(args.target)
        data = _read_input(args)
        client = Client(
            flow.define, flow_name=args.name or flow.stem, nats=nats_url(args),
            state_store=state_url(args), data_store=args.data_store,
        )
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)

    async def go() -> bytes | str:
        async with client:
            rid = await client.submit(data, request_id=args.request_id, query=args.query)
            if args.wait is None:
                return rid
            return await client.wait(rid, args.wait, poll=0.05)

    try:
        out = asyncio.run(go())
    except (FlowDefinitionError, ConfigurationError) as exc:
        return error(str(exc), EXIT_USAGE)
    except (FaasFlowError, TimeoutError) as exc:
        return error(str(exc), EXIT_FAILED)
    if isinstance(out, str):
        print(out)
    else:
        write_stdout(out)
    return 0


def _limit(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1-1000, got {text!r}")
    return value


def _control(
    args: argparse.Namespace,
    action: Callable[[Client, argparse.Namespace], Awaitable[None]],
    needs: tuple[str, ...],
) -> int:
    async def go() -> None:
        async with await _client(args, needs) as client:
            await action(client, args)

    try:
        asyncio.run(go())
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)
    except FaasFlowError as exc:
        return error(str(exc), EXIT_FAILED)
    return 0


async def _status(client: Client, args: argparse.Namespace) -> None:
    info = await client.info(args.request_id, nodes=True)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_status(info))


async def _requests(client: Client, args: argparse.Namespace) -> None:
    page = await client.list_requests(status=args.status, limit=args.limit, before=args.before)
    print(format_requests(page, as_json=args.json))


async def _result(client: Client, args: argparse.Namespace) -> None:
    write_stdout(await client.result(args.request_id))


_DONE = {
    "pause": "paused",
    "resume": "resumed ({} held hop(s) sent)",
    "stop": "stopped",
    "redrive": "redriven ({} hop(s) sent)",
}
"""What each control verb reports on stderr; ``{}`` is the number of hops it sent."""


def _verb(verb: str) -> Callable[[Client, argparse.Namespace], Awaitable[None]]:
    async def act(client: Client, args: argparse.Namespace) -> None:
        sent = await getattr(client, verb)(args.request_id)
        print(f"{args.request_id} {_DONE[verb].format(sent)}", file=sys.stderr)

    return act
