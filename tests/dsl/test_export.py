"""The JSON and DOT exports of a flow: shape, order, escaping, and Graphviz accepting them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from faasflow import Dag, Retry, Workflow
from faasflow.dsl.compile import compile_flow
from faasflow.dsl.export import FORMAT_VERSION, operation_label, quote, to_dot, to_json
from faasflow.dsl.spec import FlowSpec

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")

DOC_FIELDS = {"format_version", "flow", "sync", "has_failure_hook", "has_finally_hook", "dag"}
DAG_FIELDS = {"id", "start", "ends", "output", "nodes"}
NODE_FIELDS = {
    "id", "path", "kind", "index", "operations", "has_aggregator", "parents", "children",
    "subdag", "foreach", "branches", "branch_keys",
}
CHILD_FIELDS = {"target", "execution_only", "has_forwarder"}
CALL_FIELDS = {
    "kind", "label", "method", "timeout", "retry_attempts", "headers", "query",
    "has_on_failure", "has_on_response", "has_request_handler",
}


def same(data: bytes) -> bytes:
    return data


def join(results: dict[str, bytes]) -> bytes:
    return b"".join(results.values())


def spec_of(define: Callable[[Workflow], None]) -> FlowSpec:
    flow = Workflow()
    define(flow)
    return compile_flow(flow)


def nested(flow: Workflow) -> None:
    """start -> S (subdag) -> F (foreach) -> C (conditional) -> end, with the extras."""
    dag = flow.dag()
    dag.node("start").apply("f1", retry=Retry(attempts=4), timeout=2.5).modify(same)
    sub = Dag()
    sub.node("s1").apply("g")
    sub.node("s2")
    sub.edge("s1", "s2")
    dag.subdag("S", sub)
    each = dag.foreach_branch("F", lambda data: {"x": data}, aggregator=join)
    each.node("item").apply("h")
    branches = dag.conditional_branch("C", ["yes", "no"], lambda data: ["yes"], aggregator=join)
    inner = Dag()
    inner.node("t1").request("https://api.example/t")
    branches["yes"].subdag("T", inner)
    branches["no"].node("n1").modify(lambda data: data)
    dag.node("end", aggregator=join).apply("final")
    dag.edge("start", "S", forwarder=same)
    dag.edge("S", "F")
    dag.edge("F", "C")
    dag.edge("C", "end")
    dag.edge("start", "end", execution_only=True)
    flow.on_failure(print)


def nodes_by_id(dag: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["id"]: node for node in dag["nodes"]}


def all_nodes(dag: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for node in dag["nodes"]:
        found.append(node)
        for child in (node["subdag"], node["foreach"], *(node["branches"] or {}).values()):
            if child is not None:
                found.extend(all_nodes(child))
    return found


# -- JSON ----------------------------------------------------------------------------
def test_sync_flow_document() -> None:
    doc = to_json(spec_of(lambda flow: flow.sync_node().apply("func1")), flow_name="greet")
    assert set(doc) == DOC_FIELDS
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert doc["flow"] == "greet"
    assert doc["sync"] is True
    assert doc["has_failure_hook"] is False and doc["has_finally_hook"] is False
    dag = doc["dag"]
    assert set(dag) == DAG_FIELDS
    assert (dag["id"], dag["start"], dag["ends"], dag["output"]) == ("root", "sync", ["sync"],
                                                                     "sync")
    (node,) = dag["nodes"]
    assert set(node) == NODE_FIELDS
    assert node["kind"] == "task" and node["index"] == 1 and node["path"] == "sync"
    assert node["operations"] == [{
        "kind": "apply", "name": "func1", "label": "func1", "method": "POST", "timeout": None,
        "retry_attempts": 1, "headers": [], "query": [], "has_on_failure": False,
        "has_on_response": False, "has_request_handler": False,
    }]
    assert (node["subdag"], node["foreach"], node["branches"], node["branch_keys"]) == (
        None, None, None, None
    )


def test_nested_flow_top_level_and_order() -> None:
    doc = to_json(spec_of(nested), flow_name="nested")
    assert doc["sync"] is False
    assert doc["has_failure_hook"] is True and doc["has_finally_hook"] is False
    root = doc["dag"]
    assert [n["id"] for n in root["nodes"]] == ["start", "S", "F", "C", "end"]
    assert [n["index"] for n in root["nodes"]] == [1, 2, 3, 4, 5]
    assert [n["kind"] for n in root["nodes"]] == ["task", "subdag", "foreach", "conditional",
                                                  "task"]
    assert (root["start"], root["ends"], root["output"]) == ("start", ["end"], "end")
    nodes = nodes_by_id(root)
    assert nodes["start"]["children"] == [
        {"target": "S", "execution_only": False, "has_forwarder": True},
        {"target": "end", "execution_only": True, "has_forwarder": False},
    ]
    # Parents in edge-declaration order: C -> end was declared before start -> end.
    assert nodes["end"]["parents"] == ["C", "start"]
    assert nodes["end"]["has_aggregator"] is True
    assert nodes["start"]["has_aggregator"] is False
    for node in all_nodes(root):
        assert set(node) == NODE_FIELDS
        for child in node["children"]:
            assert set(child) == CHILD_FIELDS


def test_nested_dags() -> None:
    nodes = nodes_by_id(to_json(spec_of(nested), flow_name="nested")["dag"])
    sub = nodes["S"]["subdag"]
    assert set(sub) == DAG_FIELDS
    assert (sub["id"], sub["start"], sub["ends"], sub["output"]) == ("S", "s1", ["s2"], "s2")
    assert [(n["id"], n["path"], n["parents"]) for n in sub["nodes"]] == [
        ("s1", "S/s1", []), ("s2", "S/s2", ["s1"]),
    ]
    assert sub["nodes"][1]["operations"] == []
    assert nodes["S"]["operations"] == [] and nodes["S"]["foreach"] is None

    each = nodes["F"]["foreach"]
    assert nodes["F"]["has_aggregator"] is True
    assert nodes["F"]["branches"] is None and nodes["F"]["subdag"] is None
    assert (each["id"], each["start"], each["output"]) == ("F[*]", "item", "item")
    assert each["nodes"][0]["path"] == "F[*]/item"

    cond = nodes["C"]
    assert cond["foreach"] is None and cond["subdag"] is None
    assert list(cond["branches"]) == ["yes", "no"] == cond["branch_keys"]
    yes, no = cond["branches"]["yes"], cond["branches"]["no"]
    assert (yes["id"], no["id"]) == ("C[yes]", "C[no]")
    (t_node,) = yes["nodes"]
    assert (t_node["kind"], t_node["path"]) == ("subdag", "C[yes]/T")
    assert t_node["subdag"]["id"] == "C[yes]/T"
    (t1,) = t_node["subdag"]["nodes"]
    assert t1["path"] == "C[yes]/T/t1"
    assert t1["operations"][0]["kind"] == "request"
    assert t1["operations"][0]["url"] == "https://api.example/t"
    assert no["nodes"][0]["operations"] == [{"kind": "modify", "label": "modifier"}]


def test_node_order_is_creation_order_not_alphabetical() -> None:
    def define(flow: Workflow) -> None:
        dag = flow.dag()
        dag.node("zeta").apply("z")
        dag.node("alpha").apply("a")
        dag.node("mid", aggregator=join)
        dag.edge("zeta", "alpha")
        dag.edge("alpha", "mid")
        dag.edge("zeta", "mid")

    dag = to_json(spec_of(define), flow_name="f")["dag"]
    assert [n["id"] for n in dag["nodes"]] == ["zeta", "alpha", "mid"]
    assert nodes_by_id(dag)["mid"]["parents"] == ["alpha", "zeta"]
    assert [c["target"] for c in nodes_by_id(dag)["zeta"]["children"]] == ["alpha", "mid"]


def test_several_ends_with_chosen_output() -> None:
    def define(flow: Workflow) -> None:
        dag = flow.dag()
        dag.node("a").apply("a")
        dag.node("b").apply("b")
        dag.node("c").apply("c")
        dag.edge("a", "b")
        dag.edge("a", "c")
        dag.output("c")

    dag = to_json(spec_of(define), flow_name="f")["dag"]
    assert (dag["ends"], dag["output"]) == (["b", "c"], "c")


def test_operation_options_summary() -> None:
    def define(flow: Workflow) -> None:
        flow.dag().node("n").apply(
            "fn",
            method="put",
            timeout=3,
            retry=Retry(attempts=5),
            headers={"X-Token": "secret-value", "Accept": "text/plain"},
            query=[("page", "1"), ("tag", "a"), ("tag", "b")],
            on_failure=lambda error: b"",
            on_response=lambda response: b"",
            request_handler=lambda request: None,
        ).request("https://user:hunter2@api.example/x?k=v", timeout=1.5).modify(same)
        flow.finally_(print)

    doc = to_json(spec_of(define), flow_name="f")
    assert doc["has_finally_hook"] is True
    apply_op, request_op, modify_op = doc["dag"]["nodes"][0]["operations"]
    assert set(apply_op) == CALL_FIELDS | {"name"}
    assert apply_op == {
        "kind": "apply", "name": "fn", "label": "fn", "method": "PUT", "timeout": 3,
        "retry_attempts": 5, "headers": ["X-Token", "Accept"], "query": ["page", "tag"],
        "has_on_failure": True, "has_on_response": True, "has_request_handler": True,
    }
    assert "secret-value" not in json.dumps(doc)
    assert set(request_op) == CALL_FIELDS | {"url"}
    assert request_op["url"] == request_op["label"] == "https://user:***@api.example/x?k=v"
    assert "hunter2" not in json.dumps(doc)
    assert request_op["timeout"] == 1.5 and request_op["retry_attempts"] == 1
    assert modify_op == {"kind": "modify", "label": "same"}


def test_json_is_plain_and_deterministic() -> None:
    spec = spec_of(nested)
    first = json.dumps(to_json(spec, flow_name="n"))
    assert json.loads(first) == to_json(spec, flow_name="n")
    # A second build of the same definition exports byte for byte the same.
    assert json.dumps(to_json(spec_of(nested), flow_name="n")) == first


def test_operation_label() -> None:
    spec = spec_of(lambda flow: flow.dag().node("n").modify(same).modify(lambda d: d)
                   .apply("fn").request("https://a.example/p"))
    labels = [operation_label(op) for op in spec.root.nodes["n"].operations]
    assert labels == ["same", "modifier", "fn", "https://a.example/p"]


# -- DOT -----------------------------------------------------------------------------
def test_quote_escapes() -> None:
    assert quote("a.b:c-d") == '"a.b:c-d"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("back\\slash") == '"back\\\\slash"'
    assert quote("two\nlines") == '"two\\nlines"'


@dataclass
class Rendered:
    """What Graphviz understood of a DOT source (``dot -Tjson0``)."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    label: str = ""

    def edge(self, tail: str, head: str) -> dict[str, Any]:
        found = [attrs for t, h, attrs in self.edges if (t, h) == (tail, head)]
        assert len(found) == 1, (tail, head, self.edges)
        return found[0]

    def members(self, cluster: str) -> set[str]:
        gvid = {obj["_gvid"]: name for name, obj in self.nodes.items()}
        return {gvid[i] for i in self.clusters["cluster_" + cluster].get("nodes", [])}


def render(source: str) -> Rendered:
    done = subprocess.run(["dot", "-Tjson0"], input=source.encode(), capture_output=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert not done.stderr, done.stderr.decode()  # not even a warning
    graph = json.loads(done.stdout)
    out = Rendered(label=graph.get("label", ""))
    names: dict[int, str] = {}
    for obj in graph.get("objects", []):
        if obj["name"].startswith("cluster_") and ("nodes" in obj or "subgraphs" in obj):
            out.clusters[obj["name"]] = obj
        else:
            out.nodes[obj["name"]] = obj
            names[obj["_gvid"]] = obj["name"]
    for edge in graph.get("edges", []):
        out.edges.append((names[edge["tail"]], names[edge["head"]], edge))
    return out


@needs_dot
def test_dot_sync_flow() -> None:
    spec = spec_of(lambda flow: flow.sync_node().apply("func1").apply("func2").modify(same))
    shown = render(to_dot(spec, flow_name="greet"))
    assert shown.label == "greet"
    assert shown.clusters["cluster_sync"]["label"] == "sync"
    assert [shown.nodes[f"sync#{i}"]["label"] for i in (1, 2, 3)] == ["func1", "func2", "same"]
    assert shown.members("sync") == {"sync#1", "sync#2", "sync#3"}
    shown.edge("sync#1", "sync#2")
    shown.edge("sync#2", "sync#3")
    assert len(shown.edges) == 2


@needs_dot
def test_dot_nested_flow() -> None:
    shown = render(to_dot(spec_of(nested), flow_name="nested"))
    # Data edges solid with a forwarder label, execution-only edges dotted.
    forwarded = shown.edge("start#2", "S/s1#1")
    assert forwarded["label"] == "forwarder" and "style" not in forwarded
    assert shown.edge("start#2", "end#1")["style"] == "dotted"
    # A pass-through node is a plain box, the subdag a cluster around its DAG.
    assert shown.nodes["S/s2"]["label"] == "s2"
    assert shown.clusters["cluster_S"]["label"] == "S"
    assert {"S/s1#1", "S/s2"} <= shown.members("S")
    # Dynamic nodes: diamond -> branch clusters -> end.
    assert shown.nodes["F#foreach"]["shape"] == "diamond"
    assert shown.nodes["F#end"]["shape"] == "invhouse"
    assert shown.clusters["cluster_F[*]"]["label"] == "foreach"
    shown.edge("S/s2", "F#foreach")
    shown.edge("F#foreach", "F[*]/item#1")
    shown.edge("F[*]/item#1", "F#end")
    shown.edge("F#end", "C#condition")
    assert shown.nodes["C#condition"]["label"] == "condition"
    assert shown.clusters["cluster_C[yes]"]["label"] == "yes"
    assert shown.clusters["cluster_C[no]"]["label"] == "no"
    assert shown.clusters["cluster_C[yes]/T"]["label"] == "T"
    shown.edge("C#condition", "C[yes]/T/t1#1")
    shown.edge("C#condition", "C[no]/n1#1")
    shown.edge("C[yes]/T/t1#1", "C#end")
    shown.edge("C#end", "end#1")
    assert shown.nodes["C[yes]/T/t1#1"]["label"] == "https://api.example/t"
    assert shown.nodes["C[no]/n1#1"]["label"] == "modifier"


@needs_dot
def test_dot_escapes_ids_and_labels() -> None:
    def define(flow: Workflow) -> None:
        dag = flow.dag()
        dag.node("a.b:c-d").request('https://x.example/p?q="v"&r=\\n')
        dag.node("cluster_e")  # a node named like a cluster must not clash with one
        dag.node("e").apply("fn-1.2")
        branches = dag.conditional_branch("k:1", ["x.y", "1"], lambda d: [], aggregator=join)
        branches["x.y"].node("p")
        branches["1"].node("q").apply("q")
        dag.edge("a.b:c-d", "cluster_e")
        dag.edge("cluster_e", "e")
        dag.edge("e", "k:1")

    source = to_dot(spec_of(define), flow_name='my "flow" \\ 1')
    shown = render(source)
    # Graphviz keeps label escapes (\\ stays \\) until it draws: check the drawing too.
    assert shown.label == 'my "flow" \\\\ 1'
    assert shown.nodes["a.b:c-d#1"]["label"] == 'https://x.example/p?q="v"&r=\\\\n'
    svg = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True,
                         check=True, timeout=60).stdout.decode()
    assert ">my &quot;flow&quot; \\ 1</text>" in svg
    assert "q=&quot;v&quot;&amp;r=\\n</text>" in svg
    assert shown.nodes["cluster_e"]["label"] == "cluster_e"
    assert shown.clusters["cluster_e"]["label"] == "e"
    assert shown.clusters["cluster_k:1[x.y]"]["label"] == "x.y"
    shown.edge("a.b:c-d#1", "cluster_e")
    shown.edge("cluster_e", "e#1")
    shown.edge("k:1#condition", "k:1[x.y]/p")
    shown.edge("k:1[1]/q#1", "k:1#end")


@needs_dot
def test_dot_branch_with_several_ends() -> None:
    def define(flow: Workflow) -> None:
        dag = flow.dag()
        branch = dag.foreach_branch("F", lambda d: {}, aggregator=join)
        branch.node("a").apply("a")
        branch.node("b").apply("b")
        branch.node("c")
        branch.edge("a", "b")
        branch.edge("a", "c")
        branch.output("b")

    shown = render(to_dot(spec_of(define), flow_name="f"))
    assert "style" not in shown.edge("F[*]/b#1", "F#end")
    assert shown.edge("F[*]/c", "F#end")["style"] == "dotted"


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_dot_renders(fmt: str) -> None:
    done = subprocess.run(["dot", f"-T{fmt}"], input=to_dot(spec_of(nested), flow_name="n")
                          .encode(), capture_output=True, check=False, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()
    assert done.stdout


def test_dot_is_deterministic() -> None:
    assert to_dot(spec_of(nested), flow_name="n") == to_dot(spec_of(nested), flow_name="n")
