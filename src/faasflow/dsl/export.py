"""Export a validated flow for people and tools: JSON (``?export-dag=true``) and Graphviz DOT.

Both are pure functions of a :class:`~faasflow.dsl.spec.FlowSpec`: no I/O, deterministic
output (nodes in insertion order, edges in declaration order, branches in declared key
order), so an export can be cached, diffed and compared in tests.

The JSON shape is documented in ``docs/export-format.md``; in short::

    {"format_version": 1, "flow": ..., "sync": ..., "has_failure_hook": ...,
     "has_finally_hook": ..., "dag": DAG}
    DAG  = {"id", "start", "ends", "output", "nodes": [NODE, ...]}
    NODE = {"id", "path", "kind", "index", "operations", "has_aggregator", "parents",
            "children", "subdag", "foreach", "branches", "branch_keys"}

The DOT drawing follows faas-flow's dashboard: a task node is a rounded cluster of its
operations, structural nodes are clusters too, dynamic nodes fan out from a diamond to
one cluster per branch and join again in an ``end`` node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from faasflow.dsl.operations import Apply, Modify, Operation, Request
from faasflow.dsl.spec import DagSpec, EdgeSpec, FlowSpec, NodeSpec

__all__ = ["FORMAT_VERSION", "operation_label", "quote", "to_dot", "to_json"]

FORMAT_VERSION = 1
"""Bumped when a field changes meaning or disappears; new fields do not bump it."""

_ANONYMOUS_MODIFIER = "modifier"


# -- JSON ---------------------------------------------------------------------------
def to_json(spec: FlowSpec, *, flow_name: str) -> dict[str, Any]:
    """The flow's definition as a JSON-able dict (the ``?export-dag=true`` document).

    Args:
        spec: the validated flow.
        flow_name: the flow's name, shown as ``flow``.

    Returns:
        A dict of plain JSON types; ``json.dumps`` of it is deterministic.
    """
    return {
        "format_version": FORMAT_VERSION,
        "flow": flow_name,
        "sync": spec.is_sync,
        "has_failure_hook": spec.failure_hook is not None,
        "has_finally_hook": spec.finally_hook is not None,
        "dag": _dag_json(spec.root),
    }


def _dag_id(dag: DagSpec) -> str:
    # The static prefix without its slash: "root", "S", "C[c1]", "F[*]", "S/C[c1]".
    return dag.prefix_label[:-1] if dag.parent is not None else "root"


def _dag_json(dag: DagSpec) -> dict[str, Any]:
    return {
        "id": _dag_id(dag),
        "start": dag.start.id,
        "ends": [node.id for node in dag.ends],
        "output": dag.output.id,
        "nodes": [_node_json(node) for node in dag.nodes.values()],
    }


def _node_json(node: NodeSpec) -> dict[str, Any]:
    foreach = node.branches.get("") if node.kind == "foreach" else None
    return {
        "id": node.id,
        "path": node.label,
        "kind": node.kind,
        "index": node.index,
        "operations": [_operation_json(op) for op in node.operations],
        "has_aggregator": node.aggregator is not None,
        "parents": [edge.source.id for edge in node.parents],
        "children": [
            {
                "target": edge.target.id,
                "execution_only": edge.execution_only,
                "has_forwarder": edge.forwarder is not None,
            }
            for edge in node.children
        ],
        "subdag": _dag_json(node.subdag) if node.subdag is not None else None,
        "foreach": _dag_json(foreach) if foreach is not None else None,
        "branches": (
            {key: _dag_json(branch) for key, branch in node.branches.items()}
            if node.kind == "conditional"
            else None
        ),
        # JavaScript objects put integer-like keys ("1", "2") first: the order, explicitly.
        "branch_keys": list(node.branches) if node.kind == "conditional" else None,
    }


def operation_label(operation: Operation) -> str:
    """What an operation is called in exports: function name, URL, or modifier name.

    URLs lose their password; anonymous modifiers (lambdas, partials) are ``"modifier"``.
    """
    if isinstance(operation, Apply):
        return operation.function
    if isinstance(operation, Request):
        return _redact_url(operation.url)
    name = getattr(operation.fn, "__name__", "")
    # A lambda's "<lambda>" says nothing; the original showed "modifier" for every one.
    return name if name and not name.startswith("<") else _ANONYMOUS_MODIFIER


def _redact_url(url: str) -> str:
    # The export is served over HTTP to anyone who may see the flow: no credentials.
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _operation_json(operation: Operation) -> dict[str, Any]:
    label = operation_label(operation)
    if isinstance(operation, Modify):
        return {"kind": "modify", "label": label}
    if isinstance(operation, Apply):
        head: dict[str, Any] = {"kind": "apply", "name": operation.function, "label": label}
    else:
        head = {"kind": "request", "url": label, "label": label}
    options = operation.options
    return {
        **head,
        "method": options.method,
        "timeout": options.timeout,
        "retry_attempts": options.retry.attempts if options.retry is not None else 1,
        # Names only: header and query values may be credentials.
        "headers": list(options.headers),
        "query": list(dict.fromkeys(name for name, _ in options.query)),
        "has_on_failure": options.on_failure is not None,
        "has_on_response": options.on_response is not None,
        "has_request_handler": options.request_handler is not None,
    }


# -- DOT ----------------------------------------------------------------------------
_OPERATION_COLOUR = "#68b8e2"
_NODE_COLOUR = "#eeeeee"
_DYNAMIC_COLOUR = "#f9af4d"
_END_COLOUR = "#f6c6d0"
_INDENT = "  "


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string.

    Backslashes are doubled (in labels, ``\\N``, ``\\G`` … would be expanded), quotes
    escaped, and line breaks become DOT's centred ``\\n``.
    """
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )
    return f'"{escaped}"'


@dataclass
class _Drawn:
    """Where edges attach to a drawn node: into ``entry``, out of ``exit``."""

    entry: str
    exit: str


@dataclass
class _Writer:
    lines: list[str] = field(default_factory=list)
    depth: int = 1

    def line(self, text: str) -> None:
        self.lines.append(_INDENT * self.depth + text)

    def open_cluster(self, name: str, label: str, *attributes: str) -> None:
        self.line(f"subgraph {quote('cluster_' + name)} {{")
        self.depth += 1
        self.line(f"label={quote(label)};")
        for attribute in attributes:
            self.line(f"{attribute};")

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def box(self, name: str, label: str, *attributes: str) -> None:
        extra = "".join(f", {a}" for a in attributes)
        self.line(f"{quote(name)} [label={quote(label)}{extra}];")

    def edge(self, source: str, target: str, *attributes: str) -> None:
        extra = f" [{', '.join(attributes)}]" if attributes else ""
        self.line(f"{quote(source)} -> {quote(target)}{extra};")


def to_dot(spec: FlowSpec, *, flow_name: str) -> str:
    """The flow drawn as a Graphviz ``digraph`` (render with ``dot -Tsvg``).

    Args:
        spec: the validated flow.
        flow_name: the graph's title.

    Returns:
        DOT source, ending with a newline.
    """
    out = _Writer()
    out.line(f"label={quote(flow_name)};")
    out.line("labelloc=t;")
    out.line("compound=true;")
    out.line('fontname="Helvetica";')
    out.line(
        f'node [shape=box, style="rounded,filled", fillcolor={quote(_OPERATION_COLOUR)}, '
        'fontname="Helvetica"];'
    )
    out.line('edge [fontname="Helvetica", fontsize=10];')
    _draw_dag(out, spec.root)
    return "\n".join([f"digraph {quote(flow_name)} {{", *out.lines, "}"]) + "\n"


def _draw_dag(out: _Writer, dag: DagSpec) -> dict[str, _Drawn]:
    drawn = {node.id: _draw_node(out, node) for node in dag.nodes.values()}
    for node in dag.nodes.values():
        for edge in node.children:
            _draw_edge(out, edge, drawn)
    return drawn


def _draw_edge(out: _Writer, edge: EdgeSpec, drawn: dict[str, _Drawn]) -> None:
    attributes: list[str] = []
    if edge.execution_only:
        attributes.append("style=dotted")
    if edge.forwarder is not None:
        attributes.append('label="forwarder"')
    out.edge(drawn[edge.source.id].exit, drawn[edge.target.id].entry, *attributes)


def _draw_node(out: _Writer, node: NodeSpec) -> _Drawn:
    # Static labels ("C[c1]/n1") are unique in the whole flow, so they name DOT nodes.
    name = node.label
    if node.kind == "task":
        return _draw_task(out, node, name)
    if node.kind == "subdag":
        assert node.subdag is not None
        out.open_cluster(name, node.id, 'style="rounded"', "color=grey40")
        inner = _draw_dag(out, node.subdag)
        out.close()
        return _Drawn(inner[node.subdag.start.id].entry, inner[node.subdag.output.id].exit)
    return _draw_dynamic(out, node, name)


def _draw_task(out: _Writer, node: NodeSpec, name: str) -> _Drawn:
    if not node.operations:
        # Graphviz does not draw empty clusters: a pass-through node is a small plain box.
        out.box(name, node.id, 'style="rounded"', "fillcolor=white", "width=0.3", "height=0.2",
                "fontsize=10")
        return _Drawn(name, name)
    out.open_cluster(
        name, node.id, 'style="rounded,filled"', f"fillcolor={quote(_NODE_COLOUR)}", "color=grey"
    )
    names = [f"{name}#{index}" for index in range(1, len(node.operations) + 1)]
    for op_name, operation in zip(names, node.operations, strict=True):
        out.box(op_name, operation_label(operation))
    for first, second in pairwise(names):
        out.edge(first, second)
    out.close()
    return _Drawn(names[0], names[-1])


def _draw_dynamic(out: _Writer, node: NodeSpec, name: str) -> _Drawn:
    what = "foreach" if node.kind == "foreach" else "condition"
    fork, join = f"{name}#{what}", f"{name}#end"
    out.open_cluster(name, node.id, 'style="rounded"', "color=grey40")
    out.box(fork, what, "shape=diamond", "style=filled", f"fillcolor={quote(_DYNAMIC_COLOUR)}")
    out.box(join, "end", "shape=invhouse", "style=filled", f"fillcolor={quote(_END_COLOUR)}")
    for key, branch in node.branches.items():
        title = "foreach" if node.kind == "foreach" else key
        out.open_cluster(_dag_id(branch), title, "style=dashed", "color=grey60")
        inner = _draw_dag(out, branch)
        out.close()
        out.edge(fork, inner[branch.start.id].entry)
        out.edge(inner[branch.output.id].exit, join)
        # Other end nodes carry no data out, but the branch waits for them too.
        for end in branch.ends:
            if end is not branch.output:
                out.edge(inner[end.id].exit, join, "style=dotted")
    out.close()
    return _Drawn(fork, join)
