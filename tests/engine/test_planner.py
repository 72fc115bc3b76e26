"""Table-driven tests of the pure planner: what follows each finished step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from faasflow import Dag, Workflow
from faasflow.dsl.compile import compile_flow
from faasflow.engine import _keys as keys
from faasflow.engine.planner import (
    DagDone,
    Finish,
    FireCollect,
    FireNode,
    Join,
    Planner,
    Send,
    SubdagDone,
    member,
)
from faasflow.wire.hop import Hop

BASE = Hop("R", "flow", "", query="q=1")


def planner_for(define: Callable[[Workflow], Any]) -> Planner:
    flow = Workflow()
    define(flow)
    return Planner(compile_flow(flow))


def chain(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.edge("a", "b")
    dag.edge("b", "c")


def diamond(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.node("d", aggregator=lambda r: b"")
    dag.edge("a", "b")
    dag.edge("a", "c", forwarder=lambda d: d)
    dag.edge("b", "d")
    dag.edge("c", "d")
    dag.edge("a", "d", execution_only=True)


def nested(flow: Workflow) -> None:
    dag = flow.dag()
    sub = Dag()
    sub.node("s1")
    sub.node("s2")
    sub.edge("s1", "s2")
    dag.subdag("S", sub)
    branches = dag.conditional_branch("C", ["x", "y"], lambda d: [], aggregator=lambda r: b"")
    inner = branches["x"].foreach_branch("F", lambda d: {}, aggregator=lambda r: b"")
    inner.node("leaf")
    branches["y"].node("only")
    dag.node("end")
    dag.edge("S", "C")
    dag.edge("C", "end")


def multi_end(flow: Workflow) -> None:
    dag = flow.dag()
    for n in ("a", "b", "c"):
        dag.node(n)
    dag.edge("a", "b")
    dag.edge("a", "c")
    dag.output("c")


def send(path: str, *inputs: tuple[str, str], kind: str = "node") -> Send:
    return Send(Hop("R", "flow", path, kind, tuple(inputs), query="q=1"))  # type: ignore[arg-type]


CASES: list[tuple[str, Callable[[Workflow], Any], Callable[[Planner], list[Any]], list[Any]]] = [
    ("start of a chain", chain, lambda p: p.start(BASE, "R/in"), [send("a", ("", "R/in"))]),
    (
        "chain step",
        chain,
        lambda p: p.after_node(BASE, "a", p.spec.resolve("a"), "ref-a", {}),
        [send("b", ("", "ref-a"))],
    ),
    (
        "last node ends the root DAG with its own output",
        chain,
        lambda p: p.after_node(BASE, "c", p.spec.resolve("c"), "ref-c", {}),
        [DagDone("", "ref-c")],
    ),
    (
        "fan-out: joins get members; forwarded data replaces the output",
        diamond,
        lambda p: p.after_node(BASE, "a", p.spec.resolve("a"), "ref-a", {"c": "fwd-c"}),
        [
            send("b", ("", "ref-a")),
            send("c", ("", "fwd-c")),
            Join(keys.join_set("R", "d"), member("a", None), 3, FireNode("d")),
        ],
    ),
    (
        "a fired join orders data parents by edge declaration, skipping execution-only",
        diamond,
        lambda p: p.fire_node(
            BASE, "d", [member("c", "ref-c"), member("a", None), member("b", "ref-b")]
        ),
        [send("d", ("b", "ref-b"), ("c", "ref-c"))],
    ),
    (
        "entering a subdag goes to its start",
        nested,
        lambda p: p.start(BASE, "R/in"),
        [send("S/s1", ("", "R/in"))],
    ),
    (
        "the end of a sub-DAG completes the subdag node",
        nested,
        lambda p: p.after_dag(BASE, "S/", "ref-s2"),
        [SubdagDone("S", "ref-s2")],
    ),
    (
        "a conditional expands into the chosen branches' starts, nested foreach kept as a node",
        nested,
        lambda p: p.expand(BASE, "C", [("x", "in"), ("y", "in")]),
        [send("C[x]/F", ("", "in")), send("C[y]/only", ("", "in"))],
    ),
    (
        "foreach keys are percent-encoded in paths",
        nested,
        lambda p: p.expand(BASE, "C[x]/F", [("a/b", "i0"), ("c[d]", "i1")]),
        [send("C[x]/F[a%2Fb]/leaf", ("", "i0")), send("C[x]/F[c%5Bd%5D]/leaf", ("", "i1"))],
    ),
    (
        "no branch chosen goes straight to collecting",
        nested,
        lambda p: p.expand(BASE, "C", []),
        [send("C", kind="collect")],
    ),
    (
        "a finished branch joins its dynamic node's branch set",
        nested,
        lambda p: p.after_dag(BASE, "C[x]/F[k%2F1]/", "ref"),
        [Join(keys.branch_set("R", "C[x]/F"), member("k/1", "ref"), None, FireCollect("C[x]/F"))],
    ),
    (
        "the root DAG's end finishes the request",
        nested,
        lambda p: p.after_dag(BASE, "", "ref-end"),
        [Finish("ref-end")],
    ),
    (
        "several ends join on the DAG's end set and read the output node",
        multi_end,
        lambda p: p.after_node(BASE, "b", p.spec.resolve("b"), "ref-b", {}),
        [Join(keys.dag_end_set("R", ""), "b", 2, DagDone("", None))],
    ),
]


@pytest.mark.parametrize(("define", "step", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_planner(
    define: Callable[[Workflow], Any], step: Callable[[Planner], list[Any]], expected: list[Any]
) -> None:
    assert step(planner_for(define)) == expected


def test_output_paths() -> None:
    planner = planner_for(nested)
    assert planner.output_path("") == "end"
    assert planner.output_path("S/") == "S/s2"
    assert planner.output_path("C[x]/") == "C[x]/F"
    assert planner.output_path("C[x]/F[k]/") == "C[x]/F[k]/leaf"
    assert planner_for(multi_end).output_path("") == "c"


def test_resolve_rejects_paths_outside_the_flow() -> None:
    spec = planner_for(nested).spec
    for bad in ("nope", "S[x]/s1", "C/only", "C[zzz]/only", "S/s1[k]"):
        with pytest.raises(KeyError):
            spec.resolve(bad)
