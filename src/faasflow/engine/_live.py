"""What this process knows of the requests it is working on: their flows, built once.

``define`` runs once per request in each process (not once per hop): a request's
:class:`LiveRequest` — its validated flow, its planner, its :class:`Context` — is kept
in a bounded cache, the least recently used dropped first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from faasflow.dsl.spec import FlowSpec
from faasflow.engine.context import Context
from faasflow.engine.definition import Define, build_flow
from faasflow.engine.planner import Planner
from faasflow.stores.base import DataStore
from faasflow.wire.hop import Hop

CAPACITY = 1024
"""Requests whose flows are kept built."""


@dataclass
class LiveRequest:
    """What this process knows of one request it is working on."""

    spec: FlowSpec
    planner: Planner
    context: Context
    base: Hop
    branch_counts: dict[str, int] = field(default_factory=dict)
    """Dynamic node path → how many branches it started (read once, not per branch)."""


class LiveRequests:
    """The flows of the requests of one flow that this process works on.

    Args:
        flow_name: the flow's name.
        define: ``define(flow, context)``.
        data: the data store, for :class:`Context` values.
    """

    def __init__(self, flow_name: str, define: Define, data: DataStore) -> None:
        self.flow_name = flow_name
        self.define = define
        self.data = data
        self._cache: OrderedDict[str, LiveRequest] = OrderedDict()

    def get(self, rid: str, query: str) -> LiveRequest:
        """Request ``rid``'s live view; its flow is built on first use.

        Raises:
            FlowDefinitionError: ``define`` raised or built an invalid flow.
        """
        found = self._cache.get(rid)
        if found is not None:
            self._cache.move_to_end(rid)
            return found
        context = Context(
            request_id=rid,
            flow_name=self.flow_name,
            query_string=query,
            data_store=self.data,
            loop=asyncio.get_running_loop(),
        )
        spec = build_flow(self.define, context)
        found = LiveRequest(spec, Planner(spec), context, Hop(rid, self.flow_name, "", query=query))
        self._cache[rid] = found
        if len(self._cache) > CAPACITY:
            self._cache.popitem(last=False)
        return found

    def fresh(self, rid: str, query: str) -> LiveRequest:
        """Like :meth:`get`, building the flow anew (a new request under this id)."""
        self._cache.pop(rid, None)
        return self.get(rid, query)

    def forget(self, rid: str) -> None:
        """Drop ``rid``'s view (its request ended here, or its creation failed)."""
        self._cache.pop(rid, None)
