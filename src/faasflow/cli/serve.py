"""``faasflow serve``: run a flow as an HTTP function (the faas-flow wire protocol)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from faasflow.cli.common import EXIT_USAGE, error
from faasflow.cli.loader import load_define
from faasflow.config import server_config
from faasflow.errors import ConfigurationError, FlowDefinitionError
from faasflow.runtime.engine import Engine
from faasflow.transports.inprocess import InProcessTransport

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow serve`` and its options."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a flow over HTTP (as an OpenFaaS function)",
        description=(
            "Serve the flow in FILE over HTTP: new requests on /, signed hops on "
            "/flow/ID/forward, control on /flow/ID/{pause,resume,stop,redrive,state,result}. "
            "Configuration comes from the environment (see faasflow.config); options win."
        ),
    )
    parser.add_argument("target", metavar="FILE[:define]", help="the flow file and function")
    parser.add_argument("--name", metavar="FLOW", help="the flow name (default: $flow_name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--gateway", metavar="URL", help="the OpenFaaS gateway ($gateway)")
    parser.add_argument("--state", metavar="URL", help="state store URL ($faasflow_state)")
    parser.add_argument("--data-store", metavar="URL", help="data store URL ($faasflow_data)")
    parser.add_argument(
        "--functions", metavar="DIR",
        help="handler folders for apply() (default: functions/ next to FILE, when it exists)",
    )
    parser.add_argument(
        "--transport", choices=("gateway", "local", "nats"),
        help="gateway (the default): hops go through the gateway's async route, signed "
        "(OpenFaaS); local: hops run in this process (one replica, no gateway needed for "
        "hops); nats: hops go through NATS JetStream, run by every replica and any "
        "faasflow worker (the default when --nats or $faasflow_nats is set)",
    )
    parser.add_argument("--nats", metavar="URL", help="the NATS server ($faasflow_nats)")
    parser.add_argument("--max-body-size", type=int, metavar="BYTES",
                        help="largest body accepted ($max_body_size)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="hops run at once with the local or NATS transport")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow serve``; returns the exit status when the server stops."""
    import uvicorn

    from faasflow.server.app import create_app

    try:
        flow = load_define(args.target)
        env = {"flow_name": flow.stem, **os.environ}
        config = server_config(
            env,
            flow_name=args.name,
            gateway=args.gateway,
            state_url=args.state,
            data_url=args.data_store,
            max_body_size=args.max_body_size,
            nats_url=args.nats,
        )
        transport = args.transport or ("nats" if config.nats_url else "gateway")
        folder = Path(args.functions) if args.functions else flow.path.parent / "functions"
        functions_dir = folder if folder.is_dir() else None
        engine: Engine | None = None
        options: dict[str, object] = {"functions_dir": functions_dir}
        if transport == "nats":
            if not config.nats_url:
                raise ConfigurationError("--transport nats: pass --nats URL or set faasflow_nats")
            options["concurrency"] = args.concurrency
        elif config.nats_url:  # another transport chosen over $faasflow_nats
            config = dataclasses.replace(config, nats_url=None)
        if transport == "local":
            engine = Engine(
                flow.define, flow_name=config.flow_name, gateway=config.gateway,
                state_store=config.state_url, data_store=config.data_url,
                functions_dir=functions_dir,
                transport=InProcessTransport(concurrency=args.concurrency),
            )
        app = create_app(flow.define, config=config, engine=engine, engine_options=options)
        # A bad definition fails here, before the port is bound.
        app.state.flow_server.engine.describe()
    except (ConfigurationError, FlowDefinitionError) as exc:
        return error(str(exc), EXIT_USAGE)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    return 0
