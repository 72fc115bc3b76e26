"""The builder side of the DSL: :class:`Dag`, :class:`Node` and :class:`Workflow`.

These objects only record what ``define`` asks for; :func:`faasflow.dsl.compile.compile_flow`
checks the rules and turns them into the immutable spec the engine runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from faasflow.dsl.operations import (
    Apply,
    CallOptions,
    FailureHandler,
    Modifier,
    Modify,
    Operation,
    Request,
    RequestHandler,
    ResponseHandler,
    normalise_query,
)
from faasflow.dsl.options import Retry
from faasflow.errors import FlowDefinitionError

if TYPE_CHECKING:
    from faasflow.errors import RequestFailedError

Aggregator = Callable[[dict[str, bytes]], Any]
"""``fn(results: dict[str, bytes]) -> bytes``: keys are parent ids or branch keys, in order."""

Forwarder = Callable[[bytes], Any]
"""``fn(data: bytes) -> bytes``: what the edge's child receives."""

ForeachFn = Callable[[bytes], Any]
"""``fn(data: bytes) -> dict[str, bytes]``: one branch per key, in the order returned."""

ConditionFn = Callable[[bytes], Any]
"""``fn(data: bytes) -> list[str]``: the keys of the branches to run."""

NodeKind = Literal["task", "subdag", "foreach", "conditional"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
SYNC_NODE_ID = "sync"


def check_id(what: str, value: object) -> str:
    """Raise :class:`FlowDefinitionError` unless ``value`` is a valid node id or branch key."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise FlowDefinitionError(
            f"{what} {value!r} is invalid: use 1-64 characters of letters, digits, "
            "'_', '.', ':' or '-', not starting with a punctuation mark"
        )
    return value


class Node:
    """A vertex of a :class:`Dag`: a chain of operations, or a sub-DAG or dynamic branch.

    Operations chain and run in order, each output the next one's input; a node
    without operations passes its input through.
    """

    def __init__(self, dag: Dag, node_id: str, kind: NodeKind = "task") -> None:
        self.dag = dag
        self.id = node_id
        self.kind: NodeKind = kind
        self.operations: list[Operation] = []
        self.aggregator: Aggregator | None = None
        self.subdag: Dag | None = None
        self.foreach: ForeachFn | None = None
        self.condition: ConditionFn | None = None
        self.branches: dict[str, Dag] = {}

    def __repr__(self) -> str:
        return f"<Node {self.id!r} {self.kind}>"

    def _add(self, operation: Operation) -> Node:
        if self.kind != "task":
            raise FlowDefinitionError(
                f"node {self.id!r} is a {self.kind} node: it cannot take operations"
            )
        self.operations.append(operation)
        return self

    def apply(
        self,
        function: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        method: str = "POST",
        timeout: float | None = None,
        retry: Retry | None = None,
        on_failure: FailureHandler | None = None,
        on_response: ResponseHandler | None = None,
        request_handler: RequestHandler | None = None,
    ) -> Node:
        """Call the FaaS function ``function`` with the data; its answer is the new data.

        Args:
            function: a name from ``functions=``, a handler folder, or the gateway.
            headers: extra request headers.
            query: query parameters (a mapping or ordered pairs); values are URL-encoded.
            method: the HTTP method.
            timeout: seconds before the call fails; the engine's default when ``None``.
            retry: the retry policy; no retry when ``None``.
            on_failure: ``fn(error)`` after the last attempt; bytes it returns become
                the result, ``None`` lets the error fail the node.
            on_response: ``fn(response) -> bytes`` replaces the 2xx check.
            request_handler: ``fn(request)`` may change the outgoing request.
        """
        if not isinstance(function, str) or not function:
            raise FlowDefinitionError(f"node {self.id!r}: apply() needs a function name")
        return self._add(
            Apply(
                function,
                _call_options(
                    self.id, headers, query, method, timeout, retry, on_failure, on_response,
                    request_handler,
                ),
            )
        )

    def request(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        method: str = "POST",
        timeout: float | None = None,
        retry: Retry | None = None,
        on_failure: FailureHandler | None = None,
        on_response: ResponseHandler | None = None,
        request_handler: RequestHandler | None = None,
    ) -> Node:
        """Call any HTTP ``url`` with the data; options as for :meth:`apply`."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise FlowDefinitionError(
                f"node {self.id!r}: request() needs an absolute http(s) URL, got {url!r}"
            )
        return self._add(
            Request(
                url,
                _call_options(
                    self.id, headers, query, method, timeout, retry, on_failure, on_response,
                    request_handler,
                ),
            )
        )

    def modify(self, fn: Modifier) -> Node:
        """Transform the data with ``fn(data: bytes) -> bytes`` (``def`` or ``async def``).

        A ``str`` result is encoded as UTF-8; any other non-bytes result fails the node.
        """
        if not callable(fn):
            raise FlowDefinitionError(f"node {self.id!r}: modify() needs a callable")
        return self._add(Modify(fn))


def _call_options(
    node_id: str,
    headers: Mapping[str, str] | None,
    query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
    method: str,
    timeout: float | None,
    retry: Retry | None,
    on_failure: FailureHandler | None,
    on_response: ResponseHandler | None,
    request_handler: RequestHandler | None,
) -> CallOptions:
    if timeout is not None and not timeout > 0:
        raise FlowDefinitionError(f"node {node_id!r}: timeout must be > 0, got {timeout!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise FlowDefinitionError(f"node {node_id!r}: retry must be a faasflow.Retry")
    return CallOptions(
        headers=dict(headers or {}),
        query=normalise_query(query),
        method=method.upper(),
        timeout=timeout,
        retry=retry,
        on_failure=on_failure,
        on_response=on_response,
        request_handler=request_handler,
    )


@dataclass(frozen=True)
class Edge:
    """A dependency ``source -> target``; data flows along it unless ``execution_only``."""

    source: str
    target: str
    forwarder: Forwarder | None = None
    execution_only: bool = False


class Dag:
    """A directed acyclic graph of nodes. ``Dag()`` makes a detached one for :meth:`subdag`."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.output_node: str | None = None
        self.owner: str | None = None  # where this DAG is used; a second use is an error

    def __repr__(self) -> str:
        return f"<Dag nodes={list(self.nodes)}>"

    def node(self, node_id: str, *, aggregator: Aggregator | None = None) -> Node:
        """Get or create the node ``node_id``.

        Args:
            node_id: unique within this DAG.
            aggregator: ``fn(results: dict[str, bytes]) -> bytes`` joining the data of
                several parents (keys = parent ids, in edge-declaration order).
        """
        check_id("node id", node_id)
        existing = self.nodes.get(node_id)
        if existing is None:
            existing = self.nodes[node_id] = Node(self, node_id)
        if aggregator is not None:
            if not callable(aggregator):
                raise FlowDefinitionError(f"node {node_id!r}: aggregator must be callable")
            existing.aggregator = aggregator
        return existing

    def _new_structural(self, node_id: str, kind: NodeKind) -> Node:
        check_id("node id", node_id)
        if node_id in self.nodes:
            raise FlowDefinitionError(
                f"node {node_id!r} already exists: a {kind} node needs an id of its own"
            )
        node = self.nodes[node_id] = Node(self, node_id, kind)
        return node

    def edge(
        self,
        source: str,
        target: str,
        *,
        forwarder: Forwarder | None = None,
        execution_only: bool = False,
    ) -> None:
        """Run ``target`` after ``source``.

        Args:
            source: the parent node id.
            target: the child node id.
            forwarder: ``fn(data) -> bytes`` transforms what ``target`` gets.
            execution_only: order only; no data flows along this edge.
        """
        if forwarder is not None and execution_only:
            raise FlowDefinitionError(
                f"edge {source!r} -> {target!r}: an execution-only edge carries no data "
                "to forward"
            )
        if forwarder is not None and not callable(forwarder):
            raise FlowDefinitionError(f"edge {source!r} -> {target!r}: forwarder must be callable")
        self.edges.append(Edge(source, target, forwarder, execution_only))

    def subdag(self, node_id: str, sub_dag: Dag) -> Node:
        """Add node ``node_id`` whose body is the whole DAG ``sub_dag``."""
        if not isinstance(sub_dag, Dag):
            raise FlowDefinitionError(f"subdag {node_id!r}: expected a Dag, got {sub_dag!r}")
        if sub_dag is self:
            raise FlowDefinitionError(f"subdag {node_id!r}: a DAG cannot contain itself")
        node = self._new_structural(node_id, "subdag")
        node.subdag = _claim(sub_dag, f"subdag {node_id!r}")
        return node

    def foreach_branch(
        self, node_id: str, foreach: ForeachFn, *, aggregator: Aggregator | None = None
    ) -> Dag:
        """Add a dynamic node that runs the returned DAG once per item of ``foreach(data)``.

        Args:
            node_id: the dynamic node's id.
            foreach: ``fn(data) -> dict[str, bytes]``; each key runs the branch with
                its value as input. No item skips the branch.
            aggregator: ``fn(results: dict[str, bytes]) -> bytes`` over the branches'
                results, keyed and ordered as ``foreach`` returned them. Needed when the
                node's data flows on.
        """
        if not callable(foreach):
            raise FlowDefinitionError(f"foreach {node_id!r}: foreach must be callable")
        node = self._new_structural(node_id, "foreach")
        node.foreach = foreach
        node.aggregator = aggregator
        branch = Dag()
        branch.owner = f"foreach {node_id!r}"
        node.branches[""] = branch
        return branch

    def conditional_branch(
        self,
        node_id: str,
        keys: Sequence[str],
        condition: ConditionFn,
        *,
        aggregator: Aggregator | None = None,
    ) -> dict[str, Dag]:
        """Add a dynamic node that runs the branches ``condition(data)`` picks.

        Args:
            node_id: the dynamic node's id.
            keys: every possible branch key; one DAG is returned per key.
            condition: ``fn(data) -> list[str]``; each picked branch gets the same
                input. No key skips the branch; an unknown key fails the node.
            aggregator: ``fn(results: dict[str, bytes]) -> bytes`` over the picked
                branches' results, in declared key order.
        """
        if not callable(condition):
            raise FlowDefinitionError(f"conditional {node_id!r}: condition must be callable")
        if isinstance(keys, str) or not keys:
            raise FlowDefinitionError(
                f"conditional {node_id!r}: keys must be a non-empty list of branch keys"
            )
        for key in keys:
            check_id(f"conditional {node_id!r} key", key)
        if len(set(keys)) != len(keys):
            raise FlowDefinitionError(f"conditional {node_id!r}: duplicate keys in {list(keys)}")
        node = self._new_structural(node_id, "conditional")
        node.condition = condition
        node.aggregator = aggregator
        for key in keys:
            branch = Dag()
            branch.owner = f"conditional {node_id!r} branch {key!r}"
            node.branches[key] = branch
        return dict(node.branches)

    def output(self, node_id: str) -> None:
        """Name the end node whose output is this DAG's result.

        Needed only when the DAG has several end nodes; the DAG still finishes only
        when every node has run.
        """
        check_id("output node id", node_id)
        self.output_node = node_id


def _claim(dag: Dag, owner: str) -> Dag:
    if dag.owner is not None:
        raise FlowDefinitionError(
            f"{owner}: this Dag object is already used by {dag.owner}; build a new Dag() "
            "for each place"
        )
    dag.owner = owner
    return dag


FailureHook = Callable[["RequestFailedError"], Any]
FinallyHook = Callable[[str], Any]


class Workflow:
    """What ``define(flow, context)`` fills in: the root DAG and the request hooks."""

    def __init__(self) -> None:
        self._dag = Dag()
        self._dag.owner = "the workflow"
        self.failure_hook: FailureHook | None = None
        self.finally_hook: FinallyHook | None = None

    def dag(self) -> Dag:
        """The root DAG."""
        return self._dag

    def sync_node(self) -> Node:
        """The node ``"sync"``: a flow made only of it runs and answers in one call."""
        return self._dag.node(SYNC_NODE_ID)

    def on_failure(self, fn: FailureHook) -> None:
        """Run ``fn(error)`` once when a request fails; ``error`` names node, attempt, cause."""
        if not callable(fn):
            raise FlowDefinitionError("on_failure() needs a callable")
        self.failure_hook = fn

    def finally_(self, fn: FinallyHook) -> None:
        """Run ``fn(state)`` once when a request ends, with ``"success"`` or ``"failure"``."""
        if not callable(fn):
            raise FlowDefinitionError("finally_() needs a callable")
        self.finally_hook = fn
