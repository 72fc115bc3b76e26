"""Where the dashboard's flows and requests come from: one small protocol, two sources.

:class:`LocalSource` holds one engine per flow file (an embedded :class:`~faasflow.Engine`
that also runs the hops, or a :class:`faasflow.workers.Client` whose workers run them);
:class:`~faasflow.dashboard.remote.GatewaySource` reaches flow servers through an
OpenFaaS gateway. Both answer in the same JSON shapes, those of the flow server:
a request is ``RequestInfo.to_dict()``, a page is ``{"requests": [...], "next": ...}``.

Every failure a user can cause or see is a :class:`SourceError` carrying the HTTP status
the dashboard answers with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faasflow.dsl.export import to_json
from faasflow.engine.views import STATUSES
from faasflow.errors import (
    ConfigurationError,
    DuplicateRequestError,
    FaasFlowError,
    FlowDefinitionError,
    RequestError,
    RequestStateError,
    StoreError,
    TransportError,
    UnknownRequestError,
)
from faasflow.runtime import Runner, Submitting, check_request_id
from faasflow.server.echo import echo, shorten

__all__ = ["VERBS", "FlowSummary", "LocalFlow", "LocalSource", "Source", "SourceError"]

VERBS = ("pause", "resume", "stop", "redrive")
"""The control verbs, in the order the dashboard shows them."""
PAGE_LIMIT = 1000
"""The most requests a page may hold (the engine's limit)."""


class SourceError(FaasFlowError):
    """A call the dashboard cannot carry out; ``status`` is its HTTP answer.

    Attributes:
        status: 400 bad input, 404 unknown flow or request, 409 not allowed in the
            request's state, 502 the gateway or a flow server failed, 503 a store or
            transport is unavailable.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FlowSummary:
    """A flow as the flow list shows it.

    Attributes:
        name: the flow's name.
        description: one line about it, or ``None``.
    """

    name: str
    description: str | None = None


class Source(Protocol):
    """What the dashboard reads and does; every method may raise :class:`SourceError`."""

    kind: str
    """``"local"`` or ``"gateway"``: shown in the page header."""

    async def start(self) -> None:
        """Open connections (called once, before the first request)."""

    async def close(self) -> None:
        """Release connections."""

    async def flows(self) -> list[FlowSummary]:
        """Every flow, in a stable order."""

    async def export(self, flow: str) -> dict[str, Any]:
        """The flow's JSON export (``docs/export-format.md``)."""

    async def list_requests(
        self, flow: str, *, status: Sequence[str] | None, limit: int, before: str | None
    ) -> dict[str, Any]:
        """A page of the flow's requests, newest first: ``{"requests", "next"}``."""

    async def counts(self, flow: str, statuses: Sequence[str]) -> dict[str, int]:
        """How many of the flow's requests are in each of ``statuses``."""

    async def request(self, flow: str, rid: str) -> dict[str, Any]:
        """The request's state with its node table."""

    async def history(self, flow: str, rid: str) -> list[dict[str, Any]]:
        """The request's events, oldest first."""

    async def result(self, flow: str, rid: str) -> bytes:
        """A succeeded request's result."""

    async def execute(self, flow: str, body: bytes, query: str) -> str:
        """Start a request with input ``body``; its id."""

    async def control(self, flow: str, rid: str, verb: str) -> str:
        """Pause, resume, stop or redrive the request; its status afterwards."""


def check_rid(rid: str) -> str:
    """``rid`` if it is a well-formed request id, else a 400 :class:`SourceError`."""
    try:
        return check_request_id(rid)
    except RequestError:
        # Not the engine's message: it quotes the whole id, of any length.
        raise SourceError(
            400, f"invalid request id {echo(rid)}: use 1-128 letters, digits, '_', '.' or '-'"
        ) from None


def translate(exc: FaasFlowError) -> SourceError:
    """The HTTP status an engine error stands for."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, UnknownRequestError):
        return SourceError(404, str(exc))
    if isinstance(exc, RequestStateError | DuplicateRequestError):
        return SourceError(409, str(exc))
    if isinstance(exc, RequestError):
        return SourceError(400, str(exc))
    if isinstance(exc, FlowDefinitionError):
        return SourceError(500, f"flow definition error: {exc}")
    if isinstance(exc, StoreError | TransportError):
        return SourceError(503, str(exc))
    return SourceError(500, str(exc))


@dataclass(frozen=True)
class LocalFlow:
    """A flow run by this process's engine.

    Attributes:
        name: the flow's name.
        engine: the engine (an embedded one, or a workers' client) for this flow.
        description: one line about it (the flow file's docstring), or ``None``.
    """

    name: str
    engine: Submitting
    description: str | None = None


class LocalSource:
    """Flows of this process: one engine per flow, on the stores given to it.

    Args:
        flows: the flows, in the order the list shows them; names must be unique.
        recover: on start, take over requests of these flows left running by a process
            that died (embedded engines, which run hops themselves).

    Raises:
        ConfigurationError: two flows share a name.
    """

    kind = "local"

    def __init__(self, flows: Sequence[LocalFlow], *, recover: bool = False) -> None:
        self._flows = {flow.name: flow for flow in flows}
        if len(self._flows) != len(flows):
            names = [flow.name for flow in flows]
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ConfigurationError(
                f"two flows are named {', '.join(twice)}: give each flow file its own name"
            )
        self._recover = recover

    async def start(self) -> None:
        for flow in self._flows.values():
            try:
                await flow.engine.start()
                if self._recover and isinstance(flow.engine, Runner):
                    await flow.engine.recover()
            except FaasFlowError as exc:
                raise translate(exc) from exc

    async def close(self) -> None:
        for flow in self._flows.values():
            await flow.engine.close()

    async def flows(self) -> list[FlowSummary]:
        return [FlowSummary(flow.name, flow.description) for flow in self._flows.values()]

    def _engine(self, flow: str) -> Submitting:
        found = self._flows.get(flow)
        if found is None:
            raise SourceError(404, f"no flow {echo(flow)}")
        return found.engine

    async def _info(self, flow: str, rid: str, *, nodes: bool = False) -> dict[str, Any]:
        # Flows may share one state store: a request of another flow is not this one's.
        # The node table (more reads) only where it is shown, not for this check.
        info = (await self._engine(flow).info(check_rid(rid), nodes=nodes)).to_dict()
        if info["flow"] != flow:
            raise SourceError(404, f"no request {rid!r} in flow {flow!r}")
        return info

    async def export(self, flow: str) -> dict[str, Any]:
        engine = self._engine(flow)
        try:
            return to_json(engine.describe(), flow_name=flow)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def list_requests(
        self, flow: str, *, status: Sequence[str] | None, limit: int, before: str | None
    ) -> dict[str, Any]:
        engine = self._engine(flow)
        unknown = sorted(set(status or ()) - set(STATUSES))
        if unknown:
            raise SourceError(400, f"unknown status {shorten(', '.join(unknown))}: use "
                                   f"{', '.join(STATUSES)}")
        if not 1 <= limit <= PAGE_LIMIT:
            raise SourceError(400, f"limit must be 1-{PAGE_LIMIT}, got {limit}")
        try:
            page = await engine.list_requests(status=status, limit=limit, before=before)
        except RequestError as exc:
            if before is None:
                raise translate(exc) from exc
            # Statuses and limit are checked above: the cursor it is, which the engine's
            # message quotes whole.
            raise SourceError(400, f"invalid cursor {echo(before)}") from exc
        except FaasFlowError as exc:
            raise translate(exc) from exc
        return {"requests": [info.to_dict() for info in page.requests], "next": page.next}

    async def counts(self, flow: str, statuses: Sequence[str]) -> dict[str, int]:
        try:
            return await self._engine(flow).counts(statuses)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def request(self, flow: str, rid: str) -> dict[str, Any]:
        try:
            return await self._info(flow, rid, nodes=True)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def history(self, flow: str, rid: str) -> list[dict[str, Any]]:
        try:
            await self._info(flow, rid)
            return await self._engine(flow).history(rid)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def result(self, flow: str, rid: str) -> bytes:
        try:
            await self._info(flow, rid)
            return await self._engine(flow).result(rid)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def execute(self, flow: str, body: bytes, query: str) -> str:
        try:
            return await self._engine(flow).submit(body, query=query)
        except FaasFlowError as exc:
            raise translate(exc) from exc

    async def control(self, flow: str, rid: str, verb: str) -> str:
        if verb not in VERBS:
            raise SourceError(404, f"unknown action {echo(verb)}: use {', '.join(VERBS)}")
        engine = self._engine(flow)
        try:
            await self._info(flow, rid)
            await getattr(engine, verb)(rid)
            return (await engine.info(rid)).status
        except FaasFlowError as exc:
            raise translate(exc) from exc
