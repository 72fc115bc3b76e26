"""What ``faasflow run`` and ``faasflow recover`` share: the options that build an embedded
engine for a flow file, the engine, and the commands they suggest after Ctrl-C."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from faasflow.cli.loader import FlowFile
from faasflow.cli.progress import Progress
from faasflow.errors import ConfigurationError
from faasflow.runtime import default_store_url
from faasflow.runtime.engine import Engine

__all__ = [
    "GATEWAY_ENV",
    "add_engine_options",
    "build_engine",
    "outlives_process",
    "recover_command",
    "status_command",
]

GATEWAY_ENV = "gateway"
"""The OpenFaaS template's variable for the gateway URL; the default of ``--gateway``."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Declare ``--functions``, ``--gateway``, ``--state``, ``--data-store`` and ``--name``."""
    parser.add_argument(
        "--functions",
        metavar="DIR",
        help="a folder of OpenFaaS python3-http handler folders (default: functions/ "
        "next to FILE, when it exists)",
    )
    parser.add_argument(
        "--gateway",
        metavar="URL",
        default=os.environ.get(GATEWAY_ENV) or None,
        help=f"an OpenFaaS gateway for the other function names (default: ${GATEWAY_ENV})",
    )
    parser.add_argument(
        "--state",
        metavar="URL",
        help="state store URL, e.g. memory:// or sqlite:///flows.db (default: "
        "$FAASFLOW_STORE, else a SQLite file in the cache directory)",
    )
    parser.add_argument(
        "--data-store", metavar="URL", help="data store URL (default: the state store's URL)"
    )
    parser.add_argument("--name", metavar="FLOW", help="the flow name (default: FILE's stem)")


def build_engine(args: argparse.Namespace, flow: FlowFile) -> Engine:
    """The engine the options describe; build it inside the event loop that will run it
    (its transport and pools belong to that loop).

    Raises:
        ConfigurationError: a bad option (a store URL, ``--functions``).
    """
    # Resolved here rather than by the engine, so that the commands printed after a
    # Ctrl-C name the very store this process used.
    args.state = args.state or default_store_url()
    engine = Engine(
        flow.define,
        flow_name=args.name or flow.stem,
        functions_dir=_functions_dir(args, flow),
        gateway=args.gateway,
        state_store=args.state,
        data_store=args.data_store,
    )
    if args.verbose:
        engine.observe(Progress())
    return engine


def outlives_process(args: argparse.Namespace) -> bool:
    """Whether the state store of ``args`` (once :func:`build_engine` resolved it) keeps
    requests after this process ends; ``memory://`` does not."""
    return not str(args.state).startswith("memory:")


def recover_command(args: argparse.Namespace) -> str:
    """``faasflow recover`` with the flow and the engine options of ``args``, to paste."""
    words = ["faasflow", "recover", args.target]
    for option, value in (
        ("--name", args.name),
        ("--functions", args.functions),
        ("--gateway", args.gateway),
        ("--state", args.state),
        ("--data-store", args.data_store),
    ):
        if value:
            words += [option, value]
    return shlex.join(words)


def status_command(args: argparse.Namespace, request_id: str) -> str:
    """``faasflow status ID`` on the state store of ``args``, to paste."""
    words = ["faasflow", "status", request_id]
    return shlex.join([*words, "--state", args.state] if args.state else words)


def _functions_dir(args: argparse.Namespace, flow: FlowFile) -> Path | None:
    if args.functions is not None:
        folder = Path(args.functions)
        if not folder.is_dir():
            raise ConfigurationError(f"--functions {args.functions!r} is not a directory")
        return folder
    beside = flow.path.parent / "functions"
    return beside if beside.is_dir() else None
