"""``faasflow gateway``: run the local OpenFaaS-compatible gateway in the foreground.

Prints ``faasflow gateway listening on URL`` on stdout once it serves; stops gracefully
(draining the async queue, stopping its flows) on SIGINT or SIGTERM. Exit status: 0
after a graceful stop, 2 a bad option (or a flow that does not start), 3 Starlette or
uvicorn are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections import defaultdict
from types import FrameType

from faasflow.cli import options
from faasflow.cli.common import EXIT_MISSING_TOOL, EXIT_OK, EXIT_USAGE, error
from faasflow.config import DEFAULT_MAX_BODY_SIZE
from faasflow.errors import ConfigurationError

__all__ = ["add_parser", "command"]

LISTENING = "faasflow gateway listening on {url}"
"""The line written to stdout once the gateway serves."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow gateway`` and its options."""
    parser = subparsers.add_parser(
        "gateway",
        help="run a local OpenFaaS-compatible gateway",
        description=(
            "Serve /function/NAME, /async-function/NAME and /system/* as the OpenFaaS "
            "gateway does, for registered HTTP servers, flows started here and handler "
            "folders. See docs/gateway.md for what differs from the real gateway."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080,
        help="the port to listen on (default: 8080; 0: any free port)",
    )  # fmt: skip
    parser.add_argument(
        "--functions", metavar="DIR",
        help="a folder of python3-http handler folders to serve (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--register", metavar="NAME=URL", action="append", default=[],
        help="serve function NAME by the HTTP server at URL (repeatable; default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--flow", metavar="NAME=FILE[:define]", action="append", default=[],
        help="run the flow in FILE as function NAME with `faasflow serve` (repeatable; "
        "default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--basic-auth", metavar="USER:PASS",
        help="require these credentials on /system/* (default: none)",
    )
    parser.add_argument(
        "--async-concurrency", metavar="N", type=int, default=10,
        help="async calls running at once (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--async-queue-size", metavar="N", type=int, default=1000,
        help="async calls that may wait; more are refused with 429 (default 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--max-body-size", metavar="BYTES", type=options.whole_number,
        default=options.env_default("max_body_size") or DEFAULT_MAX_BODY_SIZE,
        help="largest body of an async call or a /system/* call; larger ones get 413 "
        f"(default: $FAASFLOW_MAX_BODY_SIZE or $max_body_size, else {DEFAULT_MAX_BODY_SIZE}, "
        "16 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--label", metavar="NAME:KEY=VALUE", action="append", default=[],
        help="add a label to function NAME in /system/functions (repeatable; default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--annotation", metavar="NAME:KEY=VALUE", action="append", default=[],
        help="add an annotation to function NAME, e.g. NAME:faas-flow-desc=... (repeatable; "
        "default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--upstream-timeout", metavar="S", type=float, default=60.0,
        help="seconds a function may take to answer (default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-timeout", metavar="S", type=float, default=30.0,
        help="seconds queued async calls may take to finish at shutdown (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--flow-start-timeout", metavar="S", type=float, default=30.0,
        help="seconds a flow server may take to become healthy (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every call and queue event"
    )
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow gateway``; returns the exit status when it stops."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return error(
            f"faasflow gateway needs Starlette and uvicorn ({exc.name} is missing): "
            "pip install 'faasflow[server]'",
            EXIT_MISSING_TOOL,
        )
    from faasflow.gateway.app import create_gateway
    from faasflow.gateway.flows import ServedFlow
    from faasflow.gateway.server import serve

    try:
        gateway = create_gateway(
            functions_dir=args.functions,
            upstreams=dict(_pairs(args.register, "--register", "NAME=URL")),
            flows=[
                ServedFlow.parse(name, target)
                for name, target in _pairs(args.flow, "--flow", "NAME=FILE[:define]")
            ],
            basic_auth=_credentials(args.basic_auth),
            async_concurrency=args.async_concurrency,
            async_queue_size=args.async_queue_size,
            labels=_metadata(args.label, "--label"),
            annotations=_metadata(args.annotation, "--annotation"),
            upstream_timeout=args.upstream_timeout,
            drain_timeout=args.drain_timeout,
            flow_start_timeout=args.flow_start_timeout,
            max_body_size=args.max_body_size,
        )
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)
    if args.verbose:
        logging.getLogger("faasflow.gateway").setLevel(logging.INFO)
        logging.getLogger().setLevel(logging.INFO)
    # uvicorn catches SIGTERM while it serves, stops gracefully, then raises the signal
    # again for the previous handler: this one makes that the end of a normal run.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        asyncio.run(serve(gateway, host=args.host, port=args.port, on_ready=_announce))
    except ConfigurationError as exc:
        return error(str(exc), EXIT_USAGE)
    except RuntimeError as exc:
        return error(str(exc), EXIT_USAGE)
    except SystemExit as exc:  # SIGTERM while the gateway was starting or stopping
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _announce(url: str) -> None:
    sys.stdout.write(LISTENING.format(url=url) + "\n")
    sys.stdout.flush()


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (while the gateway starts, or re-raised by
    uvicorn after its graceful stop): end the run normally, stopping what was started."""
    raise SystemExit(EXIT_OK)


def _pairs(values: list[str], option: str, form: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name or not rest:
            raise ConfigurationError(f"{option} {value!r}: expected {form}")
        pairs.append((name, rest))
    return pairs


def _credentials(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, colon, password = value.partition(":")
    if not colon or not user:
        raise ConfigurationError("--basic-auth: expected USER:PASS")
    return user, password


def _metadata(values: list[str], option: str) -> dict[str, dict[str, str]]:
    found: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for value in values:
        name, colon, pair = value.partition(":")
        key, equals, text = pair.partition("=")
        if not colon or not name or not equals or not key:
            raise ConfigurationError(f"{option} {value!r}: expected NAME:KEY=VALUE")
        found[name][key] = text
    return dict(found)
