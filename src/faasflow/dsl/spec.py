"""The validated, immutable form of a flow that the engine runs.

Runtime addresses: a node instance is named by a *path*. A node of the root DAG is
its id (``"n2"``); a node inside a sub-DAG, a conditional branch or a foreach branch is
prefixed by the structural node and, for dynamic nodes, the branch key:
``"S/n1"``, ``"C[c1]/n1"``, ``"C[c1]/F[item%2F7]/n1"``. Branch keys are percent-encoded so
that ``/``, ``[``, ``]`` and ``%`` cannot break the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from faasflow.dsl.graph import (
    Aggregator,
    ConditionFn,
    FailureHook,
    FinallyHook,
    ForeachFn,
    Forwarder,
    NodeKind,
)
from faasflow.dsl.operations import Operation
from faasflow.errors import FlowDefinitionError


@dataclass(eq=False)
class EdgeSpec:
    """An edge of a validated DAG."""

    source: NodeSpec
    target: NodeSpec
    forwarder: Forwarder | None
    execution_only: bool


@dataclass(eq=False)
class NodeSpec:
    """A validated node. ``parents`` and ``children`` keep edge-declaration order."""

    id: str
    kind: NodeKind
    dag: DagSpec
    index: int
    operations: tuple[Operation, ...] = ()
    aggregator: Aggregator | None = None
    foreach: ForeachFn | None = None
    condition: ConditionFn | None = None
    subdag: DagSpec | None = None
    branches: dict[str, DagSpec] = field(default_factory=dict)
    parents: list[EdgeSpec] = field(default_factory=list)
    children: list[EdgeSpec] = field(default_factory=list)

    @property
    def is_dynamic(self) -> bool:
        return self.kind in ("foreach", "conditional")

    @property
    def data_parents(self) -> list[EdgeSpec]:
        return [e for e in self.parents if not e.execution_only]

    @property
    def label(self) -> str:
        """The node's static address for messages: ``C[c1]/F[*]/n1``."""
        return self.dag.prefix_label + self.id


@dataclass(eq=False)
class DagSpec:
    """A validated DAG: one start node, every node reachable, one output."""

    nodes: dict[str, NodeSpec]
    parent: NodeSpec | None = None
    key: str | None = None
    start: NodeSpec = field(init=False)
    ends: list[NodeSpec] = field(init=False)
    output: NodeSpec = field(init=False)

    @property
    def prefix_label(self) -> str:
        if self.parent is None:
            return ""
        if self.parent.kind == "subdag":
            return f"{self.parent.label}/"
        shown = "*" if self.parent.kind == "foreach" else self.key
        return f"{self.parent.label}[{shown}]/"


@dataclass(eq=False)
class FlowSpec:
    """A whole validated flow."""

    root: DagSpec
    failure_hook: FailureHook | None
    finally_hook: FinallyHook | None

    @property
    def is_sync(self) -> bool:
        """One task node and nothing else: the flow answers within the caller's request."""
        nodes = list(self.root.nodes.values())
        return len(nodes) == 1 and nodes[0].kind == "task"

    def resolve(self, path: str) -> NodeSpec:
        """The node spec at runtime ``path``; :class:`KeyError` when there is none."""
        dag = self.root
        segments = path.split("/")
        for segment in segments[:-1]:
            node_id, key = split_segment(segment)
            node = dag.nodes[node_id]
            if node.kind == "subdag" and key is None and node.subdag is not None:
                dag = node.subdag
            elif node.kind == "conditional" and key is not None:
                dag = node.branches[key]
            elif node.kind == "foreach" and key is not None:
                dag = node.branches[""]
            else:
                raise KeyError(path)
        node_id, key = split_segment(segments[-1])
        if key is not None:
            raise KeyError(path)
        return dag.nodes[node_id]


def encode_key(key: str) -> str:
    """Percent-encode a branch key for use inside a path."""
    return quote(key, safe=":")


def split_segment(segment: str) -> tuple[str, str | None]:
    """``"F[k%2F1]"`` → ``("F", "k/1")``; ``"n1"`` → ``("n1", None)``."""
    if segment.endswith("]") and "[" in segment:
        node_id, _, rest = segment.partition("[")
        return node_id, unquote(rest[:-1])
    return segment, None


def branch_prefix(dynamic_path: str, key: str) -> str:
    """The path prefix of the branch ``key`` of the dynamic node at ``dynamic_path``."""
    return f"{dynamic_path}[{encode_key(key)}]/"


def dag_prefix(path: str) -> str:
    """The prefix of the DAG instance the node at ``path`` belongs to."""
    cut = path.rfind("/")
    return path[: cut + 1]


def parent_instance(prefix: str) -> tuple[str, str | None]:
    """For a non-root DAG instance prefix, the structural node's path and branch key.

    ``"S/"`` → ``("S", None)``; ``"A/C[c1]/"`` → ``("A/C", "c1")``.
    """
    inner = prefix[:-1]
    head, _, last = inner.rpartition("/")
    node_id, key = split_segment(last)
    return (f"{head}/{node_id}" if head else node_id), key


def definition_error(where: str, message: str) -> FlowDefinitionError:
    return FlowDefinitionError(f"{where}: {message}")
