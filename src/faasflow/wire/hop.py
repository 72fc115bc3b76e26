"""The hop: "run node N of request R at path P with inputs I", as a serialisable value.

A hop is everything a process needs to run one step of a request, so that it can travel
through a queue, an HTTP call or a message bus and be signed as a whole. Its ``id`` is
stable: the same step always has the same id, which is what makes duplicates harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson

HopKind = Literal["node", "collect"]


@dataclass(frozen=True)
class Hop:
    """One step of a request.

    Attributes:
        request_id: the request.
        flow: the flow's name.
        path: the node instance (see :mod:`faasflow.dsl.spec`).
        kind: ``"node"`` runs the node; ``"collect"`` runs a dynamic node's aggregator
            over its finished branches.
        inputs: ordered ``(name, data_ref)`` pairs: ``("", ref)`` for a single input,
            parent ids for a join; empty when no data flows in.
        query: the request's original query string.
        sent_at: when the hop was made (epoch seconds); signed, so stale hops can be
            refused. Not part of the step's identity: deliveries of one step compare equal.
        trace: the W3C ``traceparent`` of the span that sent the hop, if tracing.
    """

    request_id: str
    flow: str
    path: str
    kind: HopKind = "node"
    inputs: tuple[tuple[str, str], ...] = ()
    query: str = ""
    sent_at: float = field(default=0.0, compare=False)
    trace: str | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        """Stable identity of the step: equal for every delivery of the same hop."""
        return f"{self.request_id}:{self.kind}:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "flow": self.flow,
            "path": self.path,
            "kind": self.kind,
            "inputs": [list(pair) for pair in self.inputs],
            "query": self.query,
            "sent_at": self.sent_at,
        }
        if self.trace:
            out["trace"] = self.trace
        return out

    @cached_property
    def json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the form that is stored and signed."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    def to_json(self) -> str:
        """:attr:`json`, computed once per hop."""
        return self.json

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Hop:
        """Rebuild a hop; :class:`ValueError` names the first malformed field."""
        try:
            kind = raw["kind"]
            if kind not in ("node", "collect"):
                raise ValueError(f"kind {kind!r}")
            inputs = tuple((str(name), str(ref)) for name, ref in raw.get("inputs", ()))
            return cls(
                request_id=_text(raw, "request_id"),
                flow=_text(raw, "flow"),
                path=_text(raw, "path"),
                kind=kind,
                inputs=inputs,
                query=str(raw.get("query", "")),
                sent_at=float(raw.get("sent_at", 0.0)),
                trace=raw.get("trace"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed hop: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Hop:
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"malformed hop: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError("malformed hop: not a JSON object")
        return cls.from_dict(raw)


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value
