"""Reading what happened: ``faasflow requests FLOW`` and ``faasflow status ID``.

Both read only the state store (``--state``, ``$FAASFLOW_STATE``, else the embedded
default that ``faasflow run`` uses), so they work the same for requests run embedded,
behind a flow server or on workers.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from urllib.parse import unquote

from faasflow.cli.progress import format_duration
from faasflow.engine.views import STATUSES, RequestInfo, RequestPage

__all__ = ["format_requests", "format_status", "parse_statuses"]


def parse_statuses(text: str) -> list[str]:
    """``running,failed`` → the statuses; an unknown one is an argparse error."""
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in STATUSES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(text)}: use {', '.join(STATUSES)}"
        )
    return wanted


def format_requests(page: RequestPage, *, as_json: bool) -> str:
    """A page of requests as a table (newest first), or as JSON."""
    if as_json:
        body = {"requests": [info.to_dict() for info in page.requests], "next": page.next}
        return json.dumps(body, indent=2, sort_keys=True)
    rows = [("REQUEST", "STATUS", "CREATED", "TOOK", "FAILED AT")]
    for info in page.requests:
        ended = info.status not in ("running", "paused")
        took = format_duration(info.updated - info.created) if ended else ""
        failed_at = info.failure.node if info.failure is not None else ""
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created))
        rows.append((info.request_id, info.status, created, took, failed_at))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    if not page.requests:
        lines = ["no requests"]
    if page.next is not None:
        lines.append(f"more: --before {page.next}")
    return "\n".join(lines)


def format_status(info: RequestInfo) -> str:
    """The request's header line, its failure, then the node tree with timings."""
    lines = [f"{info.request_id}  flow {info.flow}  {info.status}"]
    if info.failure is not None:
        failure = info.failure
        lines.append(f"  failed at {failure.node!r} (attempt {failure.attempt}): {failure.cause}")
    _walk(_tree(info.nodes), 1, lines)
    return "\n".join(lines)


Tree = dict[str, tuple[dict[str, Any] | None, "Tree"]]


def _segments(path: str) -> list[str]:
    """``C[c1]/S/n1`` → ``["C", "[c1]", "S", "n1"]``: a dynamic node's branches nest under
    it, and a sub-DAG's nodes under the sub-DAG node."""
    parts: list[str] = []
    for segment in path.split("/"):
        name, bracket, key = segment.partition("[")
        parts.append(name)
        if bracket:
            parts.append(f"[{unquote(key.rstrip(']'))}]")
    return parts


def _tree(nodes: dict[str, dict[str, Any]]) -> Tree:
    tree: Tree = {}
    for path, entry in nodes.items():
        level = tree
        *outer, last = _segments(path)
        for part in outer:
            level = level.setdefault(part, (None, {}))[1]
        children = level.get(last, (None, {}))[1]
        level[last] = (entry, children)
    return tree


def _walk(tree: Tree, depth: int, lines: list[str]) -> None:
    for label, (entry, children) in tree.items():
        indent = "  " * depth
        lines.append(f"{indent}{label}" + ("" if entry is None else "  " + _describe(entry)))
        _walk(children, depth + 1, lines)


def _describe(entry: dict[str, Any]) -> str:
    parts = [entry.get("state", "?"), f"attempt {entry.get('attempt', 1)}"]
    if entry.get("started") and entry.get("finished"):
        parts.append(format_duration(entry["finished"] - entry["started"]))
    elif entry.get("started") and entry.get("state") == "running":
        parts.append(f"running for {format_duration(time.time() - entry['started'])}")
    if "size_in" in entry:
        parts.append(f"in {entry['size_in']} B")
    if "size_out" in entry:
        parts.append(f"out {entry['size_out']} B")
    if entry.get("branches") is not None:
        parts.append(f"{entry['branches']} branch(es)")
    if entry.get("retries"):
        parts.append(f"{entry['retries']} retried")
    if entry.get("error") and entry.get("state") == "failed":
        parts.append(f"error: {entry['error']}")
    return "  ".join(parts)
