"""Validate a :class:`Workflow` and turn it into the immutable :class:`FlowSpec`.

Every rule of the DSL is checked here, before anything runs; each error names the node
or edge (with its static path, e.g. ``C[c1]/F[*]/n1``).
"""

from __future__ import annotations

from faasflow.dsl.graph import Dag, Workflow
from faasflow.dsl.spec import DagSpec, EdgeSpec, FlowSpec, NodeSpec
from faasflow.errors import FlowDefinitionError


def compile_flow(flow: Workflow) -> FlowSpec:
    """Check ``flow`` against every rule and return its spec.

    Raises:
        FlowDefinitionError: naming the node or edge at fault.
    """
    root = _compile_dag(flow.dag(), parent=None, key=None, where="the root DAG", seen=set())
    return FlowSpec(root=root, failure_hook=flow.failure_hook, finally_hook=flow.finally_hook)


def _compile_dag(
    dag: Dag, *, parent: NodeSpec | None, key: str | None, where: str, seen: set[int]
) -> DagSpec:
    if id(dag) in seen:
        raise FlowDefinitionError(f"{where}: a DAG cannot contain itself")
    seen = seen | {id(dag)}
    if not dag.nodes:
        raise FlowDefinitionError(f"{where} is empty: add at least one node")
    spec = DagSpec(nodes={}, parent=parent, key=key)
    prefix = spec.prefix_label
    for index, node in enumerate(dag.nodes.values(), start=1):
        spec.nodes[node.id] = NodeSpec(
            id=node.id,
            kind=node.kind,
            dag=spec,
            index=index,
            operations=tuple(node.operations),
            aggregator=node.aggregator,
            foreach=node.foreach,
            condition=node.condition,
        )
    _add_edges(dag, spec, prefix)
    _check_acyclic(spec, prefix)
    starts = [n for n in spec.nodes.values() if not n.parents]
    if len(starts) != 1:
        names = ", ".join(repr(prefix + n.id) for n in starts) or "none (every node has a parent)"
        raise FlowDefinitionError(
            f"{where} must have exactly one start node (a node without parents); found {names}"
        )
    spec.start = starts[0]
    spec.ends = [n for n in spec.nodes.values() if not n.children]
    spec.output = _output_node(dag, spec, where, prefix)
    for node_spec in spec.nodes.values():
        _check_node(node_spec, dag, seen)
    return spec


def _add_edges(dag: Dag, spec: DagSpec, prefix: str) -> None:
    pairs: set[tuple[str, str]] = set()
    for edge in dag.edges:
        name = f"edge {prefix}{edge.source!r} -> {prefix}{edge.target!r}"
        for end in (edge.source, edge.target):
            if end not in spec.nodes:
                raise FlowDefinitionError(f"{name}: unknown node {prefix + end!r}")
        if edge.source == edge.target:
            raise FlowDefinitionError(f"{name}: a node cannot depend on itself (cycle)")
        if (edge.source, edge.target) in pairs:
            raise FlowDefinitionError(f"{name}: duplicate edge")
        pairs.add((edge.source, edge.target))
        source, target = spec.nodes[edge.source], spec.nodes[edge.target]
        edge_spec = EdgeSpec(source, target, edge.forwarder, edge.execution_only)
        source.children.append(edge_spec)
        target.parents.append(edge_spec)


def _check_acyclic(spec: DagSpec, prefix: str) -> None:
    # Iterative DFS with colours; on a back edge, report the cycle it closes.
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(spec.nodes, white)
    for root in spec.nodes:
        if colour[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        trail: list[str] = []
        while stack:
            node_id, child_index = stack.pop()
            if child_index == 0:
                colour[node_id] = grey
                trail.append(node_id)
            children = spec.nodes[node_id].children
            if child_index < len(children):
                stack.append((node_id, child_index + 1))
                child = children[child_index].target.id
                if colour[child] == grey:
                    cycle = [*trail[trail.index(child) :], child]
                    shown = " -> ".join(prefix + c for c in cycle)
                    raise FlowDefinitionError(f"cycle: {shown}")
                if colour[child] == white:
                    stack.append((child, 0))
            else:
                colour[node_id] = black
                trail.pop()


def _output_node(dag: Dag, spec: DagSpec, where: str, prefix: str) -> NodeSpec:
    if dag.output_node is not None:
        if dag.output_node not in spec.nodes:
            raise FlowDefinitionError(
                f"{where}: output node {prefix + dag.output_node!r} is not a node of this DAG"
            )
        return spec.nodes[dag.output_node]
    if len(spec.ends) > 1:
        names = ", ".join(repr(prefix + n.id) for n in spec.ends)
        raise FlowDefinitionError(
            f"{where} has several end nodes ({names}): say which one's output is the "
            "result with dag.output(node_id), or join them in one node"
        )
    return spec.ends[0]


def _check_node(node: NodeSpec, dag: Dag, seen: set[int]) -> None:
    name = f"node {node.label!r}"
    data_parents = node.data_parents
    if node.kind == "task":
        if len(data_parents) > 1 and node.aggregator is None:
            parents = ", ".join(repr(e.source.id) for e in data_parents)
            raise FlowDefinitionError(
                f"{name} has several data-carrying parents ({parents}) and no aggregator: "
                "pass aggregator= to dag.node(), or make some edges execution_only"
            )
        if node.aggregator is not None and not data_parents:
            raise FlowDefinitionError(
                f"{name} has an aggregator but no data-carrying parent to aggregate"
            )
        return
    if len(data_parents) > 1:
        raise FlowDefinitionError(
            f"{name} is a {node.kind} node with several data-carrying parents: join them "
            "in a task node with an aggregator first"
        )
    source = dag.nodes[node.id]
    if node.kind == "subdag":
        assert source.subdag is not None
        node.subdag = _compile_dag(
            source.subdag, parent=node, key=None, where=f"subdag {node.label!r}", seen=seen
        )
        return
    flows_on = node is node.dag.output or any(not e.execution_only for e in node.children)
    if flows_on and node.aggregator is None:
        raise FlowDefinitionError(
            f"{name} is a {node.kind} branch whose data flows on: it needs an aggregator "
            "(make its outgoing edges execution_only if no data should flow)"
        )
    for key, branch in source.branches.items():
        shown = "*" if node.kind == "foreach" else key
        node.branches[key] = _compile_dag(
            branch,
            parent=node,
            key=key or None,
            where=f"{node.kind} branch {node.label}[{shown}]",
            seen=seen,
        )
