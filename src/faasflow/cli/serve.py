"""``faasflow serve``: run a flow as an HTTP function (the faas-flow wire protocol)."""

from __future__ import annotations

import argparse
import dataclasses

from faasflow import config as settings
from faasflow.cli import options
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_MISSING_TOOL,
    EXIT_USAGE,
    configuration_error,
    error,
)
from faasflow.cli.embedded import functions_dir
from faasflow.config import server_config
from faasflow.errors import ConfigurationError, FlowDefinitionError, TransportError
from faasflow.runtime.engine import Engine
from faasflow.runtime.flowfile import load_define
from faasflow.transports.inprocess import InProcessTransport

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow serve`` and its options."""
    parser = subparsers.add_parser(
        "serve",
        parents=[options.flow_file(), options.functions(), options.stores(),
                 options.nats()],
        help="serve a flow over HTTP (as an OpenFaaS function)",
        description=(
            "Serve the flow in FILE over HTTP: new requests on /, signed hops on "
            "/flow/ID/forward, control on /flow/ID/{pause,resume,stop,redrive,state,result}. "
            "The settings come from the environment as in the OpenFaaS template "
            "(docs/configuration.md); options win. Needs the server extra: "
            "pip install 'faasflow[server]'."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080,
                        help="the port to listen on (default: 8080)")
    parser.add_argument(
        "--transport", choices=("gateway", "local", "nats"),
        help="gateway: hops go through the gateway's async route, signed (OpenFaaS); "
        "local: hops run in this process (one replica, no gateway needed for hops); "
        "nats: hops go through NATS JetStream, run by every replica and any faasflow "
        "worker (default: nats when --nats or its variable is set, else gateway)",
    )
    parser.add_argument(
        "--max-body-size", type=options.whole_number, metavar="BYTES",
        help="the largest body accepted (default: $FAASFLOW_MAX_BODY_SIZE or "
        f"$max_body_size, else {settings.DEFAULT_MAX_BODY_SIZE})",
    )
    parser.add_argument("--concurrency", type=int, default=64,
                        help="hops run at once with the local or NATS transport (default: 64)")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow serve``; returns the exit status when the server stops."""
    try:
        import uvicorn

        from faasflow.server.app import create_app
    except ImportError as exc:
        return error(f"faasflow serve needs Starlette and uvicorn ({exc.name} is missing): "
                     "pip install 'faasflow[server]'", EXIT_MISSING_TOOL)
    try:
        flow = load_define(args.target)
        # Only what was typed overrides the environment: server_config reads the
        # variables itself, and names them in its errors.
        named = options.given(args.name)
        if named is None and settings.lookup("flow_name") is None:
            named = flow.stem
        config = server_config(
            flow_name=named,
            gateway=options.given(args.gateway),
            state_url=options.given(args.state),
            data_url=options.given(args.data_store),
            max_body_size=args.max_body_size,
            nats_url=options.given(args.nats),
        )
        transport = args.transport or ("nats" if config.nats_url else "gateway")
        folder = functions_dir(args, flow)
        engine: Engine | None = None
        engine_options: dict[str, object] = {"functions_dir": folder}
        if transport == "nats":
            if not config.nats_url:
                raise ConfigurationError(
                    "--transport nats: pass --nats URL or set FAASFLOW_NATS (faasflow_nats)"
                )
            options.check_nats(config.nats_url, "--nats")
            engine_options["concurrency"] = args.concurrency
        elif config.nats_url:  # another transport chosen over $FAASFLOW_NATS
            config = dataclasses.replace(config, nats_url=None)
        if transport == "local":
            engine = Engine(
                flow.define, flow_name=config.flow_name, gateway=config.gateway,
                state_store=config.state_url or settings.default_state_url(),
                data_store=config.data_url, functions_dir=folder,
                transport=InProcessTransport(concurrency=args.concurrency),
            )
        app = create_app(flow.define, config=config, engine=engine,
                         engine_options=engine_options)
        # A bad definition fails here, before the port is bound.
        app.state.flow_server.engine.describe()
    except ConfigurationError as exc:
        return configuration_error(exc)
    except FlowDefinitionError as exc:
        return error(str(exc), EXIT_USAGE)
    except TransportError as exc:
        return error(str(exc), EXIT_FAILED)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    return 0
