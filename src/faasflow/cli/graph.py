"""``faasflow graph FILE[:define]``: export a flow's DAG as JSON, Graphviz DOT or SVG."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from faasflow.cli import options
from faasflow.cli.common import EXIT_FAILED, EXIT_MISSING_TOOL, EXIT_USAGE, error, write_stdout
from faasflow.dsl.export import to_dot, to_json
from faasflow.dsl.spec import FlowSpec
from faasflow.engine.context import Context
from faasflow.engine.definition import Define, build_flow
from faasflow.errors import FaasFlowError
from faasflow.runtime.flowfile import load_define

__all__ = ["EXPORT_REQUEST_ID", "NO_DOT_MESSAGE", "add_parser", "build_spec", "command", "render"]

FORMATS = ("json", "dot", "svg")
_SUFFIXES = {".json": "json", ".dot": "dot", ".gv": "dot", ".svg": "svg"}

EXPORT_REQUEST_ID = "export"
"""The request id ``define`` sees while a flow is exported rather than run."""

NO_DOT_MESSAGE = (
    "--format svg needs Graphviz's 'dot' program (apt-get install graphviz / "
    "brew install graphviz); use --format dot instead"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``faasflow graph`` and its options."""
    parser = subparsers.add_parser(
        "graph",
        parents=[options.flow_file()],
        help="export a flow's DAG as JSON, DOT or SVG",
        description=(
            "Build the flow defined in FILE (as for a request with id 'export'), validate it "
            "and print its DAG: json (the ?export-dag=true document, see "
            "docs/export-format.md), dot (Graphviz source) or svg (dot rendered by "
            "Graphviz). Exit status: 0 success, 2 a bad argument or flow definition, 3 "
            "Graphviz missing for svg."
        ),
    )
    parser.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        help="output format (default: from OUT's suffix, else json)",
    )
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="write to OUT (default: stdout)")
    parser.add_argument(
        "--query", metavar="QS", default="",
        help="the query string define() sees, a=1&b=2 (default: none)",
    )
    parser.set_defaults(handler=command)


def build_spec(define: Define, *, flow_name: str, query: str = "") -> FlowSpec:
    """Build and validate the flow as the engine would for a request, without running it.

    Raises:
        FlowDefinitionError: ``define`` raised, or built an invalid flow.
    """
    context = Context(request_id=EXPORT_REQUEST_ID, flow_name=flow_name, query_string=query)
    return build_flow(define, context)


def render(spec: FlowSpec, *, flow_name: str, fmt: str) -> bytes:
    """The export of ``spec`` in format ``fmt`` (``json``, ``dot`` or ``svg``).

    Raises:
        FileNotFoundError: ``svg`` without Graphviz's ``dot`` on ``PATH``.
        subprocess.CalledProcessError: ``dot`` refused the graph.
    """
    if fmt == "json":
        return (json.dumps(to_json(spec, flow_name=flow_name), indent=2) + "\n").encode()
    source = to_dot(spec, flow_name=flow_name).encode()
    if fmt == "dot":
        return source
    program = shutil.which("dot")
    if program is None:
        raise FileNotFoundError("dot")
    done = subprocess.run(
        [program, "-Tsvg"], input=source, capture_output=True, check=True, timeout=120
    )
    return done.stdout


def command(args: argparse.Namespace) -> int:
    """Carry out ``faasflow graph``; returns the exit status."""
    fmt = args.format or _SUFFIXES.get(Path(args.output or "").suffix.lower(), "json")
    try:
        flow = load_define(args.target)
        name = args.name or flow.stem
        spec = build_spec(flow.define, flow_name=name, query=args.query)
    except FaasFlowError as exc:
        # Definition errors, loader errors, and define() touching request-only context.
        return error(str(exc), EXIT_USAGE)
    try:
        payload = render(spec, flow_name=name, fmt=fmt)
    except FileNotFoundError:
        return error(NO_DOT_MESSAGE, EXIT_MISSING_TOOL)
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        return error(f"Graphviz's dot failed (status {exc.returncode}): {detail}", EXIT_FAILED)
    if args.output is None:
        write_stdout(payload)
        return 0
    try:
        Path(args.output).write_bytes(payload)
    except OSError as exc:
        return error(f"cannot write {args.output!r}: {exc.strerror or exc}", EXIT_FAILED)
    return 0
