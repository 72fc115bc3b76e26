"""``faasflow dashboard``: the flows, their DAGs and their requests, live, in a browser.

Two sources: flow files given on the command line (each served by an engine of this
process on ``--state``/``--data``, or, with ``--nats``, by the workers), or without files
the flows of ``--gateway`` (functions labelled ``faas-flow: "1"``).

Sign-in: ``--token`` ($FAASFLOW_DASHBOARD_TOKEN; a sign-in with the form lasts
``--session-max-age`` seconds) and/or ``--basic-auth USER:PASSWORD``
($FAASFLOW_DASHBOARD_BASIC_AUTH). Without either the dashboard is open to anyone who can
reach it, so it listens on loopback only unless ``--insecure``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

from faasflow.cli import options
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_MISSING_TOOL,
    EXIT_OK,
    EXIT_USAGE,
    configuration_error,
    error,
)
from faasflow.cli.embedded import functions_dir
from faasflow.dashboard.sessions import DEFAULT_SESSION_MAX_AGE
from faasflow.errors import ConfigurationError, FlowDefinitionError, TransportError
from faasflow.runtime.flowfile import load_define

if TYPE_CHECKING:
    from faasflow.dashboard.auth import Credentials
    from faasflow.dashboard.sessions import Sessions
    from faasflow.dashboard.sources import Source

__all__ = ["add_parser", "command"]

DEFAULT_PORT = 8090
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LISTENING = "faasflow dashboard listening on {url}"
"""The line written to stdout once the dashboard serves."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow dashboard`` and its options."""
    parser = subparsers.add_parser(
        "dashboard",
        parents=[
            options.flow_file(many=True), options.stores(), options.nats(),
            options.functions(gateway="without FILEs: the gateway whose flows to list and "
                              "drive; with FILEs: the gateway apply() calls go to"),
        ],
        help="see flows, DAGs and requests in a browser; execute and control requests",
        description=(
            "Serve a web dashboard of the flows in FILEs (run by this process on --state, "
            "or by workers with --nats), or, without FILEs, of the flows behind --gateway. "
            "See docs/dashboard.md. Needs the server extra: pip install 'faasflow[server]'."
        ),
    )
    options.deprecated_data_option(parser)
    parser.add_argument("--gateway-user", metavar="USER",
                        default=options.env_default("gateway_user"),
                        help="the gateway's basic-auth user (default: $FAASFLOW_GATEWAY_USER)")
    parser.add_argument("--gateway-password", metavar="PASSWORD",
                        default=options.env_default("gateway_password"),
                        help="the gateway's basic-auth password (default: "
                        "$FAASFLOW_GATEWAY_PASSWORD)")
    parser.add_argument("--control-token", metavar="TOKEN",
                        default=options.env_default("control_token"),
                        help="the flows' control token, the flow servers' "
                        "faasflow-control-token (default: $FAASFLOW_CONTROL_TOKEN or "
                        "$faasflow_control_token)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the port to listen on (default: {DEFAULT_PORT}; 0: any free "
                        "port)")
    parser.add_argument("--token", default=options.env_default("dashboard_token"),
                        help="require this token: Authorization: Bearer, or the sign-in "
                        "form (default: $FAASFLOW_DASHBOARD_TOKEN)")
    parser.add_argument("--session-max-age", metavar="SECONDS", type=float,
                        default=DEFAULT_SESSION_MAX_AGE,
                        help="how long a sign-in with the form lasts (default "
                        f"{DEFAULT_SESSION_MAX_AGE:.0f}, 12 hours)")
    parser.add_argument("--basic-auth", metavar="USER:PASSWORD",
                        default=options.env_default("dashboard_basic_auth"),
                        help="require these credentials (default: "
                        "$FAASFLOW_DASHBOARD_BASIC_AUTH)")
    parser.add_argument("--insecure", action="store_true",
                        help="listen on a non-loopback --host without any credential "
                        "(default: refuse)")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow dashboard``; returns the exit status once stopped."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return error(f"faasflow dashboard needs Starlette and uvicorn ({exc.name} is "
                     "missing): pip install 'faasflow[server]'", EXIT_MISSING_TOOL)
    from faasflow.dashboard.app import create_app
    from faasflow.gateway.server import serve

    try:
        credentials = _credentials(args)
        sessions = _sessions(args, credentials)
        allowed = _check_exposure(args, credentials)
        app = create_app(_source(args), credentials=credentials, allowed_hosts=allowed,
                         sessions=sessions)
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except TransportError as exc:
        return error(str(exc), EXIT_FAILED)
    if not credentials.configured:
        sys.stderr.write("no --token or --basic-auth: the dashboard is open to anyone "
                         f"who can reach {args.host}"
                         + (" (loopback only)\n" if allowed else "\n"))
    # uvicorn stops gracefully on SIGTERM, then raises it again for the previous
    # handler: this one makes that the end of a normal run.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        asyncio.run(serve(app, host=args.host, port=args.port, on_ready=_announce))
    except (ConfigurationError, RuntimeError) as exc:
        return error(str(exc), EXIT_USAGE)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _credentials(args: argparse.Namespace) -> Credentials:
    from faasflow.dashboard.auth import Credentials, parse_basic_auth

    basic = None
    if args.basic_auth is not None:
        basic = parse_basic_auth(args.basic_auth,
                                 "--basic-auth (or $FAASFLOW_DASHBOARD_BASIC_AUTH)")
    return Credentials(token=args.token, basic=basic)


def _sessions(args: argparse.Namespace, credentials: Credentials) -> Sessions | None:
    from faasflow.dashboard.sessions import Sessions

    if credentials.token is None:
        return None
    return Sessions(credentials.token, max_age=args.session_max_age)


def _check_exposure(args: argparse.Namespace, credentials: Credentials) -> list[str] | None:
    """The Host names to answer (loopback, when open), or ``None`` for any; refuses an
    open dashboard on another address unless ``--insecure``."""
    if credentials.configured:
        return None
    if args.host in LOOPBACK:
        return list(LOOPBACK)
    if args.insecure:
        return None
    raise ConfigurationError(
        f"refusing to serve on --host {args.host} without --token or --basic-auth: anyone "
        "reaching it could run and stop requests (pass --insecure to do it anyway)"
    )


def _source(args: argparse.Namespace) -> Source:
    if args.targets:
        return _local_source(args)
    if options.given(args.name):
        raise ConfigurationError("--name names the flow of a FILE: give one FILE")
    if not args.gateway:
        raise ConfigurationError("nothing to show: give flow FILEs, or --gateway URL")
    from faasflow.dashboard.remote import GatewaySource

    basic = None
    if args.gateway_user or args.gateway_password:
        if not (args.gateway_user and args.gateway_password):
            raise ConfigurationError("--gateway-user and --gateway-password go together")
        basic = (args.gateway_user, args.gateway_password)
    return GatewaySource(args.gateway, basic_auth=basic, control_token=args.control_token)


def _local_source(args: argparse.Namespace) -> Source:
    from faasflow.dashboard.sources import LocalFlow, LocalSource
    from faasflow.gateway.flows import ServedFlow
    from faasflow.gateway.registry import FUNCTION_NAME
    from faasflow.runtime import Engine, Submitting

    if args.name and len(args.targets) > 1:
        raise ConfigurationError(f"{options.source(args.name, '--name')} names one flow: "
                                 "give one FILE, or no flow name")
    if args.nats:
        # Workers run the hops: the stores must be theirs, and NATS must be there.
        state, _ = options.shared_stores(args)
        options.check_nats(args.nats, options.source(args.nats, "--nats"))
    else:
        state = options.state_url(args, default=True)
    flows: list[LocalFlow] = []
    for target in args.targets:
        flow = load_define(target)
        name = args.name or flow.stem
        if not FUNCTION_NAME.match(name):
            raise ConfigurationError(f"{target}: flow name {name!r} must be letters, digits, "
                                     "'-' and '_' (pass --name)")
        folder = functions_dir(args, flow)
        engine: Submitting
        if args.nats:
            # Imported here: nats-py is an extra (faasflow[nats]).
            from faasflow.workers import Client

            engine = Client(
                flow.define, nats=args.nats, flow_name=name, state_store=state,
                data_store=args.data_store, functions_dir=folder, gateway=args.gateway,
            )  # fmt: skip
        else:
            engine = Engine(
                flow.define, flow_name=name, state_store=state, data_store=args.data_store,
                functions_dir=folder, gateway=args.gateway,
            )  # fmt: skip
        engine.describe()  # a bad definition fails now, not on the first page
        description = ServedFlow(name=name, file=flow.path).description()
        flows.append(LocalFlow(name, engine, description))
    # An embedded engine runs hops: it takes over requests whose process died.
    return LocalSource(flows, recover=not args.nats)


def _announce(url: str) -> None:
    sys.stdout.write(LISTENING.format(url=url) + "\n")
    sys.stdout.flush()


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)
