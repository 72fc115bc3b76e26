"""The public views of requests: their status, their node table and their history.

What :meth:`~faasflow.Engine.info`, :meth:`~faasflow.Engine.list_requests` and
:meth:`~faasflow.Engine.history` answer, built from the stored records
(:mod:`faasflow.engine._records`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faasflow.engine._records import (
    FAILED,
    FINISHED,
    PAUSED,
    RUNNING,
    STATUSES,
    STOPPED,
    SUCCEEDED,
    FailureInfo,
    HistoryEntry,
    RequestRecord,
    StepRecord,
)

__all__ = [
    "FAILED",
    "FINISHED",
    "NODE_STATES",
    "PAUSED",
    "RUNNING",
    "STATUSES",
    "STOPPED",
    "SUCCEEDED",
    "FailureInfo",
    "RequestInfo",
    "RequestPage",
    "node_table",
    "with_starts",
]


@dataclass(frozen=True)
class RequestInfo:
    """What a request is and where it stands.

    Attributes:
        request_id: the request.
        flow: the flow's name.
        status: ``running``, ``paused``, ``succeeded``, ``failed`` or ``stopped``.
        created: epoch seconds.
        updated: epoch seconds of the last status change.
        failure: why it failed, for ``failed`` requests.
        nodes: node path → its state and details (see :func:`node_table`), when asked for.
    """

    request_id: str
    flow: str
    status: str
    created: float
    updated: float
    failure: FailureInfo | None = None
    query: str = ""
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As JSON: what the flow server's state route and ``status --json`` answer."""
        failure = self.failure
        return {
            "request_id": self.request_id,
            "flow": self.flow,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "failure": None if failure is None else {
                "node": failure.node, "attempt": failure.attempt, "cause": failure.cause
            },
            "nodes": self.nodes,
        }

    @classmethod
    def from_record(cls, request_id: str, record: RequestRecord) -> RequestInfo:
        return cls(
            request_id=request_id,
            flow=record.flow,
            status=record.status,
            created=record.created,
            updated=record.updated,
            failure=record.error,
            query=record.query,
        )


@dataclass(frozen=True)
class RequestPage:
    """One page of a flow's requests, newest first.

    Attributes:
        requests: the requests on this page.
        next: pass as ``before=`` to get the next (older) page; ``None`` on the last page.
    """

    requests: list[RequestInfo]
    next: str | None = None


NODE_STATES = {
    "started": "running",
    "finished": "done",
    "expanded": "done",
    "failed": "failed",
    "held": "held",
}
"""The node state each history event leaves behind (``retried`` leaves it running)."""

_NOT_DETAILS = frozenset({"kind", "node", "event", "t"})
_ENDS = frozenset({"finished", "expanded", "failed"})


def with_starts(
    history: list[HistoryEntry], records: dict[str, StepRecord] | None = None
) -> list[dict[str, Any]]:
    """The history, as dicts, with a ``started`` event for each step, in time order.

    A step's start is kept in its record while it runs and in its end's history entry
    (``started``, ``attempt``) afterwards, not as an entry of its own (that would be
    one more store write per node); this puts it back among the events.
    """
    events = [entry.to_dict() for entry in history]
    for entry in history:
        if entry.kind == "node" and entry.event in _ENDS and entry.started:
            events.append(_start(entry.node, entry.started, entry.attempt or 1))
    for path, record in (records or {}).items():
        if record.running and record.started:
            events.append(_start(path, record.started, record.attempt))
    events.sort(key=lambda event: event["t"])
    return events


def _start(path: str, t: float, attempt: int) -> dict[str, Any]:
    return {"t": t, "kind": "node", "node": path, "event": "started", "attempt": attempt}


def node_table(
    history: list[dict[str, Any]], records: dict[str, StepRecord] | None = None
) -> dict[str, dict[str, Any]]:
    """Each node's latest state and details, in the order nodes first appear.

    ``history`` has every node event, as :func:`with_starts` gives it (its node records
    are gone once the request ends); ``records`` (node records of a live request) say
    what is running now. Each entry may hold ``state`` (running, done, failed, held),
    ``attempt``, ``started``, ``finished``, ``size_in``, ``size_out``, ``retries``,
    ``branches``, ``calls`` and ``error``.
    """
    table: dict[str, dict[str, Any]] = {}
    expanded: set[str] = set()
    for event in history:
        if event.get("kind") != "node":
            continue
        path, name = event["node"], event["event"]
        entry = table.setdefault(path, {})
        if name == "retried":
            entry["retries"] = entry.get("retries", 0) + 1
            entry["error"] = event.get("error", "")
            continue
        details = {k: v for k, v in event.items() if k not in _NOT_DETAILS}
        if name == "started":
            entry.pop("error", None)
            entry.pop("finished", None)
            details["started"] = event["t"]
        if path in expanded:
            # A dynamic node's aggregation continues its expansion: one span of time,
            # from choosing the branches to aggregating them.
            details.pop("started", None)
        entry.update(details)
        entry["state"] = NODE_STATES.get(name, name)
        if name == "expanded":
            expanded.add(path)
    for path, record in (records or {}).items():
        entry = table.setdefault(path, {})
        details = record.details()
        if path in expanded:
            details.pop("started", None)
        entry.update(details)
    return table
