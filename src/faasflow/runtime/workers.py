"""The distributed runtime: stateless workers on NATS JetStream, and a client for them.

A :class:`Worker` runs a flow's hops as they come from JetStream; start as many as you
like, on any machines, all pointing at the same NATS server and stores (Redis, etcd or
PostgreSQL for state; Redis, S3, PostgreSQL or a shared folder for data). A
:class:`Client` starts and controls requests without running any hop and without an
HTTP server::

    async with Worker(define, flow_name="orders", nats="nats://nats:4222",
                      state_store="redis://redis:6379/0", data_store="s3://bucket/orders"):
        ...  # serves until closed

    async with Client(define, flow_name="orders", nats=..., state_store=..., data_store=...) as c:
        rid = await c.submit(b"input")
        result = await c.wait(rid, timeout=60)

``info``, ``result``, ``history``, ``pause``, ``resume``, ``stop`` and ``redrive`` are
the same calls as :class:`~faasflow.runtime.engine.Engine`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from faasflow.config import default_flow_name, shared_store_problem
from faasflow.engine.context import Context
from faasflow.engine.definition import Define
from faasflow.engine.observers import Observer, RequestEnd
from faasflow.errors import ConfigurationError, FaasFlowError
from faasflow.runtime._core import Core, EngineOptions, Options
from faasflow.runtime._requests import Submitting
from faasflow.runtime._runner import Runner
from faasflow.runtime._sweeper import Sweeper
from faasflow.stores.base import DataStore, StateStore
from faasflow.transports.base import HopHandler, Transport
from faasflow.wire.hop import Hop

if TYPE_CHECKING:
    from faasflow.transports.nats import NatsTransport

__all__ = ["Client", "Worker"]


def _nats_transport(url: str, **options: Any) -> NatsTransport:
    """A NATS transport; nats-py is an extra, needed only where NATS is used."""
    try:
        from faasflow.transports.nats import NatsTransport
    except ModuleNotFoundError as missing:
        raise ConfigurationError(
            f"workers need the {missing.name} package: pip install 'faasflow[nats]'"
        ) from missing
    return NatsTransport(url, **options)


def _shared(state_store: StateStore | str, data_store: DataStore | str | None) -> None:
    """Refuse stores other processes cannot see (a worker's requests would wait forever)."""
    for option, store in (("state_store", state_store), ("data_store", data_store)):
        problem = shared_store_problem(store, option) if isinstance(store, str) else None
        if problem is not None:
            raise ConfigurationError(problem)


class _AnnounceEnds(Observer):
    """Tells waiting clients over NATS that a request ended (they also poll)."""

    def __init__(self, nats: NatsTransport) -> None:
        self.nats = nats

    async def ended(self, end: RequestEnd) -> None:
        await self.nats.announce_end(end.request_id)


class Worker(Runner):
    """Runs the hops of one flow from NATS JetStream until closed.

    Args:
        define: ``define(flow, context)``, the same in every worker and client.
        nats: the NATS server URL(s).
        state_store: a shared state store (object or URL: ``redis://``, ``etcd://``,
            ``postgresql://``).
        data_store: a shared data store (object or URL); the state store's URL by default.
        flow_name: the flow's name, the same in every worker and client; by default the
            stem of the file that defines ``define``, as ``faasflow worker FILE`` names it.
        concurrency: hops this worker runs at once.
        ack_wait: seconds after which a hop of a worker that stopped answering goes to
            another worker.
        max_deliveries: deliveries of one hop, and starts of one step by workers that
            died running it, before its request fails.
        **options: the options every runtime takes (see
            :class:`~faasflow.runtime.engine.Engine`); ``lease_ttl`` defaults to half of
            ``ack_wait``, so a dead worker's claim is gone when its hop comes back.
    """

    def __init__(
        self,
        define: Define,
        *,
        nats: str,
        state_store: StateStore | str,
        data_store: DataStore | str | None = None,
        flow_name: str | None = None,
        concurrency: int = 64,
        ack_wait: float = 30.0,
        max_deliveries: int = 5,
        **options: Unpack[EngineOptions],
    ) -> None:
        _shared(state_store, data_store)
        flow_name = flow_name or default_flow_name(define)
        transport = _nats_transport(
            nats,
            flow_name=flow_name,
            consume=True,
            concurrency=concurrency,
            ack_wait=ack_wait,
            max_deliveries=max_deliveries,
        )
        options.setdefault("lease_ttl", ack_wait / 2)
        options.setdefault("max_claims", max_deliveries)
        self._core = Core(define, flow_name=flow_name, state_store=state_store,
                          data_store=data_store, transport=transport,
                          options=Options.of(options))
        self._sweeper = Sweeper(self._core)
        self._core.executor.observe(_AnnounceEnds(transport))


class _NoTransport(Transport):
    """The transport of a client given no NATS URL: it may read and pause, not send."""

    async def start(self, handler: HopHandler) -> None:
        pass

    async def send(self, hop: Hop) -> None:
        raise ConfigurationError(
            f"cannot send hop {hop.id}: this client was opened without a NATS URL"
        )

    async def close(self) -> None:
        pass


def _no_definition(flow: Any, context: Context) -> None:
    raise ConfigurationError(
        "this client was opened without the flow's define(); pass it to start requests"
    )


class Client(Submitting):
    """Starts and controls requests that :class:`Worker` processes run.

    The client runs no hop itself: ``submit`` records the request and publishes its
    first hop. ``stop`` runs the flow's ``on_failure``/``finally_`` hooks here, so pass
    ``define`` for that and for ``submit``; reading (``info``, ``result``, ``history``)
    and ``pause`` need only the stores.

    Args:
        define: the flow's ``define``, or ``None`` for a client that only reads and
            controls.
        nats: the NATS server URL(s); ``None`` for a client that only reads.
        state_store, data_store, flow_name: as for :class:`Worker` (without ``define``,
            ``flow_name`` defaults to ``flow``).
        **options: the options every runtime takes (see
            :class:`~faasflow.runtime.engine.Engine`; functions and sweeping do not
            apply).
    """

    def __init__(
        self,
        define: Define | None = None,
        *,
        nats: str | None = None,
        state_store: StateStore | str,
        data_store: DataStore | str | None = None,
        flow_name: str | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        _shared(state_store, data_store)
        flow_name = flow_name or (default_flow_name(define) if define else "flow")
        self._nats = None if nats is None else _nats_transport(nats, flow_name=flow_name,
                                                                consume=False)
        self._core = Core(
            define or _no_definition,
            flow_name=flow_name,
            state_store=state_store,
            data_store=data_store,
            transport=self._nats or _NoTransport(),
            options=Options.of(options),
            runs_hops=False,
        )

    async def start(self) -> None:
        """Open the stores and connect; with NATS, hear of request ends as they happen."""
        if self._core.started:
            return
        await self._core.start()
        if self._nats is not None:
            await self._nats.on_end(self._ended_elsewhere)

    async def _ended_elsewhere(self, rid: str) -> None:
        # A worker announced an end: settle this client's waiters now instead of at
        # their next poll. Announcements are best effort; wait() polls as well.
        requests = self._core.executor.requests
        if not requests.waited_for(rid):
            return
        try:
            result = await self.outcome(rid)
        except FaasFlowError as exc:
            requests.resolve(rid, exc)
            return
        if result is not None:
            requests.resolve(rid, result)
