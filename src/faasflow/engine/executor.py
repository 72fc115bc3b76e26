"""The hop-running half of the engine: runs hops and carries out the planner's actions.

Crash safety comes from the order of writes, not from transactions spanning stores:

1. a node's output (and its edges' forwarded data) is written to the data store;
2. one atomic state commit flips its record from ``running`` to ``done`` (naming those
   refs), appends the history entry, records each successor hop as *pending* and
   forgets this hop's pending record — only if the record is still this execution's
   claim;
3. the successors are sent. A join needs the done record durable first (its members
   name the refs), so then the parent joins the set after the commit, and this hop's
   pending record goes last.

A crash between any two steps leaves the hop pending, so it runs again; finding its
record ``done``, it only re-announces from the recorded refs, and every announcement is
idempotent (set members, records claimed by compare-and-set). See docs/engine.md.

The executor is composed of the engine's parts, each with one job: :class:`RequestBook`
(request records, history, waiters), :class:`Lifecycle` (how requests end),
:class:`Claims` (who runs which step), :class:`HopBook` (pending and held hops),
:class:`Values` (data between nodes), :class:`LiveRequests` (each request's flow, built
once) and :class:`Observers` (who is told what happens).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from faasflow import _failpoints, tracing
from faasflow.callables import call_user
from faasflow.dsl.spec import NodeSpec
from faasflow.engine import _keys as keys
from faasflow.engine._claims import Claim, Claims
from faasflow.engine._hopbook import HopBook
from faasflow.engine._live import LiveRequest, LiveRequests
from faasflow.engine._owners import new_token, process_owner
from faasflow.engine._records import (
    FINISHED,
    RUNNING,
    HistoryEntry,
    RequestRecord,
    StepRecord,
)
from faasflow.engine._requests import RequestBook
from faasflow.engine._values import Values
from faasflow.engine.context import current_node
from faasflow.engine.definition import Define
from faasflow.engine.lifecycle import Lifecycle
from faasflow.engine.observers import Observer, Observers
from faasflow.engine.operations import Caller, CallEvent, run_operations, run_user
from faasflow.engine.planner import (
    Action,
    DagDone,
    Finish,
    FireCollect,
    FireNode,
    Join,
    Send,
    SubdagDone,
    split_member,
)
from faasflow.engine.settings import Settings
from faasflow.errors import (
    DuplicateRequestError,
    FaasFlowError,
    NodeError,
    OperationError,
    StoreError,
)
from faasflow.stores.base import Append, DataStore, Delete, Put, StateStore, WriteOp
from faasflow.transports.base import Transport
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.engine")


@dataclass(frozen=True)
class _Done:
    """The step had finished: its done record."""

    record: StepRecord


@dataclass(frozen=True)
class _Busy:
    """Another live process runs the step."""


@dataclass(frozen=True)
class _Abandoned:
    """Every process that took the step died in it: it may be what kills them."""

    raw: bytes
    deaths: int


ClaimResult = Claim | _Done | _Busy | _Abandoned
"""What :meth:`Executor._claim` found: this execution's claim, or why there is none."""

Seen = dict[str, bytes | None]
"""Step records as read when a hop arrived, by key: saves reading them again."""

Work = Callable[[StepRecord], Awaitable[StepRecord]]
"""A step's work: given its claim's record, it returns its done record."""

Plan = Callable[[StepRecord], Awaitable[list[Action]]]
"""What follows a step, given its done record."""

CHUNK = 1000
"""Branches of a dynamic node kept in its record; a wider choice goes in chunks of this
many, each a key of its own (so no stored value grows with the width)."""


class Executor:
    """Runs the requests of one flow through the three ports.

    Args:
        flow_name: the flow's name.
        define: ``define(flow, context)``.
        state, data: the stores.
        transport: how hops travel.
        caller: calls the functions that operations name.
        settings: the engine's knobs.
    """

    def __init__(
        self,
        *,
        flow_name: str,
        define: Define,
        state: StateStore,
        data: DataStore,
        transport: Transport,
        caller: Caller,
        settings: Settings | None = None,
    ) -> None:
        self.flow_name = flow_name
        self.define = define
        self.state = state
        self.data = data
        self.transport = transport
        self.caller = caller
        self.settings = settings or Settings()
        self.owner = process_owner()
        """This engine's name in the claims it makes and the requests it creates."""
        self.observers = Observers()
        self.requests = RequestBook(flow_name, state, data, self.observers)
        self.values = Values(data, self.settings.inline_limit)
        self.live = LiveRequests(flow_name, define, data)
        self.hops = HopBook(state)
        self.claims = Claims(state, self.owner, self.settings.lease_ttl, self.transport.send)
        """The steps this engine runs now, their leases and the engine's heartbeat."""
        self.lifecycle = Lifecycle(
            flow_name=flow_name, state=state, data=data, settings=self.settings,
            requests=self.requests, values=self.values, live=self.live, hops=self.hops,
            observers=self.observers,
        )  # fmt: skip

    def observe(self, observer: Observer) -> None:
        """Tell ``observer`` what this engine does from now on."""
        self.observers.add(observer)

    @property
    def running_steps(self) -> int:
        """How many steps (nodes, expansions, aggregations) this engine is running now."""
        return len(self.claims)

    async def _observe_call(self, rid: str, event: CallEvent) -> None:
        self.observers.call(rid, event)
        if event.retrying:
            await self.requests.record(rid, HistoryEntry.now(
                "node", event.node, "retried", attempt=event.attempt, error=event.error
            ))  # fmt: skip

    # -- starting requests --------------------------------------------------------
    async def submit(
        self,
        rid: str,
        data: bytes,
        query: str = "",
        *,
        inline: bool = False,
        callback_url: str | None = None,
    ) -> None:
        """Create request ``rid`` with input ``data`` and announce its first hop.

        The definition is built and validated first: a bad one changes nothing. With
        ``inline`` the first hop runs here, within this call, instead of through the
        transport (a sync flow answers in its caller's request). ``callback_url`` is
        kept on the request record for the observers of its end.

        Raises:
            FlowDefinitionError: ``define`` built an invalid flow.
            DuplicateRequestError: ``rid`` is in use.
        """
        with tracing.request_span(self.flow_name, rid) as traceparent:
            await self._submit(rid, data, query, inline, callback_url, traceparent)

    async def _submit(
        self,
        rid: str,
        data: bytes,
        query: str,
        inline: bool,
        callback_url: str | None,
        traceparent: str | None,
    ) -> None:
        live = self.live.fresh(rid, query)
        if traceparent:
            live.base = replace(live.base, trace=traceparent)
        record = RequestRecord.new(self.flow_name, query, self.owner, callback_url)
        raw = record.encode()
        input_ref = await self.values.write(keys.request_input(rid, new_token()), data)
        (start,) = live.planner.start(live.base, input_ref)
        assert isinstance(start, Send)
        entry = HistoryEntry.now("request", "", "started", size=len(data))
        # All or nothing: a request exists with its first hop pending, or not at all (a
        # submission interrupted halfway would leave a request nothing moves on).
        writes: list[WriteOp] = [
            Put(keys.request(rid), raw),
            *self.requests.created_writes(rid, record),
            Append(keys.history(rid), entry.encode()),
            self.hops.pending_op(start.hop),
        ]
        try:
            created = await self.state.commit(writes, require={keys.request(rid): None})
        except StoreError:
            if not await self._landed(keys.request(rid), raw):
                raise
            created = True
        if not created:
            self.live.forget(rid)
            await self.values.discard(input_ref)  # this submission's, not the request's
            raise DuplicateRequestError(f"request id {rid!r} is already in use", rid)
        self.observers.event(rid, entry)
        await (self.handle if inline else self.transport.send)(start.hop)

    # -- running hops -------------------------------------------------------------
    async def handle(self, hop: Hop) -> None:
        """Run one hop (the transport's handler)."""
        token = tracing.set_request(hop.request_id)
        try:
            if tracing.enabled():
                with tracing.node_span(hop):
                    await self._handle(hop)
            else:
                await self._handle(hop)
        finally:
            tracing.reset_request(token)

    async def _handle(self, hop: Hop) -> None:
        rid = hop.request_id
        # One round trip for the request and the step's record (a node's, or a dynamic
        # node's expansion): both are needed for nearly every hop.
        step_keys = (keys.node_record(rid, hop.path), keys.expand_record(rid, hop.path))
        raw, *records = await self.state.get_many([keys.request(rid), *step_keys])
        seen = dict(zip(step_keys, records, strict=True))
        if raw is None:
            log.warning("hop %s for an unknown or expired request: ignored", hop.id)
            return
        record = RequestRecord.decode(raw)
        if record.status in FINISHED:
            log.info("hop %s for a %s request: ignored", hop.id, record.status)
            return
        if record.status != RUNNING and not await self._hold(hop):
            return
        live = self.live.get(hop.request_id, record.query)
        if hop.trace and live.base.trace != hop.trace:
            # Every hop of a request carries its request span: so will the hops sent here.
            live.base = replace(live.base, trace=hop.trace)
        try:
            node = live.spec.resolve(hop.path)
        except KeyError:
            log.error("hop %s names no node of flow %s: dropped", hop.id, self.flow_name)
            await self.hops.clear_pending(hop)
            return
        if record.status != RUNNING:
            seen = {}  # held, then released meanwhile: read the records afresh
        if hop.kind == "collect":
            await self._run_collect(live, hop, node, seen)
        elif node.is_dynamic:
            await self._run_expand(live, hop, node, seen)
        else:
            await self._run_task(live, hop, node, seen)

    async def _hold(self, hop: Hop) -> bool:
        """Keep ``hop`` back while its request is paused or failed.

        Returns ``True`` when the request turned running meanwhile and the hop should run.
        """
        await self.hops.hold(hop)
        await self.requests.record(hop.request_id, HistoryEntry.now("node", hop.path, "held"))
        record = await self.requests.get(hop.request_id)
        # A resume may have swept the held hops just before this one was added.
        return record is not None and record.status == RUNNING and await self.hops.unhold(hop)

    # -- claiming -----------------------------------------------------------------
    async def _claim(self, key: str, hop: Hop, seen: Seen) -> ClaimResult:
        """Claim the record at ``key`` for this execution of ``hop``; ``seen`` may hold
        the record as read when the hop arrived.

        A step left running by a process that is gone (its lease ran out, or its pid
        proves it dead) is taken over as the next attempt; one released by a process
        that gave it up, too, without counting as a death.
        """
        rid = hop.request_id
        raw = seen[key] if key in seen else await self.state.get(key)
        previous = StepRecord.decode(raw) if raw is not None else None
        deaths = 0
        if previous is not None:
            if previous.done:
                return _Done(previous)
            deaths = previous.deaths
            if previous.running and not previous.released:
                if await self.claims.alive(rid, key, previous):
                    log.info("hop %s is running elsewhere: duplicate ignored", hop.id)
                    return _Busy()
                deaths += 1
                limit = self.settings.max_claims
                if limit and deaths >= limit:
                    assert raw is not None
                    return _Abandoned(raw, deaths)
        if _failpoints.FOLDER:
            await _failpoints.reach("claim", hop.path, hop.json)
        attempt = (previous.attempt if previous else 0) + 1
        # Built right before it is written: its first lease counts from now.
        running = self.claims.record(attempt, deaths)
        claim = Claim(rid, key, running, running.encode(), hop)
        self.claims.hold(claim)
        # The start is on record in the claim (and later in the end's history entry):
        # a history entry of its own would be one more write per node.
        try:
            try:
                won = await self.state.compare_and_set(key, raw, claim.raw)
            except StoreError:
                if not await self._landed(key, claim.raw):
                    raise
                won = True
        except BaseException:
            self.claims.drop(claim)
            raise
        if not won:
            self.claims.drop(claim)
            return _Busy()
        if self.observers.hear_events:
            self.observers.event(rid, HistoryEntry.now("node", hop.path, "started",
                                                       attempt=attempt))
        return claim

    async def _landed(self, key: str, written: bytes) -> bool:
        """After a store error on a conditional write of ``written`` at ``key``: whether
        it landed after all (the error may have lost only the reply). A write is never
        repeated blindly; its own unique value found in place counts as done."""
        try:
            return await self.state.get(key) == written
        except StoreError:
            return False

    async def step_alive(self, rid: str, path: str, record: StepRecord) -> bool:
        """Whether the node at ``path``, whose record says it is running, still is."""
        return await self.claims.alive(rid, keys.node_record(rid, path), record)

    # -- one step -------------------------------------------------------------------
    async def _step(
        self, live: LiveRequest, hop: Hop, key: str, event: str, work: Work, plan: Plan,
        seen: Seen,
    ) -> None:  # fmt: skip
        """Claim the record at ``key``, run ``work`` (which returns the done record) unless
        the step already finished, then settle: what every kind of hop shares."""
        claim = await self._claim(key, hop, seen)
        if isinstance(claim, _Busy):
            return
        if isinstance(claim, _Abandoned):
            error = NodeError(
                f"the step was started {claim.deaths} times and never finished "
                "(the process running it died each time)",
                node=hop.path,
                attempt=claim.deaths,
            )
            await self.lifecycle.fail(live, hop, key, claim.raw, error)
            return
        if isinstance(claim, _Done):
            await self._settle(live, hop, key, None, claim.record, event, plan)
            return
        finished = False
        try:
            done = await self._work(live, hop, key, claim, work)
            if done is not None:
                await self._settle(live, hop, key, claim, done, event, plan)
            finished = True
        finally:
            if finished:
                self.claims.drop(claim)
            else:
                # Given up (a store that stayed away, a cancellation, a shutdown): the
                # next delivery may take the step at once.
                await self.claims.give_up(claim)

    async def _work(
        self, live: LiveRequest, hop: Hop, key: str, claim: Claim, work: Work
    ) -> StepRecord | None:
        """Run the claimed step; its done record, or ``None`` when it failed (recorded)."""
        attempt = claim.record.attempt
        tracing.annotate(attempt=attempt)
        token = current_node.set(hop.path)
        try:
            if _failpoints.FOLDER:
                await _failpoints.reach("call", hop.path, hop.json)
            return await work(claim.record)
        except NodeError as exc:
            exc.attempt = max(exc.attempt, attempt)
            tracing.mark_failed(exc)
            await self.lifecycle.fail(live, hop, key, claim.raw, exc)
            return None
        finally:
            current_node.reset(token)

    def _done(self, claimed: StepRecord, **details: Any) -> StepRecord:
        """The done record of the step claimed as ``claimed``."""
        return StepRecord(
            "done", attempt=claimed.attempt, started=claimed.started, finished=time.time(),
            **details,
        )  # fmt: skip

    async def _settle(
        self, live: LiveRequest, hop: Hop, key: str, claim: Claim | None, done: StepRecord,
        event: str, plan: Plan,
    ) -> None:  # fmt: skip
        """Record the step as done and announce what follows, in as few writes as possible.

        When everything that follows is plain hops (a chain step, a fan-out), the done
        record, the history entry, the successors' pending records and the removal of
        this hop's pending record are one atomic commit. Joins need the done record
        durable first (their members name its refs), so then it is written on its own.
        Without ``claim`` the step had finished before: only announce again.
        """
        rid = hop.request_id
        if claim is not None:
            entry = HistoryEntry.of_step(hop.path, event, done)
            actions = await plan(done)
            own = Delete(keys.pending(rid, f"{hop.kind}:{hop.path}"))
            done_raw = done.encode()
            writes: list[WriteOp] = [Put(key, done_raw), Append(keys.history(rid), entry.encode())]
            if _failpoints.FOLDER:
                await _failpoints.reach("settle", hop.path, hop.json)
            if all(isinstance(a, Send) for a in actions):
                sends = [a.hop for a in actions if isinstance(a, Send)]
                writes += [self.hops.pending_op(s) for s in sends]
                if await self._record_done([*writes, own], claim, done_raw):
                    self.observers.event(rid, entry)
                    if _failpoints.FOLDER:
                        await _failpoints.reach("announce", hop.path, hop.json)
                    for sent in sends:
                        await self.transport.send(sent)
                    return
            elif await self._record_done(writes, claim, done_raw):
                self.observers.event(rid, entry)
                if _failpoints.FOLDER:
                    await _failpoints.reach("announce", hop.path, hop.json)
                await self._carry_out(live, actions)
                await self.state.commit([own])
                return
            # Another execution took the step over (this one was taken for dead) and
            # may have finished it: go on from its record, or leave the step to it.
            raw = await self.state.get(key)
            if raw is None or not StepRecord.decode(raw).done:
                log.warning("hop %s lost its claim to another process, which runs it", hop.id)
                return
            done = StepRecord.decode(raw)
        await self._carry_out(live, await plan(done))
        await self.hops.clear_pending(hop)

    async def _record_done(self, writes: list[WriteOp], claim: Claim, done_raw: bytes) -> bool:
        """Commit the writes that record ``claim``'s step as done; whether they landed
        (not: the record is no longer this claim).

        The function has run and its output is stored: rather than give the step up
        (and run the function again elsewhere), a store that fails is tried again for
        ``settings.store_patience`` seconds. The claim holds meanwhile: the transport
        keeps the hop as running, and the lease is renewed once the store is back.
        """
        deadline = time.monotonic() + self.settings.store_patience
        delay = 0.05
        while True:
            try:
                return await self.state.commit(writes, require={claim.key: claim.raw})
            except StoreError as exc:
                if await self._landed(claim.key, done_raw):
                    return True
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("could not record %s as done (%s); trying again", claim.key, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- the three kinds of step ----------------------------------------------------------
    async def _run_task(self, live: LiveRequest, hop: Hop, node: NodeSpec, seen: Seen) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: StepRecord) -> StepRecord:
            data_in, single_ref = await self._input(hop, node)
            output, calls = await run_operations(
                node.operations,
                data_in,
                node=path,
                request_id=rid,
                caller=self.caller,
                default_timeout=self.settings.default_timeout,
                observe=lambda event: self._observe_call(rid, event),
            )
            token = new_token()
            if not node.operations and single_ref is not None:
                ref = single_ref  # a pass-through node stores nothing new
            else:
                ref = await self.values.write(keys.node_output(rid, path, token), output)
            forwarded = await self._forward(rid, path, node, output, token)
            return self._done(claimed, ref=ref, fwd=forwarded, size_in=len(data_in),
                              size_out=len(output), calls=calls)

        await self._step(live, hop, keys.node_record(rid, path), "finished", work,
                         self._after(live, path, node), seen)

    def _after(self, live: LiveRequest, path: str, node: NodeSpec) -> Plan:
        async def plan(done: StepRecord) -> list[Action]:
            return live.planner.after_node(live.base, path, node, done.ref or "", done.fwd)

        return plan

    async def _input(self, hop: Hop, node: NodeSpec) -> tuple[bytes, str | None]:
        """The node's input and, when it is one stored value, that value's ref."""
        if not hop.inputs:
            return b"", None
        values = {name: await self.values.read(ref, hop.path) for name, ref in hop.inputs}
        if node.aggregator is not None and node.kind == "task":
            return await run_user(node.aggregator, values, node=hop.path, what="aggregator"), None
        ((name, ref),) = hop.inputs
        return values[name], ref

    async def _forward(
        self, rid: str, path: str, node: NodeSpec, output: bytes, token: str
    ) -> dict[str, str]:
        forwarded: dict[str, str] = {}
        for edge in node.children:
            if edge.forwarder is None:
                continue
            data = await run_user(
                edge.forwarder, output, node=path, what=f"forwarder of edge to {edge.target.id!r}"
            )
            ref = keys.node_output(rid, path, token, edge.target.id)
            forwarded[edge.target.id] = await self.values.write(ref, data)
        return forwarded

    async def _run_expand(self, live: LiveRequest, hop: Hop, node: NodeSpec, seen: Seen) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: StepRecord) -> StepRecord:
            data_in, input_ref = await self._input(hop, node)
            chosen = await self._choose(rid, path, node, data_in, input_ref)
            if len(chosen) <= CHUNK:
                return self._done(claimed, ref=input_ref or "", chosen=tuple(chosen),
                                  branches=len(chosen), size_in=len(data_in))
            # Written before the record that names them, under this attempt's token: a
            # chunk nobody names is deleted with the request.
            token = new_token()
            pages = [chosen[i : i + CHUNK] for i in range(0, len(chosen), CHUNK)]
            await self.state.commit([
                Put(keys.branch_chunk(rid, path, token, n), orjson.dumps(page))
                for n, page in enumerate(pages)
            ])  # fmt: skip
            return self._done(claimed, ref=input_ref or "", chunks=(token, len(pages)),
                              branches=len(chosen), size_in=len(data_in))

        async def plan(record: StepRecord) -> list[Action]:
            branches = [(k, r or None) for k, r in await self._chosen(rid, path, record)]
            return live.planner.expand(live.base, path, branches)

        await self._step(live, hop, keys.expand_record(rid, path), "expanded", work, plan, seen)

    async def _choose(
        self, rid: str, path: str, node: NodeSpec, data: bytes, input_ref: str | None
    ) -> list[tuple[str, str]]:
        if node.kind == "conditional":
            assert node.condition is not None
            picked = await _user(node.condition, data, path, "condition")
            if isinstance(picked, str) or not isinstance(picked, Iterable):
                raise OperationError(
                    f"condition must return a list of keys, got {type(picked).__name__}", node=path
                )
            picked = list(picked)
            unknown = [k for k in picked if k not in node.branches]
            if unknown:
                raise OperationError(
                    f"condition returned unknown key(s) {unknown}; declared: {list(node.branches)}",
                    node=path,
                )
            return [(k, input_ref or "") for k in node.branches if k in picked]
        assert node.foreach is not None
        items = await _user(node.foreach, data, path, "foreach")
        if not isinstance(items, dict):
            raise OperationError(
                f"foreach must return a dict of key -> bytes, got {type(items).__name__}", node=path
            )
        token = new_token()
        chosen: list[tuple[str, str]] = []
        for index, (item_key, value) in enumerate(items.items()):
            if not isinstance(item_key, str) or not item_key:
                raise OperationError(f"foreach returned an invalid key {item_key!r}", node=path)
            if isinstance(value, str):
                value = value.encode()
            if not isinstance(value, bytes | bytearray):
                raise OperationError(
                    f"foreach value for {item_key!r} must be bytes, got {type(value).__name__}",
                    node=path,
                )
            ref = keys.branch_input(rid, path, token, index)
            chosen.append((item_key, await self.values.write(ref, bytes(value))))
        return chosen

    async def _run_collect(self, live: LiveRequest, hop: Hop, node: NodeSpec, seen: Seen) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: StepRecord) -> StepRecord:
            expansion = StepRecord.decode(await self._must(keys.expand_record(rid, path)))
            members = await self.state.set_members(keys.branch_set(rid, path))
            finished = dict(split_member(m) for m in members)
            chosen = await self._chosen(rid, path, expansion)
            results = {k: await self.values.read(finished[k], path) for k, _ in chosen}
            output = (
                await run_user(node.aggregator, results, node=path, what="aggregator")
                if node.aggregator is not None
                else b""
            )
            token = new_token()
            ref = await self.values.write(keys.node_output(rid, path, token), output)
            forwarded = await self._forward(rid, path, node, output, token)
            return self._done(claimed, ref=ref, fwd=forwarded, size_out=len(output),
                              branches=len(results))

        await self._step(live, hop, keys.node_record(rid, path), "finished", work,
                         self._after(live, path, node), seen)

    async def _chosen(
        self, rid: str, path: str, expansion: StepRecord
    ) -> list[tuple[str, str]]:
        """The branches an expansion chose: in its record, or in its chunks."""
        if expansion.chunks is None:
            return list(expansion.chosen)
        token, count = expansion.chunks
        pages = await self.state.get_many(
            [keys.branch_chunk(rid, path, token, n) for n in range(count)]
        )
        chosen: list[tuple[str, str]] = []
        for page in pages:
            if page is None:
                raise StoreError(f"a chunk of the branches of {path!r} is missing")
            chosen += [(key, ref) for key, ref in orjson.loads(page)]
        return chosen

    async def _must(self, key: str) -> bytes:
        raw = await self.state.get(key)
        if raw is None:
            raise StoreError(f"state record {key!r} is missing")
        return raw

    # -- carrying out the planner's actions ----------------------------------------
    async def _carry_out(
        self,
        live: LiveRequest,
        actions: list[Action],
        send: Callable[[Hop], Awaitable[None]] | None = None,
    ) -> None:
        sends: list[Hop] = []
        for action in actions:
            if isinstance(action, Send):
                sends.append(action.hop)
            elif isinstance(action, Join):
                count = await self.state.add_to_set(action.key, action.member)
                expected = action.expected
                if expected is None:
                    assert isinstance(action.then, FireCollect)
                    expected = await self._branch_count(live, action.then.path)
                if count == expected:
                    await self._carry_out(live, await self._fire(live, action.then))
            elif isinstance(action, DagDone):
                await self._carry_out(live, await self._fire(live, action))
            elif isinstance(action, SubdagDone):
                await self._subdag_done(live, action)
            elif isinstance(action, Finish):
                await self.lifecycle.finish(live, action.ref)
        for hop in sends:
            await self.hops.mark_pending(hop)
        for hop in sends:
            await (send or self.transport.send)(hop)

    async def _branch_count(self, live: LiveRequest, path: str) -> int:
        count = live.branch_counts.get(path)
        if count is None:
            rid = live.base.request_id
            expansion = StepRecord.decode(await self._must(keys.expand_record(rid, path)))
            count = live.branch_counts[path] = expansion.branch_count or 0
        return count

    async def _fire(
        self, live: LiveRequest, then: FireNode | FireCollect | DagDone
    ) -> list[Action]:
        rid, planner = live.base.request_id, live.planner
        if isinstance(then, FireNode):
            members = await self.state.set_members(keys.join_set(rid, then.path))
            return planner.fire_node(live.base, then.path, members)
        if isinstance(then, FireCollect):
            collect = Hop(
                rid,
                self.flow_name,
                then.path,
                "collect",
                query=live.base.query,
                sent_at=time.time(),
                trace=live.base.trace,
            )
            return [Send(collect)]
        ref = then.ref
        if ref is None:
            output_key = keys.node_record(rid, planner.output_path(then.prefix))
            ref = StepRecord.decode(await self._must(output_key)).ref or ""
        return planner.after_dag(live.base, then.prefix, ref)

    async def _subdag_done(self, live: LiveRequest, action: SubdagDone) -> None:
        rid, path = live.base.request_id, action.path
        node = live.spec.resolve(path)
        key = keys.node_record(rid, path)
        raw = await self.state.get(key)
        if raw is not None:
            done = StepRecord.decode(raw)
        else:
            forwarded: dict[str, str] = {}
            if any(e.forwarder for e in node.children):
                output = await self.values.read(action.ref, path)
                try:
                    forwarded = await self._forward(rid, path, node, output, new_token())
                except NodeError as exc:
                    await self.lifecycle.fail(live, None, key, None, exc)
                    return
            done = StepRecord("done", finished=time.time(), ref=action.ref, fwd=forwarded)
            if await self.state.compare_and_set(key, None, done.encode()):
                await self.requests.record(rid, HistoryEntry.of_step(path, "finished", done))
            else:
                done = StepRecord.decode(await self._must(key))
        await self._carry_out(
            live, live.planner.after_node(live.base, path, node, done.ref or "", done.fwd)
        )

    # -- control ------------------------------------------------------------------
    async def release_held(self, rid: str) -> int:
        """Send every held hop once (after resume or redrive); returns how many."""
        sent = 0
        for hop in await self.hops.held(rid):
            if await self.hops.unhold(hop):
                await self.transport.send(hop)
                sent += 1
        return sent

    async def resend_pending(self, rid: str) -> int:
        """Send every pending hop again (recovery after a crash); returns how many."""
        hops = await self.hops.pending(rid)
        for hop in hops:
            await self.transport.send(hop)
        return len(hops)

    async def undeliverable(self, hop: Hop, error: Exception) -> None:
        """A hop kept failing outside user code (a store that went away): fail its request
        with that cause; if even that cannot be recorded, waiters get the store error."""
        rid = hop.request_id
        key = keys.node_record(rid, hop.path)
        try:
            # The record as the last attempt left it (running, of a worker that died).
            claimed = await self.state.get(key)
            if claimed is not None and StepRecord.decode(claimed).done:
                # The step itself finished; only what came after it (an ack, a send) kept
                # failing. Running the hop again re-announces from the record and runs
                # no user code, so it is no reason to fail the request.
                await self.handle(hop)
                return
            attempt = StepRecord.decode(claimed).attempt if claimed is not None else 1
            failure = NodeError(
                f"the engine could not run this node: {error}", node=hop.path, attempt=attempt
            )
            await self.lifecycle.fail(self.live.get(rid, hop.query), hop, key, claimed, failure)
        except FaasFlowError as exc:
            self.requests.resolve(rid, exc)
            raise


async def _user(fn: Callable[[bytes], Any], data: bytes, path: str, what: str) -> Any:
    try:
        return await call_user(fn, data)
    except Exception as exc:
        raise OperationError(f"{what} failed: {type(exc).__name__}: {exc}", node=path) from exc
