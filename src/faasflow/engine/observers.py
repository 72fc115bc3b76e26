"""What an engine tells the rest of the program as it works: one observer interface.

Metrics (:class:`faasflow.metrics.EngineMetrics`), the command line's progress lines,
the flow server's completion callbacks and the workers' end announcements each
implement :class:`Observer`, overriding what they need, and are attached with
``engine.observe(observer)``. An observer is called in the process where the thing
happened; an exception it raises is logged and goes no further.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faasflow.engine._records import HistoryEntry, RequestRecord
from faasflow.engine.operations import CallEvent
from faasflow.errors import RequestFailedError

__all__ = ["CallEvent", "HistoryEntry", "Observer", "Observers", "RequestEnd"]

log = logging.getLogger("faasflow.engine")


@dataclass(frozen=True)
class RequestEnd:
    """How a request ended, as :meth:`Observer.ended` gets it.

    Attributes:
        request_id: the request.
        flow: the flow's name.
        status: ``succeeded``, ``failed`` or ``stopped``.
        record: the request record as it was written at the end.
        result: the output, for a succeeded request.
        error: why it ended, otherwise.
    """

    request_id: str
    flow: str
    status: str
    record: RequestRecord
    result: bytes | None = None
    error: RequestFailedError | None = None


class Observer:
    """Override the methods for what you want to hear of; each does nothing by default."""

    def event(self, request_id: str, entry: HistoryEntry) -> None:
        """A history event this process recorded, as it is recorded; also each step's
        ``started`` (kept in the step's record, not as an entry of the history)."""

    def call(self, request_id: str, event: CallEvent) -> None:
        """A function-call attempt this process made."""

    async def ended(self, end: RequestEnd) -> None:
        """A request ended, in the process that recorded its end (once per end)."""


class Observers(Observer):
    """The observers of one engine, called in the order they were added."""

    def __init__(self) -> None:
        self._all: list[Observer] = []
        self._events: list[Observer] = []
        self._calls: list[Observer] = []
        self._ends: list[Observer] = []

    def add(self, observer: Observer) -> None:
        """Attach ``observer``; only the methods it overrides are called."""
        self._all.append(observer)
        kind = type(observer)
        if kind.event is not Observer.event:
            self._events.append(observer)
        if kind.call is not Observer.call:
            self._calls.append(observer)
        if kind.ended is not Observer.ended:
            self._ends.append(observer)

    @property
    def hear_events(self) -> bool:
        """Whether any observer wants events (building one costs a little)."""
        return bool(self._events)

    def event(self, request_id: str, entry: HistoryEntry) -> None:
        for observer in self._events:
            try:
                observer.event(request_id, entry)
            except Exception:
                log.exception("observer %r failed on an event", observer)

    def call(self, request_id: str, event: CallEvent) -> None:
        for observer in self._calls:
            try:
                observer.call(request_id, event)
            except Exception:
                log.exception("observer %r failed on a call", observer)

    async def ended(self, end: RequestEnd) -> None:
        for observer in self._ends:
            try:
                await observer.ended(end)
            except Exception:
                log.exception("request %s: observer %r failed on its end",
                              end.request_id, observer)
