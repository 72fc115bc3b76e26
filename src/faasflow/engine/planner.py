"""The pure half of the engine: given a flow and one finished step, what comes next.

No I/O happens here. The planner answers with :data:`Action` values that the executor
carries out: send a hop, record a parent at a join (and fire it when complete), finish
a DAG instance, finish the request. Joins are sets of members, never bare counters, so a
redelivered parent is counted once and a join fires when the set is complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from faasflow.dsl.spec import (
    FlowSpec,
    NodeSpec,
    branch_prefix,
    dag_prefix,
    parent_instance,
)
from faasflow.engine import _keys as keys
from faasflow.wire.hop import Hop


@dataclass(frozen=True)
class Send:
    """Announce ``hop`` (record it as pending, then deliver it)."""

    hop: Hop


@dataclass(frozen=True)
class FireNode:
    """A join at ``path`` is complete: run the node with every parent's data."""

    path: str


@dataclass(frozen=True)
class FireCollect:
    """Every branch of the dynamic node at ``path`` has finished: aggregate them."""

    path: str


@dataclass(frozen=True)
class DagDone:
    """The DAG instance at ``prefix`` has finished; ``ref`` is its output, or ``None`` to
    read it from the output node's record."""

    prefix: str
    ref: str | None


@dataclass(frozen=True)
class Join:
    """Add ``member`` to the set ``key``; when it holds ``expected`` members, do ``then``.

    ``expected=None`` means the branch count of the dynamic node whose branch set it is.
    """

    key: str
    member: str
    expected: int | None
    then: FireNode | FireCollect | DagDone


@dataclass(frozen=True)
class SubdagDone:
    """The sub-DAG of the subdag node at ``path`` finished with output ``ref``: record
    the node as done (running its edge forwarders) and go on from it."""

    path: str
    ref: str


@dataclass(frozen=True)
class Finish:
    """The root DAG finished: the request succeeded with the output at ``ref``."""

    ref: str


Action = Send | Join | DagDone | SubdagDone | Finish


def member(parent_id: str, ref: str | None) -> str:
    """A join member: the parent and the data it brings (empty for execution-only)."""
    return f"{parent_id}\n{ref or ''}"


def split_member(value: str) -> tuple[str, str]:
    parent, _, ref = value.partition("\n")
    return parent, ref


class Planner:
    """Plans the steps of one flow. One instance serves every request of the flow."""

    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec

    def start(self, base: Hop, input_ref: str) -> list[Action]:
        """The first hop of a request whose input is stored at ``input_ref``."""
        return self.enter(base, self.spec.root.start.id, (("", input_ref),))

    def enter(self, base: Hop, path: str, inputs: tuple[tuple[str, str], ...]) -> list[Action]:
        """Start the node at ``path``; a subdag node is entered at its sub-DAG's start."""
        node = self.spec.resolve(path)
        while node.kind == "subdag":
            assert node.subdag is not None
            node = node.subdag.start
            path = f"{path}/{node.id}"
        return [Send(_hop(base, path, "node", inputs))]

    def after_node(
        self, base: Hop, path: str, node: NodeSpec, ref: str, forwarded: dict[str, str]
    ) -> list[Action]:
        """What follows the node at ``path`` finishing with output ``ref``.

        ``forwarded`` maps child ids to the data their edge forwarder made.
        """
        rid = base.request_id
        prefix = dag_prefix(path)
        actions: list[Action] = []
        for edge in node.children:
            child = edge.target
            child_path = prefix + child.id
            data = None if edge.execution_only else forwarded.get(child.id, ref)
            if len(child.parents) == 1:
                actions.extend(self.enter(base, child_path, (("", data),) if data else ()))
            else:
                actions.append(
                    Join(
                        keys.join_set(rid, child_path),
                        member(node.id, data),
                        len(child.parents),
                        FireNode(child_path),
                    )
                )
        if not node.children:
            dag = node.dag
            if len(dag.ends) == 1:
                actions.append(DagDone(prefix, ref if node is dag.output else None))
            else:
                actions.append(
                    Join(
                        keys.dag_end_set(rid, prefix), node.id, len(dag.ends), DagDone(prefix, None)
                    )
                )
        return actions

    def fire_node(self, base: Hop, path: str, members: list[str]) -> list[Action]:
        """The join at ``path`` is complete: enter the node with its parents' data in
        edge-declaration order (execution-only parents bring none)."""
        node = self.spec.resolve(path)
        refs = dict(split_member(m) for m in members)
        inputs = tuple(
            (edge.source.id, refs[edge.source.id])
            for edge in node.parents
            if not edge.execution_only and refs.get(edge.source.id)
        )
        return self.enter(base, path, inputs)

    def expand(self, base: Hop, path: str, branches: list[tuple[str, str | None]]) -> list[Action]:
        """The dynamic node at ``path`` chose ``branches`` (key, input ref): start each;
        with none, go straight to collecting."""
        node = self.spec.resolve(path)
        if not branches:
            return [Send(_hop(base, path, "collect", ()))]
        actions: list[Action] = []
        for key, ref in branches:
            dag = node.branches[key if node.kind == "conditional" else ""]
            start_path = branch_prefix(path, key) + dag.start.id
            actions.extend(self.enter(base, start_path, (("", ref),) if ref else ()))
        return actions

    def after_dag(self, base: Hop, prefix: str, ref: str) -> list[Action]:
        """The DAG instance at ``prefix`` finished with output ``ref``."""
        if prefix == "":
            return [Finish(ref)]
        owner_path, key = parent_instance(prefix)
        owner = self.spec.resolve(owner_path)
        if owner.kind == "subdag":
            return [SubdagDone(owner_path, ref)]
        assert key is not None
        return [
            Join(
                keys.branch_set(base.request_id, owner_path),
                member(key, ref),
                None,
                FireCollect(owner_path),
            )
        ]

    def output_path(self, prefix: str) -> str:
        """The path of the output node of the DAG instance at ``prefix``."""
        if prefix == "":
            return self.spec.root.output.id
        owner_path, key = parent_instance(prefix)
        owner = self.spec.resolve(owner_path)
        if owner.kind == "subdag":
            assert owner.subdag is not None
            return prefix + owner.subdag.output.id
        dag = owner.branches[key if owner.kind == "conditional" and key is not None else ""]
        return prefix + dag.output.id


def _hop(base: Hop, path: str, kind: str, inputs: tuple[tuple[str, str], ...]) -> Hop:
    return Hop(
        request_id=base.request_id,
        flow=base.flow,
        path=path,
        kind="collect" if kind == "collect" else "node",
        inputs=inputs,
        query=base.query,
        sent_at=time.time(),
        trace=base.trace,
    )
