"""What the engine stores about requests and steps, typed, each with one codec.

* :class:`RequestRecord` — ``r/R``: a request's status, failure and owner;
* :class:`StepRecord` — ``r/R/n/PATH`` (a node, or a dynamic node's aggregation) and
  ``r/R/x/PATH`` (a dynamic node's expansion): running under a claim, done with its
  output refs, or failed;
* :class:`HistoryEntry` — one item of ``h/R``, the request's history.

Records are stored as JSON objects, so a record written by one process is read by any
other; each class reads what it wrote with :meth:`decode`. The records kept after a
request ends (its record and history) leave out fields that hold their default; step
records, written twice per step and deleted with the request, are written whole (the
faster encoding). Comparisons that make claims safe are on the stored bytes: a step's
claim is the exact bytes of its running record, kept by the claimer.

Records are values: nothing changes one after it is made (``dataclasses.replace`` makes
a changed copy). They are not declared frozen because a frozen dataclass costs six times
as much to make, and steps make several per hop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any, Literal, Self

import orjson

RUNNING, PAUSED, SUCCEEDED, FAILED, STOPPED = "running", "paused", "succeeded", "failed", "stopped"
STATUSES = (RUNNING, PAUSED, SUCCEEDED, FAILED, STOPPED)
FINISHED = frozenset({SUCCEEDED, STOPPED})
"""Nothing more will happen to these requests (a failed one can still be redriven)."""

StepState = Literal["running", "done", "failed"]


_LAYOUTS: dict[type, tuple[tuple[str, ...], tuple[Any, ...], Callable[[Any], Any]]] = {}


def _layout(kind: type) -> tuple[tuple[str, ...], tuple[Any, ...], Callable[[Any], Any]]:
    """A record class's field names, their defaults (``MISSING`` for required ones),
    and a getter of all their values at once."""
    found = _LAYOUTS.get(kind)
    if found is None:
        items = fields(kind)
        names = tuple(item.name for item in items)
        defaults = tuple(
            item.default_factory() if callable(item.default_factory) else item.default
            for item in items
        )
        found = _LAYOUTS[kind] = (names, defaults, attrgetter(*names))
    return found


def _values(record: Any) -> dict[str, Any]:
    """A record's fields as a dict, leaving out those that hold their default (records
    are written on every step: this is on the engine's hot path)."""
    names, defaults, values = _layout(type(record))
    return {
        name: value
        for name, value, default in zip(names, values(record), defaults, strict=True)
        if value is not default and value != default
    }


def _encode(record: Any) -> bytes:
    return orjson.dumps(_values(record))


@dataclass(slots=True)
class FailureInfo:
    """Why a request failed: the node (path), the attempt and the cause."""

    node: str
    attempt: int
    cause: str


@dataclass(slots=True)
class RequestRecord:
    """A request as stored at ``r/R``.

    Attributes:
        flow: the flow's name.
        status: running, paused, succeeded, failed or stopped.
        created: epoch seconds.
        updated: epoch seconds of the last status change.
        query: the request's query string.
        owner: the engine that created it (or took it over): its in-process hops die
            with it, so :meth:`~faasflow.runtime.engine.Engine.recover` takes over the
            requests of engines that are gone.
        error: why it failed, while failed.
        callback_url: where its end is announced (the flow server's callbacks).
        result_size: the result's size, once succeeded.
        retired: failed long ago; its intermediate state was dropped.
    """

    flow: str
    status: str
    created: float
    updated: float
    query: str = ""
    owner: str = ""
    error: FailureInfo | None = None
    callback_url: str | None = None
    result_size: int | None = None
    retired: bool = False

    @classmethod
    def new(cls, flow: str, query: str, owner: str, callback_url: str | None) -> Self:
        now = time.time()
        return cls(flow, RUNNING, now, now, query, owner, callback_url=callback_url)

    def encode(self) -> bytes:
        return _encode(self)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        values = orjson.loads(raw)
        error = values.get("error")
        if error is not None:
            values["error"] = FailureInfo(**error)
        return cls(**values)

    def moved(self, status: str, **changes: Any) -> Self:
        """This record in ``status`` now, with ``changes``."""
        return replace(self, status=status, updated=time.time(), **changes)


@dataclass(slots=True)
class StepRecord:
    """A step as stored at ``r/R/n/PATH`` or ``r/R/x/PATH``.

    Attributes:
        state: ``running`` (claimed), ``done`` or ``failed``.
        attempt: how many times the step was started.
        started: when this attempt started (epoch seconds).
        owner: the engine running it, while running.
        until: while running, when the claim's first lease runs out (epoch seconds;
            see :mod:`faasflow.engine._claims`).
        released: while running: its owner gave it up; the next delivery takes it.
        deaths: times a process died running it (a node that kills its process).
        finished: when it ended.
        ref: its output's ref, once done (the input's, for an expansion).
        fwd: refs of what its edges' forwarders made, by child id.
        chosen: a dynamic node's expansion: the branches it chose, ``(key, input ref)``;
            a wide expansion keeps them in chunks of their own instead (``chunks``).
        chunks: ``(token, count)`` of a wide expansion's chunks of branches (see
            :func:`faasflow.engine._keys.branch_chunk`), so no record grows past a page.
        branches: an expansion's or an aggregation's number of branches.
        size_in, size_out: bytes in and out.
        calls: the function-call attempts of the node's last operation.
        error: why it failed.
    """

    state: StepState
    attempt: int = 1
    started: float | None = None
    owner: str | None = None
    until: float | None = None
    released: bool = False
    deaths: int = 0
    finished: float | None = None
    ref: str | None = None
    fwd: dict[str, str] = field(default_factory=dict)
    chosen: tuple[tuple[str, str], ...] = ()
    chunks: tuple[str, int] | None = None
    branches: int | None = None
    size_in: int | None = None
    size_out: int | None = None
    calls: int | None = None
    error: str | None = None

    def encode(self) -> bytes:
        # Spelled out rather than generic: two step records are written per step.
        shown: dict[str, Any] = {"state": self.state, "attempt": self.attempt}
        if self.started is not None:
            shown["started"] = self.started
        if self.owner is not None:
            shown["owner"] = self.owner
        if self.until is not None:
            shown["until"] = self.until
        if self.released:
            shown["released"] = True
        if self.deaths:
            shown["deaths"] = self.deaths
        if self.finished is not None:
            shown["finished"] = self.finished
        if self.ref is not None:
            shown["ref"] = self.ref
        if self.fwd:
            shown["fwd"] = self.fwd
        if self.chosen:
            shown["chosen"] = self.chosen
        if self.chunks is not None:
            shown["chunks"] = self.chunks
        if self.branches is not None:
            shown["branches"] = self.branches
        if self.size_in is not None:
            shown["size_in"] = self.size_in
        if self.size_out is not None:
            shown["size_out"] = self.size_out
        if self.calls is not None:
            shown["calls"] = self.calls
        if self.error is not None:
            shown["error"] = self.error
        return orjson.dumps(shown)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        values = orjson.loads(raw)
        chosen = values.get("chosen")
        if chosen:
            values["chosen"] = tuple((key, ref) for key, ref in chosen)
        chunks = values.get("chunks")
        if chunks:
            values["chunks"] = (chunks[0], chunks[1])
        return cls(**values)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def done(self) -> bool:
        return self.state == "done"

    def details(self) -> dict[str, Any]:
        """What the node table shows of this record (see
        :func:`faasflow.engine.views.node_table`)."""
        shown: dict[str, Any] = {"state": self.state, "attempt": self.attempt}
        for name in ("started", "finished", "size_in", "size_out", "calls", "error"):
            value = getattr(self, name)
            if value is not None:
                shown[name] = value
        count = self.branch_count
        if count is not None:
            shown["branches"] = count
        return shown

    @property
    def branch_count(self) -> int | None:
        """How many branches an expansion chose or an aggregation aggregated."""
        return self.branches if self.branches is not None else len(self.chosen) or None


@dataclass(slots=True)
class HistoryEntry:
    """One event of a request's history (``h/R``).

    Attributes:
        t: when (epoch seconds).
        kind: ``request`` or ``node``.
        node: the node's path (``""`` for request events).
        event: ``started``, ``succeeded``, ``failed``, ``stopped`` (requests);
            ``started``, ``retried``, ``held``, ``finished``, ``expanded``, ``failed``
            (nodes).
        attempt, started, finished, size_in, size_out, calls, branches, error: the
            step's details, as :class:`StepRecord` has them.
        size: a request's input (started) or result (succeeded) size.
        traceback: for a node that failed in the user's own code, where (from the
            user's first frame on).
    """

    t: float
    kind: str
    node: str
    event: str
    attempt: int | None = None
    started: float | None = None
    finished: float | None = None
    size: int | None = None
    size_in: int | None = None
    size_out: int | None = None
    calls: int | None = None
    branches: int | None = None
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def now(cls, kind: str, node: str, event: str, **details: Any) -> Self:
        return cls(time.time(), kind, node, event, **details)

    @classmethod
    def of_step(cls, node: str, event: str, record: StepRecord) -> Self:
        """The entry of a step that ended with ``record``."""
        return cls(
            time.time(), "node", node, event, record.attempt, record.started,
            record.finished, None, record.size_in, record.size_out, record.calls,
            record.branch_count,
        )  # fmt: skip

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        return cls(**orjson.loads(raw))

    def to_dict(self) -> dict[str, Any]:
        """As the public history shows it: a JSON object without absent details."""
        # Spelled out rather than generic: one entry is written per step.
        shown: dict[str, Any] = {"t": self.t, "kind": self.kind, "node": self.node,
                                 "event": self.event}
        if self.attempt is not None:
            shown["attempt"] = self.attempt
        if self.started is not None:
            shown["started"] = self.started
        if self.finished is not None:
            shown["finished"] = self.finished
        if self.size is not None:
            shown["size"] = self.size
        if self.size_in is not None:
            shown["size_in"] = self.size_in
        if self.size_out is not None:
            shown["size_out"] = self.size_out
        if self.calls is not None:
            shown["calls"] = self.calls
        if self.branches is not None:
            shown["branches"] = self.branches
        if self.error is not None:
            shown["error"] = self.error
        if self.traceback is not None:
            shown["traceback"] = self.traceback
        return shown
