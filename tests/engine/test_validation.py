"""Every definition rule: a bad flow raises FlowDefinitionError naming the culprit, runs nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import faasflow
from faasflow import Context, Dag, FlowDefinitionError, Workflow
from faasflow.dsl.compile import compile_flow


def build(define: Callable[[Workflow], Any]) -> None:
    flow = Workflow()
    define(flow)
    compile_flow(flow)


def cycle(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c", "d"):
        dag.node(n)
    dag.edge("a", "b")
    dag.edge("b", "c")
    dag.edge("c", "d")
    dag.edge("d", "b")


def self_loop(flow: Workflow) -> None:
    flow.dag().node("a")
    flow.dag().edge("a", "a")


def duplicate_edge(flow: Workflow) -> None:
    dag = flow.dag()
    dag.node("a")
    dag.node("b")
    dag.edge("a", "b")
    dag.edge("a", "b")


def two_starts(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.edge("a", "c")
    dag.edge("b", "c", execution_only=True)


def unknown_target(flow: Workflow) -> None:
    flow.dag().node("a")
    flow.dag().edge("a", "ghost")


def empty_root(flow: Workflow) -> None:
    flow.dag()


def empty_branch(flow: Workflow) -> None:
    dag = flow.dag()
    branches = dag.conditional_branch("C", ["x", "y"], lambda d: ["x"], aggregator=lambda r: b"")
    branches["x"].node("n")


def empty_foreach(flow: Workflow) -> None:
    flow.dag().foreach_branch("F", lambda d: {}, aggregator=lambda r: b"")


def dag_reused(flow: Workflow) -> None:
    sub = Dag()
    sub.node("s")
    flow.dag().subdag("A", sub)
    flow.dag().subdag("B", sub)


def root_as_subdag(flow: Workflow) -> None:
    flow.dag().node("a")
    flow.dag().subdag("S", flow.dag())


def root_inside_another_dag(flow: Workflow) -> None:
    flow.dag().node("a")
    other = Dag()
    other.subdag("S", flow.dag())


def branch_dag_reused(flow: Workflow) -> None:
    branch = flow.dag().foreach_branch("F", lambda d: {}, aggregator=lambda r: b"")
    branch.node("x")
    flow.dag().subdag("S", branch)


def self_containing(flow: Workflow) -> None:
    sub = Dag()
    sub.subdag("inner", sub)
    flow.dag().subdag("S", sub)


def two_ends(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.edge("a", "b")
    dag.edge("a", "c")


def fan_in_without_aggregator(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c", "d"):
        dag.node(n)
    dag.edge("a", "b")
    dag.edge("a", "c")
    dag.edge("b", "d")
    dag.edge("c", "d")


def dynamic_without_aggregator(flow: Workflow) -> None:
    dag = flow.dag()
    dag.foreach_branch("F", lambda d: {"k": d}).node("x")
    dag.node("after")
    dag.edge("F", "after")


def final_conditional_without_aggregator(flow: Workflow) -> None:
    branches = flow.dag().conditional_branch("C", ["x"], lambda d: ["x"])
    branches["x"].node("n")


def nested_error(flow: Workflow) -> None:
    branches = flow.dag().conditional_branch("C", ["x"], lambda d: ["x"], aggregator=lambda r: b"")
    inner = branches["x"].foreach_branch("F", lambda d: {}, aggregator=lambda r: b"")
    inner.node("p")
    inner.node("q")
    inner.edge("p", "q")
    inner.edge("q", "p")


def bad_output(flow: Workflow) -> None:
    flow.dag().node("a")
    flow.dag().output("zzz")


def aggregator_without_parents(flow: Workflow) -> None:
    flow.dag().node("a", aggregator=lambda r: b"")


def subdag_with_two_data_parents(flow: Workflow) -> None:
    dag = flow.dag()
    sub = Dag()
    sub.node("s")
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.subdag("S", sub)
    dag.edge("a", "b")
    dag.edge("a", "c")
    dag.edge("b", "S")
    dag.edge("c", "S")


CASES = [
    (cycle, r"cycle: b -> c -> d -> b"),
    (self_loop, r"edge 'a' -> 'a'.*cycle"),
    (duplicate_edge, r"edge 'a' -> 'b': duplicate edge"),
    (two_starts, r"exactly one start node.*'a', 'b'"),
    (unknown_target, r"edge 'a' -> 'ghost': unknown node 'ghost'"),
    (empty_root, r"the root DAG is empty"),
    (empty_branch, r"conditional branch C\[y\] is empty"),
    (empty_foreach, r"foreach branch F\[\*\] is empty"),
    (dag_reused, r"subdag 'B': this Dag object is already used by subdag 'A'"),
    (root_as_subdag, r"subdag 'S': a DAG cannot contain itself"),
    (root_inside_another_dag, r"already used by the workflow"),
    (branch_dag_reused, r"already used by foreach 'F'"),
    (self_containing, r"cannot contain itself"),
    (two_ends, r"several end nodes \('b', 'c'\).*dag.output"),
    (fan_in_without_aggregator, r"node 'd' has several data-carrying parents \('b', 'c'\)"),
    (dynamic_without_aggregator, r"node 'F' is a foreach branch whose data flows on"),
    (final_conditional_without_aggregator, r"node 'C' is a conditional branch.*aggregator"),
    (nested_error, r"cycle: C\[x\]/F\[\*\]/p -> C\[x\]/F\[\*\]/q -> C\[x\]/F\[\*\]/p"),
    (bad_output, r"output node 'zzz' is not a node"),
    (aggregator_without_parents, r"node 'a' has an aggregator but no data-carrying parent"),
    (subdag_with_two_data_parents, r"node 'S' is a subdag node with several data-carrying"),
]


@pytest.mark.parametrize(("define", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_definition_errors_name_the_culprit(
    define: Callable[[Workflow], Any], message: str
) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        build(define)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda f: f.dag().node("has space"), r"node id 'has space' is invalid"),
        (lambda f: f.dag().node(""), r"node id '' is invalid"),
        (lambda f: f.dag().node("a/b"), r"node id 'a/b' is invalid"),
        (lambda f: f.dag().foreach_branch("F", lambda d: {}) and f.dag().node("F").apply("x"),
         r"node 'F' is a foreach node: it cannot take operations"),
        (lambda f: f.dag().conditional_branch("C", ["a", "a"], lambda d: []),
         r"duplicate keys"),
        (lambda f: f.dag().conditional_branch("C", [], lambda d: []), r"non-empty list"),
        (lambda f: f.dag().conditional_branch("C", ["a b"], lambda d: []), r"key 'a b' is invalid"),
        (lambda f: (f.dag().node("x"), f.dag().subdag("x", Dag())), r"'x' already exists"),
        (lambda f: f.dag().node("a").request("ftp://x"), r"absolute http\(s\) URL"),
        (lambda f: f.dag().node("a").apply("f", timeout=0), r"timeout must be > 0"),
        (lambda f: f.dag().edge("a", "b", forwarder=lambda d: d, execution_only=True),
         r"execution-only edge carries no data"),
        (lambda f: faasflow.Retry(attempts=0), r"attempts must be >= 1"),
        (lambda f: f.dag().node("a").modify("not callable"), r"modify\(\) needs a callable"),
    ],
)
def test_builder_errors(action: Callable[[Workflow], Any], message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        action(Workflow())


def test_nodes_may_be_declared_after_edges() -> None:
    def define(flow: Workflow) -> None:
        dag = flow.dag()
        dag.edge("a", "b")
        dag.node("a")
        dag.node("b")

    build(define)


def test_several_ends_with_an_output_is_valid() -> None:
    def define(flow: Workflow) -> None:
        two_ends(flow)
        flow.dag().output("c")

    build(define)


async def test_a_bad_definition_runs_nothing(make_engine: Callable[..., faasflow.Engine]) -> None:
    ran: list[bytes] = []

    def define(flow: Workflow, context: Context) -> None:
        dag = flow.dag()
        dag.node("a").modify(lambda d: ran.append(d) or d)
        dag.node("b")
        dag.edge("a", "b")
        dag.edge("b", "a")

    engine = make_engine(define)
    with pytest.raises(FlowDefinitionError, match="cycle"):
        await engine.submit(b"x", request_id="bad-1")
    assert ran == []
    assert await engine.requests() == []
    with pytest.raises(faasflow.UnknownRequestError):
        await engine.info("bad-1")


async def test_define_raising_is_a_definition_error(
    make_engine: Callable[..., faasflow.Engine],
) -> None:
    def define(flow: Workflow, context: Context) -> None:
        raise KeyError("missing config")

    with pytest.raises(FlowDefinitionError, match=r"define\(\) raised KeyError"):
        await make_engine(define).submit(b"x")
