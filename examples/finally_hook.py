"""Cleanup with ``finally_``: hooks that run once when a request ends.

The "Cleanup with Finally()" section of the original faas-flow README::

    sync: modify (context.set("commitsha", ...)) -> func1 (upper-case)
          -> modify (context.get("commitsha"); raises when the query has fail=...)
    on_failure: record which node failed and why
    finally_:   record the end state, then context.delete("commitsha")

- ``flow.on_failure(fn)``: ``fn(error)`` runs once when the request fails; ``error`` is a
  :class:`faasflow.RequestFailedError` with ``request_id``, ``node``, ``attempt`` and
  ``cause``.
- ``flow.finally_(fn)``: ``fn(state)`` runs once per request, with ``"success"`` or
  ``"failure"``, after ``on_failure``. The request's context data is still there, so it
  is the place to release what the flow set up.

So that the hooks' effect can be seen, they append one JSON line per event to the file
named by the ``log`` query parameter (when there is one).

Run it::

    faasflow run examples/finally_hook.py --data "ship it" --query log=/tmp/hooks.jsonl
    # prints: SHIP IT @ 6d9e64d
    faasflow run examples/finally_hook.py --data "ship it" --query "log=/tmp/hooks.jsonl&fail=1"
    # exits with status 1: "error: request ... failed at node 'sync' ... asked to fail ..."

    # /tmp/hooks.jsonl now holds:
    # {"event": "finally", "state": "success", "commitsha": "6d9e64d", ...}
    # {"event": "failure", "node": "sync", "cause": "...asked to fail...", ...}
    # {"event": "finally", "state": "failure", "commitsha": "6d9e64d", ...}

or from Python (a failed request raises :class:`faasflow.RequestFailedError`)::

    faasflow.run(define, b"ship it", functions_dir="examples/functions",
                 query="log=/tmp/hooks.jsonl")
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from faasflow import Context, RequestFailedError, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"ship it", ""),
    (b"", ""),
    ("déployer 🚀".encode(), ""),
    (b"release notes\n" * 300, ""),
]


class AskedToFail(Exception):
    """What the last modifier raises when the request's query has ``fail=...``."""


def short_sha(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:7]


def define(flow: Workflow, context: Context) -> None:
    log_path = context.query_value("log")

    def record(event: dict[str, Any]) -> None:
        """Append one JSON line to the ``log`` file, if the request named one."""
        if log_path:
            line = json.dumps({**event, "request_id": context.request_id}, ensure_ascii=False)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")

    def remember_commit(data: bytes) -> bytes:
        context.set("commitsha", short_sha(data))
        return data

    def tag_commit(data: bytes) -> bytes:
        if context.query_value("fail"):
            raise AskedToFail("asked to fail by the query")
        commitsha = context.get("commitsha")
        return data + f" @ {commitsha}".encode()

    flow.sync_node().modify(remember_commit).apply("func1").modify(tag_commit)

    def report_failure(error: RequestFailedError) -> None:
        record({"event": "failure", "node": error.node, "cause": error.cause})

    def cleanup(state: str) -> None:
        # Release what the flow set up, whatever the outcome.
        commitsha = context.get("commitsha")
        context.delete("commitsha")
        record(
            {
                "event": "finally",
                "state": state,
                "commitsha": commitsha,
                "deleted": context.get("commitsha") is None,
            }
        )

    flow.on_failure(report_failure)
    flow.finally_(cleanup)


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers (when it does not fail), computed without faasflow."""
    return data.decode("utf-8").upper().encode("utf-8") + f" @ {short_sha(data)}".encode()
