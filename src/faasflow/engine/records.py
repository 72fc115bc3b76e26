"""The records the engine keeps per request and per node, and their public views."""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

RUNNING, PAUSED, SUCCEEDED, FAILED, STOPPED = "running", "paused", "succeeded", "failed", "stopped"
STATUSES = (RUNNING, PAUSED, SUCCEEDED, FAILED, STOPPED)
FINISHED = frozenset({SUCCEEDED, STOPPED})
"""Nothing more will happen to these requests (a failed one can still be redriven)."""


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value


_HOST = os.environ.get("FAASFLOW_HOST") or socket.gethostname()
"""The name this process goes by in claims: the host name unless ``FAASFLOW_HOST`` says
otherwise (two containers may share a host name; set it to the pod or node name)."""
_BOOT = secrets.token_hex(4)
_TOKENS = itertools.count(1)


def new_token() -> str:
    """A token unique to this execution (process boot + counter): output keys never clash."""
    return f"{_BOOT}{next(_TOKENS):x}"


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc`` (Linux), ``None`` when
    there is no such process; raises ``OSError`` where ``/proc`` cannot tell."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        raise
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _own_start() -> int:
    try:
        stat = _process_stat(os.getpid())
    except (OSError, ValueError, IndexError):
        return 0
    return stat[1] if stat else 0


_START = _own_start()
"""This process's start time (clock ticks since boot; 0 where ``/proc`` is missing): with
the pid it names this process, where a pid alone may later name another."""
_ENGINES = itertools.count(1)


def process_owner() -> str:
    """``host:pid:start:boot.N``, unique to each engine of this process: who claims a
    node or a request. Two engines in one process are told apart, so neither takes the
    other's running step for its own finished one."""
    return f"{_HOST}:{os.getpid()}:{_START}:{_BOOT}.{next(_ENGINES)}"


def owner_dead(owner: str) -> bool:
    """Whether the process named ``owner`` has provably ended.

    Only a process on this host can be checked, and only death can be proven: its pid is
    gone, is a zombie nobody reaped yet, or names a process started at another time (the
    pid was reused). ``False`` means "not known to be dead", never "alive": whether a
    claim still holds is decided by its lease.
    """
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    _, pid_text, start_text, boot = parts
    pid = int(pid_text)
    if pid == os.getpid():
        return boot.partition(".")[0] != _BOOT
    try:
        stat = _process_stat(pid)
    except (OSError, ValueError, IndexError):
        # No /proc here: the pid can still be proven gone, not proven to be ours.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    if stat is None:
        return True
    state, start = stat
    return state in ("Z", "X") or (start_text.isdigit() and int(start_text) not in (0, start))


@dataclass(frozen=True)
class FailureInfo:
    """Why a request failed: the node (path), the attempt and the cause."""

    node: str
    attempt: int
    cause: str


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
    def from_record(cls, request_id: str, record: dict[str, Any]) -> RequestInfo:
        error = record.get("error")
        return cls(
            request_id=request_id,
            flow=record["flow"],
            status=record["status"],
            created=record["created"],
            updated=record["updated"],
            failure=FailureInfo(error["node"], error["attempt"], error["cause"]) if error else None,
            query=record.get("query", ""),
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

_NOT_DETAILS = frozenset(
    {"kind", "node", "event", "t", "owner", "ref", "fwd", "released", "deaths", "until"}
)


_ENDS = frozenset({"finished", "expanded", "failed"})


def with_starts(
    history: list[dict[str, Any]], records: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The history with a ``started`` event for each step, in time order.

    A step's start is kept in its record while it runs and in its end's history entry
    (``started``, ``attempt``) afterwards, not as an entry of its own (that would be
    one more store write per node); this puts it back among the events.
    """
    events = list(history)
    for event in history:
        if event.get("kind") == "node" and event["event"] in _ENDS and event.get("started"):
            events.append(_start(event["node"], event["started"], event.get("attempt", 1)))
    for path, record in (records or {}).items():
        if record.get("state") == "running" and record.get("started"):
            events.append(_start(path, record["started"], record.get("attempt", 1)))
    events.sort(key=lambda event: event["t"])
    return events


def _start(path: str, t: float, attempt: int) -> dict[str, Any]:
    return {"t": t, "kind": "node", "node": path, "event": "started", "attempt": attempt}


def node_table(
    history: list[dict[str, Any]], records: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Each node's latest state and details, in the order nodes first appear.

    ``history`` has every node event (its node records are gone once the request ends);
    ``records`` (node records of a live request) say what is running now. Each entry may
    hold ``state`` (running, done, failed, held), ``attempt``, ``started``, ``finished``,
    ``size_in``, ``size_out``, ``retries``, ``branches``, ``calls`` and ``error``.
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
        details = {k: v for k, v in record.items() if k not in _NOT_DETAILS}
        if path in expanded:
            details.pop("started", None)
        entry.update(details)
    return table


def request_record(flow: str, query: str, owner: str) -> dict[str, Any]:
    now = time.time()
    return {
        "flow": flow,
        "status": RUNNING,
        "created": now,
        "updated": now,
        "query": query,
        "error": None,
        "owner": owner,
    }
