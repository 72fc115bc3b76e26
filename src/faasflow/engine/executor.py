"""The async half of the engine: runs hops and carries out the planner's actions.

Crash safety comes from the order of writes, not from transactions spanning stores:

1. a node's output (and its edges' forwarded data) is written to the data store;
2. its record flips from ``running`` to ``done`` (compare-and-set), naming those refs;
3. its successors are announced: each hop is added to the request's *pending* set
   before it is sent, and joins record the parent in a set;
4. only then is the finished hop removed from *pending* (and acknowledged).

A crash between any two steps leaves the hop pending, so it runs again; finding its
record ``done``, it only re-announces from the recorded refs, and every announcement is
idempotent (set members, records claimed by compare-and-set).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faasflow.callables import call_user
from faasflow.dsl.spec import FlowSpec, NodeSpec
from faasflow.engine import keys
from faasflow.engine.context import Context, current_node
from faasflow.engine.definition import Define, build_flow
from faasflow.engine.hopbook import HopBook
from faasflow.engine.hops import Hop
from faasflow.engine.operations import Caller, run_operations, run_user
from faasflow.engine.planner import (
    Action,
    DagDone,
    Finish,
    FireCollect,
    FireNode,
    Join,
    Planner,
    Send,
    SubdagDone,
    split_member,
)
from faasflow.engine.records import (
    FAILED,
    FINISHED,
    PAUSED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    dumps,
    loads,
    new_token,
    owner_alive,
    process_owner,
    request_record,
)
from faasflow.errors import (
    DuplicateRequestError,
    FaasFlowError,
    NodeError,
    OperationError,
    RequestFailedError,
    RequestStoppedError,
    StoreError,
)
from faasflow.stores.base import Append, DataStore, Delete, Put, StateStore, WriteOp
from faasflow.transports.base import Transport

log = logging.getLogger("faasflow.engine")


_LIVE_CACHE = 10_000


@dataclass
class Settings:
    """Engine knobs, all with defaults that suit an embedded run."""

    default_timeout: float = 30.0
    """Seconds a function call may take when its operation sets no timeout."""
    result_ttl: float = 7 * 24 * 3600.0
    """How long a finished request's record, history and result are kept."""


@dataclass(frozen=True)
class RequestEnd:
    """What end listeners get: how a request ended.

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
    record: dict[str, Any]
    result: bytes | None = None
    error: RequestFailedError | None = None


@dataclass
class _Live:
    """What this process knows of one request it is working on."""

    spec: FlowSpec
    planner: Planner
    context: Context
    base: Hop
    branch_counts: dict[str, int] = field(default_factory=dict)
    """Dynamic node path → how many branches it started (read once, not per branch)."""


class Executor:
    """Runs the requests of one flow through the three ports."""

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
        self.hops = HopBook(state)
        self._inflight: set[str] = set()
        """Record keys of the steps this process is running now."""
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.end_listeners: list[Callable[[RequestEnd], Awaitable[None]]] = []
        """Awaited once per request end, in the process that recorded the end."""
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with every history event, plus ``started`` events that are not stored."""

    # -- building a request's flow ---------------------------------------------------
    def build(self, context: Context) -> FlowSpec:
        """Call ``define`` for ``context`` and validate what it built."""
        return build_flow(self.define, context)

    def _context(self, rid: str, query: str) -> Context:
        return Context(
            request_id=rid,
            flow_name=self.flow_name,
            query_string=query,
            data_store=self.data,
            loop=self._loop or asyncio.get_running_loop(),
        )

    def live(self, rid: str, query: str) -> _Live:
        """This process's view of request ``rid`` (``define`` runs once per request)."""
        found = self._live.get(rid)
        if found is not None:
            self._live.move_to_end(rid)
            return found
        context = self._context(rid, query)
        spec = self.build(context)
        found = _Live(spec, Planner(spec), context, Hop(rid, self.flow_name, "", query=query))
        self._live[rid] = found
        if len(self._live) > _LIVE_CACHE:
            self._live.popitem(last=False)
        return found

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
        kept on the request record for the end listeners.
        """
        self._loop = asyncio.get_running_loop()
        self._live.pop(rid, None)
        live = self.live(rid, query)
        record = request_record(self.flow_name, query, self.owner)
        if callback_url:
            record["callback_url"] = callback_url
        if not await self.state.compare_and_set(keys.request(rid), None, dumps(record)):
            self._live.pop(rid, None)
            raise DuplicateRequestError(f"request id {rid!r} is already in use", rid)
        input_ref = keys.request_input(rid)
        await self.data.put(input_ref, data)
        await self.state.set(keys.flow_index(self.flow_name, rid), str(record["created"]).encode())
        await self.state.set(keys.live_index(self.flow_name, rid), b"")
        await self._history(rid, "request", "", "started", size=len(data))
        await self._carry_out(
            live, live.planner.start(live.base, input_ref), send=self.handle if inline else None
        )

    # -- running hops -------------------------------------------------------------
    async def handle(self, hop: Hop) -> None:
        """Run one hop (the transport's handler)."""
        self._loop = asyncio.get_running_loop()
        raw = await self.state.get(keys.request(hop.request_id))
        if raw is None:
            log.warning("hop %s for an unknown or expired request: ignored", hop.id)
            return
        record = loads(raw)
        status = record["status"]
        if status in FINISHED:
            log.info("hop %s for a %s request: ignored", hop.id, status)
            return
        if status != RUNNING and not await self._hold(hop):
            return
        live = self.live(hop.request_id, record.get("query", ""))
        try:
            node = live.spec.resolve(hop.path)
        except KeyError:
            log.error("hop %s names no node of flow %s: dropped", hop.id, self.flow_name)
            await self.hops.clear_pending(hop)
            return
        try:
            if hop.kind == "collect":
                await self._run_collect(live, hop, node)
            elif node.is_dynamic:
                await self._run_expand(live, hop, node)
            else:
                await self._run_task(live, hop, node)
        finally:
            # Whatever happened, this process no longer runs the step: a redelivery of
            # the hop may claim it again.
            self._inflight.discard(keys.node_record(hop.request_id, hop.path))
            self._inflight.discard(keys.expand_record(hop.request_id, hop.path))

    async def _hold(self, hop: Hop) -> bool:
        """Keep ``hop`` back while its request is paused or failed.

        Returns ``True`` when the request turned running meanwhile and the hop should run.
        """
        await self.hops.hold(hop)
        raw = await self.state.get(keys.request(hop.request_id))
        # A resume may have swept the held hops just before this one was added.
        return raw is not None and loads(raw)["status"] == RUNNING and await self.hops.unhold(hop)

    async def _claim(self, key: str, hop: Hop) -> tuple[dict[str, Any] | None, bytes | None]:
        """Claim the record at ``key`` for this execution of ``hop``.

        Returns ``(done_record, None)`` when the step already finished,
        ``(None, claimed_raw)`` when this process now runs it, ``(None, None)`` when
        another live process runs it.
        """
        raw = await self.state.get(key)
        previous = loads(raw) if raw is not None else None
        if previous is not None:
            if previous["state"] == "done":
                return previous, None
            if previous["state"] == "running" and self._runs(previous["owner"], key):
                log.info("hop %s is running elsewhere: duplicate ignored", hop.id)
                return None, None
        claimed = dumps(
            {
                "state": "running",
                "attempt": (previous or {}).get("attempt", 0) + 1,
                "started": time.time(),
                "owner": self.owner,
            }
        )
        if not await self.state.compare_and_set(key, raw, claimed):
            return None, None
        self._inflight.add(key)
        return None, claimed

    def _runs(self, owner: str, key: str) -> bool:
        """Whether the step at ``key``, claimed by ``owner``, is still being run."""
        if owner == self.owner:
            return key in self._inflight
        return owner_alive(owner)

    async def _step(
        self,
        live: _Live,
        hop: Hop,
        key: str,
        event: str,
        work: Callable[[bytes], Awaitable[dict[str, Any]]],
        plan: Callable[[dict[str, Any]], list[Action]],
    ) -> None:
        """Claim the record at ``key``, run ``work`` (which returns the done record) unless
        the step already finished, then settle: what every kind of hop shares."""
        done, claimed = await self._claim(key, hop)
        if done is None and claimed is None:
            return
        if done is None:
            assert claimed is not None
            attempt = loads(claimed)["attempt"]
            self._emit(hop.request_id, hop.path, "started", attempt=attempt)
            token = current_node.set(hop.path)
            try:
                done = await work(claimed)
            except NodeError as exc:
                exc.attempt = max(exc.attempt, attempt)
                await self._fail(live, hop, key, claimed, exc)
                return
            finally:
                current_node.reset(token)
        await self._settle(live, hop, key, claimed, done, event, plan)

    async def _run_task(self, live: _Live, hop: Hop, node: NodeSpec) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: bytes) -> dict[str, Any]:
            data_in, single_ref = await self._input(live, hop, node)
            output, calls = await run_operations(
                node.operations,
                data_in,
                node=path,
                request_id=rid,
                caller=self.caller,
                default_timeout=self.settings.default_timeout,
            )
            token = new_token()
            if not node.operations and single_ref is not None:
                ref = single_ref  # a pass-through node stores nothing new
            else:
                ref = keys.node_output(rid, path, token)
                await self.data.put(ref, output)
            forwarded = await self._forward(rid, path, node, output, token)
            return self._done_record(
                claimed,
                ref=ref,
                forwarded=forwarded,
                size_in=len(data_in),
                size_out=len(output),
                calls=calls,
            )

        await self._step(
            live, hop, keys.node_record(rid, path), "finished", work, self._after(live, path, node)
        )

    def _after(
        self, live: _Live, path: str, node: NodeSpec
    ) -> Callable[[dict[str, Any]], list[Action]]:
        return lambda done: live.planner.after_node(live.base, path, node, done["ref"], done["fwd"])

    async def _input(self, live: _Live, hop: Hop, node: NodeSpec) -> tuple[bytes, str | None]:
        """The node's input and, when it is one stored value, that value's ref."""
        if not hop.inputs:
            return b"", None
        values = {name: await self._read(ref, hop.path) for name, ref in hop.inputs}
        if node.aggregator is not None and node.kind == "task":
            return await run_user(node.aggregator, values, node=hop.path, what="aggregator"), None
        ((name, ref),) = hop.inputs
        return values[name], ref

    async def _read(self, ref: str, path: str) -> bytes:
        data = await self.data.get(ref)
        if data is None:
            raise OperationError(f"input data {ref!r} is missing (expired or deleted)", node=path)
        return data

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
            await self.data.put(ref, data)
            forwarded[edge.target.id] = ref
        return forwarded

    def _done_record(
        self, claimed: bytes | None, *, ref: str, forwarded: dict[str, str], **details: Any
    ) -> dict[str, Any]:
        started = loads(claimed) if claimed else {}
        return {
            "state": "done",
            "attempt": started.get("attempt", 1),
            "started": started.get("started", time.time()),
            "finished": time.time(),
            "ref": ref,
            "fwd": forwarded,
            **details,
        }

    async def _settle(
        self,
        live: _Live,
        hop: Hop,
        key: str,
        claimed: bytes | None,
        done: dict[str, Any],
        event: str,
        plan: Callable[[dict[str, Any]], list[Action]],
    ) -> None:
        """Record the step as done and announce what follows, in as few writes as possible.

        When everything that follows is plain hops (a chain step, a fan-out), the done
        record, the history entry, the successors' pending records and the removal of
        this hop's pending record are one atomic commit. Joins need the done record
        durable first (their members name its refs), so then it is written on its own.
        """
        rid = hop.request_id
        if claimed is not None:
            entry = self._history_entry("node", hop.path, event, record=done)
            actions = plan(done)
            own = Delete(keys.pending(rid, f"{hop.kind}:{hop.path}"))
            if all(isinstance(a, Send) for a in actions):
                sends = [a.hop for a in actions if isinstance(a, Send)]
                writes: list[WriteOp] = [
                    Put(key, dumps(done)),
                    Append(keys.history(rid), dumps(entry)),
                ]
                writes += [self.hops.pending_op(s) for s in sends]
                if await self.state.commit([*writes, own], require={key: claimed}):
                    self._notify(rid, entry)
                    for sent in sends:
                        await self.transport.send(sent)
                    return
            elif await self.state.commit(
                [Put(key, dumps(done)), Append(keys.history(rid), dumps(entry))],
                require={key: claimed},
            ):
                self._notify(rid, entry)
                await self._carry_out(live, actions)
                await self.state.commit([own])
                return
            # Another execution of this step finished first: go on from its record.
            raw = await self.state.get(key)
            if raw is None or loads(raw)["state"] != "done":
                raise StoreError(f"record {key!r} changed under a running node")
            done = loads(raw)
        await self._carry_out(live, plan(done))
        await self.hops.clear_pending(hop)

    async def _run_expand(self, live: _Live, hop: Hop, node: NodeSpec) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: bytes) -> dict[str, Any]:
            data_in, input_ref = await self._input(live, hop, node)
            chosen = await self._choose(rid, path, node, data_in, input_ref)
            return self._done_record(
                claimed,
                ref=input_ref or "",
                forwarded={},
                branches=[[k, r] for k, r in chosen],
                size_in=len(data_in),
            )

        def plan(record: dict[str, Any]) -> list[Action]:
            branches = [(k, r or None) for k, r in record["branches"]]
            return live.planner.expand(live.base, path, branches)

        await self._step(live, hop, keys.expand_record(rid, path), "expanded", work, plan)

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
            await self.data.put(ref, bytes(value))
            chosen.append((item_key, ref))
        return chosen

    async def _run_collect(self, live: _Live, hop: Hop, node: NodeSpec) -> None:
        rid, path = hop.request_id, hop.path

        async def work(claimed: bytes) -> dict[str, Any]:
            expansion = loads(await self._must(keys.expand_record(rid, path)))
            members = await self.state.set_members(keys.branch_set(rid, path))
            finished = dict(split_member(m) for m in members)
            results = {k: await self._read(finished[k], path) for k, _ in expansion["branches"]}
            output = (
                await run_user(node.aggregator, results, node=path, what="aggregator")
                if node.aggregator is not None
                else b""
            )
            token = new_token()
            ref = keys.node_output(rid, path, token)
            await self.data.put(ref, output)
            forwarded = await self._forward(rid, path, node, output, token)
            return self._done_record(
                claimed, ref=ref, forwarded=forwarded, size_out=len(output), branches=len(results)
            )

        await self._step(
            live, hop, keys.node_record(rid, path), "finished", work, self._after(live, path, node)
        )

    async def _must(self, key: str) -> bytes:
        raw = await self.state.get(key)
        if raw is None:
            raise StoreError(f"state record {key!r} is missing")
        return raw

    # -- carrying out the planner's actions ----------------------------------------
    async def _carry_out(
        self,
        live: _Live,
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
                await self._finish(live, action.ref)
        for hop in sends:
            await self.hops.mark_pending(hop)
        for hop in sends:
            await (send or self.transport.send)(hop)

    async def _branch_count(self, live: _Live, path: str) -> int:
        count = live.branch_counts.get(path)
        if count is None:
            rid = live.base.request_id
            expansion = loads(await self._must(keys.expand_record(rid, path)))
            count = live.branch_counts[path] = len(expansion["branches"])
        return count

    async def _fire(self, live: _Live, then: FireNode | FireCollect | DagDone) -> list[Action]:
        rid, planner = live.base.request_id, live.planner
        if isinstance(then, FireNode):
            members = await self.state.set_members(keys.join_set(rid, then.path))
            return planner.fire_node(live.base, then.path, members)
        if isinstance(then, FireCollect):
            collect = Hop(rid, self.flow_name, then.path, "collect", query=live.base.query,
                          sent_at=time.time(), trace=live.base.trace)
            return [Send(collect)]
        ref = then.ref
        if ref is None:
            output_key = keys.node_record(rid, planner.output_path(then.prefix))
            ref = loads(await self._must(output_key))["ref"]
        return planner.after_dag(live.base, then.prefix, ref)

    async def _subdag_done(self, live: _Live, action: SubdagDone) -> None:
        rid, path = live.base.request_id, action.path
        node = live.spec.resolve(path)
        key = keys.node_record(rid, path)
        raw = await self.state.get(key)
        if raw is not None:
            done = loads(raw)
        else:
            forwarded: dict[str, str] = {}
            if any(e.forwarder for e in node.children):
                output = await self._read(action.ref, path)
                try:
                    forwarded = await self._forward(rid, path, node, output, new_token())
                except NodeError as exc:
                    await self._fail(live, None, key, None, exc)
                    return
            done = {
                "state": "done",
                "attempt": 1,
                "finished": time.time(),
                "ref": action.ref,
                "fwd": forwarded,
            }
            if await self.state.compare_and_set(key, None, dumps(done)):
                await self._history(rid, "node", path, "finished", record=done)
            else:
                done = loads(await self._must(key))
        await self._carry_out(
            live, live.planner.after_node(live.base, path, node, done["ref"], done["fwd"])
        )

    # -- ends ---------------------------------------------------------------------
    async def _set_status(
        self, rid: str, allowed: Iterable[str], status: str, **changes: Any
    ) -> dict[str, Any] | None:
        """Move the request to ``status`` if it is in ``allowed``; the new record, or
        ``None`` when it was not (another caller won, or the state did not allow it)."""
        allowed = set(allowed)
        for _ in range(100):
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                return None
            record = loads(raw)
            if record["status"] not in allowed:
                return None
            record.update(status=status, updated=time.time(), **changes)
            if await self.state.compare_and_set(keys.request(rid), raw, dumps(record)):
                return record
        raise StoreError(f"request {rid!r}: status kept changing under compare-and-set")

    async def _finish(self, live: _Live, ref: str) -> None:
        rid = live.base.request_id
        output = await self._read(ref, "")
        ttl = self.settings.result_ttl
        await self.data.put(keys.result(rid), output, ttl=ttl)
        record = await self._set_status(rid, (RUNNING, PAUSED), SUCCEEDED, result_size=len(output))
        if record is None:
            return
        await self._history(rid, "request", "", "succeeded", size=len(output))
        live.context._state = "success"
        await self._hook(live.spec.finally_hook, "success", rid)
        await self._clean(rid, ttl)
        self._resolve(rid, output)
        await self._ended(RequestEnd(rid, self.flow_name, SUCCEEDED, record, result=output))

    async def _fail(
        self, live: _Live, hop: Hop | None, key: str, claimed: bytes | None, error: NodeError
    ) -> None:
        rid = live.base.request_id
        previous = loads(claimed) if claimed else {"attempt": 1}
        failed = {**previous, "state": "failed", "finished": time.time(), "error": str(error)}
        failed.pop("owner", None)
        await self.state.compare_and_set(key, claimed, dumps(failed))
        # The request's status first: if the store fails after it, the request is still
        # on record as failed, and redrive resends a hop left pending instead of held.
        info = {"node": error.node, "attempt": error.attempt, "cause": str(error)}
        record = await self._set_status(rid, (RUNNING, PAUSED), FAILED, error=info)
        try:
            await self._history(
                rid, "node", error.node, "failed", attempt=error.attempt, error=str(error)
            )
            if hop is not None:
                # The failed hop waits among the held ones: redrive sends it again.
                await self.hops.hold(hop)
        finally:
            if record is not None:
                await self._failed(live, record, error)

    async def _failed(self, live: _Live, record: dict[str, Any], error: NodeError) -> None:
        """The request just failed because of ``error``: hooks, waiters, end listeners."""
        rid = live.base.request_id
        exc = RequestFailedError(
            f"request {rid} failed at node {error.node!r} (attempt {error.attempt}): {error}",
            request_id=rid,
            node=error.node,
            attempt=error.attempt,
            cause=str(error),
        )
        exc.__cause__ = error
        await self._history(rid, "request", "", "failed", error=str(error))
        await self._end_hooks(live, exc)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))

    async def _end_hooks(self, live: _Live, exc: RequestFailedError) -> None:
        rid = live.base.request_id
        live.context._state = "failure"
        await self._hook(live.spec.failure_hook, exc, rid)
        await self._hook(live.spec.finally_hook, "failure", rid)

    async def _ended(self, end: RequestEnd) -> None:
        for listener in self.end_listeners:
            try:
                await listener(end)
            except Exception:
                log.exception("request %s: end listener failed", end.request_id)

    async def _hook(self, fn: Callable[[Any], Any] | None, arg: Any, rid: str) -> None:
        if fn is None:
            return
        try:
            await call_user(fn, arg)
        except Exception:
            log.exception("request %s: hook %s raised", rid, getattr(fn, "__name__", fn))

    async def _clean(self, rid: str, ttl: float) -> None:
        """Leave only the record, the history, the index entry and the result, expiring."""
        await self.state.delete_prefix(keys.request_prefix(rid))
        await self.data.delete_prefix(keys.data_prefix(rid))
        await self.state.delete(keys.live_index(self.flow_name, rid))
        for key in (keys.history(rid), keys.flow_index(self.flow_name, rid)):
            await self.state.expire(key, ttl)
        # The record outlives the result, so an expired result reads as expired, not unknown.
        await self.state.expire(keys.request(rid), 2 * ttl)
        self._live.pop(rid, None)

    # -- control ------------------------------------------------------------------
    async def stop(self, rid: str) -> bool:
        """End the request: hooks run once, intermediate state is removed."""
        record = await self._set_status(rid, (RUNNING, PAUSED, FAILED), STOPPED)
        if record is None:
            return False
        await self._history(rid, "request", "", "stopped")
        live = self.live(rid, record.get("query", ""))
        exc = RequestStoppedError(f"request {rid} was stopped", request_id=rid, cause="stopped")
        if record.get("error") is None:
            await self._end_hooks(live, exc)
        await self._clean(rid, self.settings.result_ttl)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, STOPPED, record, error=exc))
        return True

    async def abandon(self, rid: str, cause: str) -> bool:
        """Fail a running request that no process is moving forward (a lost hop)."""
        error = {"node": "", "attempt": 0, "cause": cause}
        record = await self._set_status(rid, (RUNNING,), FAILED, error=error)
        if record is None:
            return False
        exc = RequestFailedError(f"request {rid} failed: {cause}", request_id=rid, cause=cause)
        await self._history(rid, "request", "", "failed", error=cause)
        await self._end_hooks(self.live(rid, record.get("query", "")), exc)
        self._resolve(rid, exc)
        await self._ended(RequestEnd(rid, self.flow_name, FAILED, record, error=exc))
        return True

    async def retire(self, rid: str) -> None:
        """Drop the intermediate state of a failed request nobody redrove in time."""
        if await self._set_status(rid, (FAILED,), FAILED, retired=True) is not None:
            await self._clean(rid, self.settings.result_ttl)

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

    # -- waiting ------------------------------------------------------------------
    def waiter(self, rid: str) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rid, []).append(future)
        return future

    def _resolve(self, rid: str, outcome: bytes | BaseException) -> None:
        for future in self._waiters.pop(rid, []):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def undeliverable(self, hop: Hop, error: Exception) -> None:
        """A hop kept failing outside user code (a store that went away): fail its request
        with that cause; if even that cannot be recorded, waiters get the store error."""
        rid = hop.request_id
        failure = NodeError(
            f"the engine could not run this node: {error}", node=hop.path, attempt=1
        )
        try:
            await self._fail(
                self.live(rid, hop.query), hop, keys.node_record(rid, hop.path), None, failure
            )
        except FaasFlowError as exc:
            self._resolve(rid, exc)
            raise

    def _history_entry(self, kind: str, path: str, event: str, **details: Any) -> dict[str, Any]:
        record = details.pop("record", None)
        entry: dict[str, Any] = {"t": time.time(), "kind": kind, "node": path, "event": event}
        if record is not None:
            for name in ("attempt", "started", "finished", "size_in", "size_out", "calls"):
                if name in record:
                    entry[name] = record[name]
            branches = record.get("branches")
            if branches is not None:
                entry["branches"] = branches if isinstance(branches, int) else len(branches)
        entry.update(details)
        return entry

    async def _history(self, rid: str, kind: str, path: str, event: str, **details: Any) -> None:
        entry = self._history_entry(kind, path, event, **details)
        await self.state.append(keys.history(rid), dumps(entry))
        self._notify(rid, entry)

    def _notify(self, rid: str, entry: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener({"request_id": rid, **entry})

    def _emit(self, rid: str, path: str, event: str, **details: Any) -> None:
        for listener in self.listeners:
            listener(
                {
                    "request_id": rid,
                    "t": time.time(),
                    "kind": "node",
                    "node": path,
                    "event": event,
                    **details,
                }
            )

    def forget(self, rid: str) -> None:
        self._live.pop(rid, None)


async def _user(fn: Callable[[bytes], Any], data: bytes, path: str, what: str) -> Any:
    try:
        return await call_user(fn, data)
    except Exception as exc:
        raise OperationError(f"{what} failed: {type(exc).__name__}: {exc}", node=path) from exc
