"""``faasflow run -v``: one stderr line per node and request event, with timings and sizes."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from faasflow.engine.observers import HistoryEntry, Observer

__all__ = ["Progress", "format_duration", "format_size"]


def format_size(size: int) -> str:
    """``512`` → ``"512 B"``, ``2048`` → ``"2.0 KiB"``, and so on up to GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_duration(seconds: float) -> str:
    """Milliseconds below a second (``"1.2 ms"``), seconds above (``"3.40 s"``)."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


class Progress(Observer):
    """An engine observer that writes a line for each event.

    Args:
        stream: where lines go; ``sys.stderr`` as it is at each event when ``None``
            (so a test's captured stderr sees them).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._request_started: dict[str, float] = {}
        self._node_started: dict[tuple[str, str], float] = {}

    def event(self, request_id: str, entry: HistoryEntry) -> None:
        line = self.format({"request_id": request_id, **entry.to_dict()})
        stream = self._stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def format(self, event: dict[str, Any]) -> str:
        """The line for ``event``, without its newline; a failure that carries the
        traceback of the user's callable is followed by it, indented."""
        rid = str(event.get("request_id", "?"))
        if event.get("kind") == "request":
            text = self._request(rid, event)
        else:
            text = self._node(rid, event)
        line = f"[req {rid}] {text}"
        trace = event.get("traceback")
        if event.get("event") == "failed" and trace:
            line += "".join(f"\n    {part}" for part in str(trace).splitlines())
        return line

    def _request(self, rid: str, event: dict[str, Any]) -> str:
        name = str(event.get("event", "?"))
        now = float(event.get("t", 0.0))
        if name == "started":
            self._request_started[rid] = now
            return f"request started{_sizes(event.get('size'), None)}"
        started = self._request_started.pop(rid, None)
        took = f" in {format_duration(now - started)}" if started is not None else ""
        return f"request {name}{took}{_sizes(None, event.get('size'))}"

    def _node(self, rid: str, event: dict[str, Any]) -> str:
        node = str(event.get("node", "?"))
        name = str(event.get("event", "?"))
        attempt = event.get("attempt")
        key = (rid, node)
        if name == "started":
            self._node_started[key] = float(event.get("t", 0.0))
            again = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
            return f"{node} started{again}"
        if name == "retried":
            return f"{node} call attempt {attempt} failed, retrying: {event.get('error', '')}"
        if name == "held":
            return f"{node} held (the request is paused)"
        started = self._node_started.pop(key, None)
        if name == "failed":
            # The attempt the request's error names: the failing call's.
            tried = event.get("calls", attempt)
            return f"{node} failed (attempt {tried}): {event.get('error', '')}"
        # The engine's record times the node itself; our own start time is the fallback.
        begin = event.get("started", started)
        end = event.get("finished", event.get("t"))
        took = f" in {format_duration(float(end) - float(begin))}" if begin and end else ""
        return f"{node} {name}{took}{_sizes(event.get('size_in'), event.get('size_out'))}"


def _sizes(size_in: object, size_out: object) -> str:
    shown_in = format_size(size_in) if isinstance(size_in, int) else None
    shown_out = format_size(size_out) if isinstance(size_out, int) else None
    if shown_in and shown_out:
        return f" ({shown_in} -> {shown_out})"
    if shown_in:
        return f" ({shown_in} in)"
    if shown_out:
        return f" ({shown_out} out)"
    return ""
