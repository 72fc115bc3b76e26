"""The ``faasflow`` command: ``run``, ``recover``, ``graph``, ``serve``, ``worker``, ``submit``,
``status``, ``requests``, ``result``, ``pause``, ``resume``, ``stop``, ``redrive``,
``gateway``, ``dashboard``, ``new``, ``--version``.

Options shared by several commands are declared once (:mod:`faasflow.cli.options`);
settings come from :mod:`faasflow.config` (docs/configuration.md).

Exit statuses, the same for every subcommand: 0 success; 1 the request (or an external
program, or a server it needs) failed; 2 a bad argument, setting, flow file or flow
definition; 3 a needed program or extra is missing; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from faasflow import tracing
from faasflow._version import __version__
from faasflow.cli import dashboard, graph, new, options, recover, requests, run, serve, worker
from faasflow.cli import gateway as gateway_cli
from faasflow.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    configuration_error,
)
from faasflow.errors import ConfigurationError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``faasflow`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="faasflow",
        description="Function composition for FaaS platforms: run and inspect flows.",
    )
    parser.add_argument("--version", action="version", version=f"faasflow {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    run.add_parser(subparsers)
    recover.add_parser(subparsers)
    graph.add_parser(subparsers)
    serve.add_parser(subparsers)
    worker.add_parser(subparsers)
    requests.add_parsers(subparsers)
    new.add_parser(subparsers)
    gateway_cli.add_parser(subparsers)
    dashboard.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``faasflow`` command line and return its exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when ``None``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and bad arguments: report, don't exit,
        # so that main() can be called in-process.
        return _status(exc.code)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        options.check_defaults(args)
    except ConfigurationError as exc:
        return configuration_error(exc)
    _configure_logging(verbose=bool(getattr(args, "verbose", False)))
    try:
        # OTEL_EXPORTER_OTLP_ENDPOINT, or enable_tracing/trace_server: spans to a collector.
        tracing.configure_from_env(f"faasflow-{args.command}")
    except ConfigurationError as exc:
        return configuration_error(exc)
    try:
        status: int = handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`faasflow run ... | head -c 10`): no traceback for that.
        _silence_stdout()
        return EXIT_FAILED
    return status


def _configure_logging(*, verbose: bool) -> None:
    # Warnings from the engine and handler folders (a handler's traceback, say) are for
    # the developer at the terminal; label them apart from the result and error lines.
    # A no-op when the host (a test runner, an embedding app) configured logging already.
    # Lines logged while a hop runs name its request and trace.
    if verbose:
        # The traceback of a user's callable that raised (logged at INFO; the error
        # line already says where it raised).
        logging.getLogger("faasflow.functions").setLevel(logging.INFO)
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(tracing.LogContext())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s%(ids)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
