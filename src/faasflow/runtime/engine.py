"""The embedded runtime: run flows in this process, in a script, a test or a notebook.

:class:`Engine` owns the stores, the in-process transport and the function registry
for one flow; :func:`run` and :func:`arun` are the one-call versions.
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

from faasflow.engine.definition import Define
from faasflow.runtime._core import Core, EngineOptions, Options
from faasflow.runtime._runner import Runner
from faasflow.runtime._sweeper import Sweeper
from faasflow.stores.base import DataStore, StateStore
from faasflow.transports.base import Transport
from faasflow.transports.inprocess import InProcessTransport

__all__ = ["Engine", "arun", "run"]


class Engine(Runner):
    """Runs one flow in this process.

    Args:
        define: ``define(flow, context)``, called once per request.
        flow_name: the flow's name (keys, history and logs carry it).
        state_store: a :class:`StateStore` or a store URL; SQLite by default
            (:func:`faasflow.config.default_state_url`: ``FAASFLOW_STATE``, else a
            file in the user's cache folder).
        data_store: a :class:`DataStore` or a store URL; the state store's URL by default.
        transport: how hops travel; an in-process queue by default.
        concurrency: hops that may run at once (in-process transport).
        **options: the options every runtime takes (:class:`~faasflow.runtime._core.
            Options`): ``functions``, ``functions_dir``, ``gateway``, ``threads``,
            ``default_timeout``, ``result_ttl``, ``failed_ttl``, ``resend_after``,
            ``stall_after``, ``sweep_interval``, ``lease_ttl``, ``store_patience``,
            ``max_claims``.
    """

    def __init__(
        self,
        define: Define,
        *,
        flow_name: str = "flow",
        state_store: StateStore | str | None = None,
        data_store: DataStore | str | None = None,
        transport: Transport | None = None,
        concurrency: int = 64,
        **options: Unpack[EngineOptions],
    ) -> None:
        self._core = Core(
            define,
            flow_name=flow_name,
            state_store=state_store,
            data_store=data_store,
            transport=transport or InProcessTransport(concurrency=concurrency),
            options=Options.of(options),
        )
        self._sweeper = Sweeper(self._core)



async def arun(
    define: Define,
    data: bytes | str = b"",
    *,
    state_store: StateStore | str | None = None,
    data_store: DataStore | str | None = None,
    flow_name: str = "flow",
    query: str = "",
    request_id: str | None = None,
    timeout: float | None = None,
    **options: Unpack[EngineOptions],
) -> bytes:
    """Run one request of ``define`` on ``data`` and return its result.

    Takes the :class:`Engine` options (``functions``, ``functions_dir``, ``gateway``...).

    Raises:
        FlowDefinitionError: the definition is invalid; nothing ran.
        RequestFailedError: a node failed (``node``, ``attempt`` and ``cause`` say which).
    """
    engine = Engine(define, flow_name=flow_name, state_store=state_store,
                    data_store=data_store, **options)
    async with engine:
        return await engine.run(data, request_id=request_id, query=query, timeout=timeout)


def run(define: Define, data: bytes | str = b"", **options: Any) -> bytes:
    """Blocking :func:`arun`: run one request and return its result."""
    return asyncio.run(arun(define, data, **options))
