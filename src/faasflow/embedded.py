"""The embedded runtime: run flows in this process, in a script, a test or a notebook.

:class:`Engine` owns the stores, the in-process transport and the function registry
for one flow; :func:`run` and :func:`arun` are the one-call versions.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from faasflow.callables import use_thread_pool
from faasflow.dsl.spec import FlowSpec
from faasflow.engine import keys
from faasflow.engine.context import Context
from faasflow.engine.definition import Define, build_flow
from faasflow.engine.executor import Executor
from faasflow.engine.lifecycle import Settings
from faasflow.engine.records import (
    FAILED,
    PAUSED,
    RUNNING,
    STATUSES,
    STOPPED,
    SUCCEEDED,
    RequestInfo,
    RequestPage,
    dumps,
    loads,
    node_table,
    with_starts,
)
from faasflow.errors import (
    ConfigurationError,
    FaasFlowError,
    RequestError,
    RequestFailedError,
    RequestStateError,
    RequestStoppedError,
    UnknownRequestError,
)
from faasflow.functions.registry import FunctionRegistry
from faasflow.resources import AsyncResource
from faasflow.stores.base import DataStore, StateStore
from faasflow.stores.memory import MemoryDataStore, MemoryStateStore
from faasflow.stores.urls import data_store_from_url, state_store_from_url
from faasflow.transports.base import Transport
from faasflow.transports.inprocess import InProcessTransport

log = logging.getLogger("faasflow.engine")

REQUEST_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$")
"""URL-safe, at most 128 characters, and not ``.`` or ``..`` (dot-segments in a path)."""


def new_request_id() -> str:
    """A 20-character, URL-safe id that sorts by creation time."""
    stamp = int(time.time() * 1000).to_bytes(6, "big")
    raw = base64.b32encode(stamp + secrets.token_bytes(6)).decode().lower().rstrip("=")
    return raw[:20]


def check_request_id(rid: str) -> str:
    """Refuse ids that are not URL-safe or too long (they become store keys and paths)."""
    if not isinstance(rid, str) or not REQUEST_ID.match(rid):
        raise RequestError(
            f"invalid request id {rid!r}: use 1-128 letters, digits, '_', '.' or '-'", None
        )
    return rid


def default_store_url() -> str:
    """``$FAASFLOW_STORE``, or a SQLite file under the user's cache directory."""
    configured = os.environ.get("FAASFLOW_STORE")
    if configured:
        return configured
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faasflow"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"FAASFLOW_STORE: no store URL is set and the default folder {cache} cannot be "
            f"created ({exc.strerror}); set FAASFLOW_STORE (or faasflow_state for the flow "
            "server), e.g. sqlite:////tmp/faasflow.db"
        ) from exc
    return f"sqlite:///{cache / 'faasflow.db'}"


class Engine(AsyncResource):
    """Runs one flow in this process.

    Args:
        define: ``define(flow, context)``, called once per request.
        flow_name: the flow's name (keys, history and logs carry it).
        functions: names used in ``apply`` mapped to local callables ``(bytes) -> bytes``.
        functions_dir: a folder of OpenFaaS python3-http handler folders.
        gateway: an OpenFaaS gateway URL for every other function name.
        state_store: a :class:`StateStore` or a store URL; SQLite by default.
        data_store: a :class:`DataStore` or a store URL; the state store's URL by default.
        transport: how hops travel; an in-process queue by default.
        concurrency: hops that may run at once (in-process transport).
        threads: worker threads for synchronous user callables.
        default_timeout: seconds a function call may take when its operation sets none.
        result_ttl: seconds a finished request's result and history are kept.
        failed_ttl: seconds a failed request keeps its intermediate state for redrive.
        resend_after: seconds without progress after which a running request with no
            live node has its pending hops sent again; ``None`` never.
        stall_after: seconds without progress after which a running request with no
            live node is failed; ``None`` never.
        sweep_interval: seconds between sweeps (see :meth:`sweep`); ``None`` never.
        lease_ttl: seconds a running step's claim lasts unless its process renews it:
            how soon a step whose process died is taken over (sooner when its pid, on
            this host, proves the process gone).
        store_patience: seconds a step whose function has run keeps trying to record
            its result while the state store fails, before giving the step up (its
            function then runs again).
        max_claims: times a step is taken over from a process that died running it
            before its request fails instead; ``None``, no limit.
    """

    def __init__(
        self,
        define: Define,
        *,
        flow_name: str = "flow",
        functions: Mapping[str, Callable[..., Any]] | None = None,
        functions_dir: str | Path | None = None,
        gateway: str | None = None,
        state_store: StateStore | str | None = None,
        data_store: DataStore | str | None = None,
        transport: Transport | None = None,
        concurrency: int = 64,
        threads: int = 32,
        default_timeout: float = 30.0,
        result_ttl: float = 7 * 24 * 3600.0,
        failed_ttl: float = 7 * 24 * 3600.0,
        resend_after: float | None = 30.0,
        stall_after: float | None = 3600.0,
        sweep_interval: float | None = 60.0,
        lease_ttl: float = 30.0,
        store_patience: float = 60.0,
        max_claims: int | None = None,
    ) -> None:
        url = None
        if state_store is None or isinstance(state_store, str):
            url = state_store or default_store_url()
            state_store = state_store_from_url(url)
        if data_store is None:
            data_store = data_store_from_url(url) if url else _memory_data_for(state_store)
        elif isinstance(data_store, str):
            data_store = data_store_from_url(data_store)
        self.flow_name = flow_name
        self.state = state_store
        self.data = data_store
        self.registry = FunctionRegistry.build(functions, functions_dir, gateway)
        self.transport = transport or InProcessTransport(concurrency=concurrency)
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="faasflow")
        self.executor = Executor(
            flow_name=flow_name,
            define=define,
            state=self.state,
            data=self.data,
            transport=self.transport,
            caller=self.registry,
            settings=Settings(
                default_timeout=default_timeout,
                result_ttl=result_ttl,
                lease_ttl=lease_ttl,
                store_patience=store_patience,
                max_claims=max_claims,
            ),
        )
        self.failed_ttl = failed_ttl
        self.stall_after = stall_after
        self.resend_after = resend_after
        self._resent: dict[str, float] = {}
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False

    async def open(self) -> None:
        """:meth:`start`, under the name ``async with`` uses."""
        await self.start()

    async def start(self) -> None:
        """Open the stores and start taking hops."""
        if self._started:
            return
        self._started = True
        try:
            await self.state.open()
            await self.data.open()
            self.executor.claims.start()
            self.transport.on_undeliverable = self.executor.undeliverable
            with use_thread_pool(self._threads):
                # Worker tasks copy this context, so their sync callables use our threads.
                await self.transport.start(self.executor.handle)
            if self.sweep_interval is not None:
                self._sweeper = asyncio.create_task(self._sweep_forever(self.sweep_interval))
        except BaseException:
            await self.close()  # release whatever did open
            raise

    async def close(self) -> None:
        """Stop taking hops and release stores, connections and threads."""
        if not self._started:
            return
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.transport.close()
        # After the transport: hops cancelled while closing release their claims.
        await self.executor.claims.stop()
        await self.registry.aclose()
        await self.state.close()
        await self.data.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- requests -------------------------------------------------------------------
    async def submit(
        self,
        data: bytes | str = b"",
        *,
        request_id: str | None = None,
        query: str = "",
        inline: bool = False,
        callback_url: str | None = None,
    ) -> str:
        """Start a request and return its id.

        Args:
            data: the input.
            request_id: choose the id (URL-safe, at most 128 characters).
            query: the request's query string, seen by ``context.query``.
            inline: run the first hop within this call (a sync flow then ends here).
            callback_url: kept on the request record for end listeners.

        Raises:
            FlowDefinitionError: ``define`` built an invalid flow; nothing was started.
            DuplicateRequestError: ``request_id`` is already in use.
        """
        await self.start()
        rid = check_request_id(request_id) if request_id else new_request_id()
        payload = data.encode() if isinstance(data, str) else bytes(data)
        with use_thread_pool(self._threads):
            await self.executor.submit(
                rid, payload, query, inline=inline, callback_url=callback_url
            )
        return rid

    def describe(self, query: str = "") -> FlowSpec:
        """The validated flow as ``define`` builds it (for export and sync detection).

        Raises:
            FlowDefinitionError: ``define`` raised or built an invalid flow.
        """
        context = Context(request_id="export", flow_name=self.flow_name, query_string=query)
        return build_flow(self.executor.define, context)

    async def wait(
        self, request_id: str, timeout: float | None = None, *, poll: float = 0.5
    ) -> bytes:
        """Wait for the request to end; its result, or the error that ended it.

        Raises:
            RequestFailedError: the request failed (``node``, ``attempt``, ``cause``).
            RequestStoppedError: the request was stopped.
            TimeoutError: it did not end within ``timeout`` seconds.
        """
        future = self.executor.waiter(request_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Another process may end the request: look at the store between waits.
            outcome = await self._ended(request_id)
            if outcome is not None:
                future.cancel()
                return outcome
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                future.cancel()
                raise TimeoutError(f"request {request_id} did not end within {timeout}s")
            step = poll if remaining is None else min(poll, remaining)
            done, _ = await asyncio.wait({future}, timeout=step)
            if done:
                return future.result()

    async def _ended(self, rid: str) -> bytes | None:
        info = await self.info(rid)
        if info.status == SUCCEEDED:
            return await self.result(rid)
        if info.status == FAILED and info.failure is not None:
            raise RequestFailedError(
                f"request {rid} failed at node {info.failure.node!r} "
                f"(attempt {info.failure.attempt}): {info.failure.cause}",
                request_id=rid,
                node=info.failure.node,
                attempt=info.failure.attempt,
                cause=info.failure.cause,
            )
        if info.status == STOPPED:
            raise RequestStoppedError(f"request {rid} was stopped", request_id=rid, cause="stopped")
        return None

    async def run(
        self,
        data: bytes | str = b"",
        *,
        request_id: str | None = None,
        query: str = "",
        timeout: float | None = None,
    ) -> bytes:
        """Start a request and wait for its result."""
        rid = await self.submit(data, request_id=request_id, query=query)
        return await self.wait(rid, timeout)

    async def info(self, request_id: str, *, nodes: bool = False) -> RequestInfo:
        """The request's status (and, with ``nodes=True``, every node's state and details:
        see :func:`faasflow.engine.records.node_table`).

        Raises:
            UnknownRequestError: no such request, or it has expired.
        """
        raw = await self.state.get(keys.request(request_id))
        if raw is None:
            raise UnknownRequestError(f"no request {request_id!r}", request_id)
        info = RequestInfo.from_record(request_id, loads(raw))
        if nodes:
            records = await self._node_records(request_id)
            history = await self.state.read_list(keys.history(request_id))
            events = with_starts([loads(item) for item in history], records)
            info.nodes.update(node_table(events, records))
        return info

    async def _node_records(self, request_id: str) -> dict[str, dict[str, Any]]:
        """The node records of a request still running (node path → record)."""
        prefix = keys.node_record(request_id, "")
        found = await self.state.keys(prefix)
        values = await self.state.get_many(found)
        return {
            key[len(prefix) :]: loads(value)
            for key, value in zip(found, values, strict=True)
            if value is not None
        }

    async def list_requests(
        self,
        *,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RequestPage:
        """This flow's requests still on record, newest first, a page at a time.

        Args:
            status: keep only requests in this status (or these statuses).
            limit: at most this many requests per page (1-1000).
            before: the ``next`` of the previous page (an opaque cursor).

        Raises:
            RequestError: an unknown status or a limit out of range.
        """
        wanted = {status} if isinstance(status, str) else set(status or STATUSES)
        unknown = sorted(wanted - set(STATUSES))
        if unknown:
            raise RequestError(
                f"unknown status {', '.join(unknown)}: use {', '.join(STATUSES)}", None
            )
        if not 1 <= limit <= 1000:
            raise RequestError(f"limit must be 1-1000, got {limit}", None)
        prefix = keys.flow_index(self.flow_name)
        index = await self.state.keys(prefix)
        created = await self.state.get_many(index)
        # Newest first by creation time (the index entry's value), then by id; a cursor
        # is "created/id" of the last request on the previous page.
        order = sorted(
            ((float(value or 0), key[len(prefix) :]) for key, value in zip(
                index, created, strict=True)),
            reverse=True,
        )
        if before is not None:
            text, _, last = before.partition("/")
            try:
                cut = (float(text), last)
            except ValueError:
                raise RequestError(f"invalid cursor {before!r}", None) from None
            order = [entry for entry in order if entry < cut]
        page: list[RequestInfo] = []
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            records = await self.state.get_many([keys.request(rid) for _, rid in batch])
            for (stamp, rid), raw in zip(batch, records, strict=True):
                if raw is None:
                    continue
                info = RequestInfo.from_record(rid, loads(raw))
                if info.status in wanted:
                    page.append(info)
                    if len(page) == limit:
                        more = (stamp, rid) != order[-1]
                        return RequestPage(page, f"{stamp!r}/{rid}" if more else None)
        return RequestPage(page, None)

    async def state_of(self, request_id: str) -> str:
        """The request's status: running, paused, succeeded, failed or stopped."""
        return (await self.info(request_id)).status

    async def result(self, request_id: str) -> bytes:
        """The stored result of a succeeded request.

        Raises:
            UnknownRequestError: no such request (or expired).
            RequestStateError: the request has not succeeded (yet).
        """
        info = await self.info(request_id)
        if info.status != SUCCEEDED:
            raise RequestStateError(
                f"request {request_id} has no result: it is {info.status}", request_id
            )
        data = await self.data.get(keys.result(request_id))
        if data is None:
            raise UnknownRequestError(f"the result of {request_id} has expired", request_id)
        return data

    async def history(self, request_id: str) -> list[dict[str, Any]]:
        """The request's events, oldest first: request started and ended; per node
        started, retried, held, finished (expanded, for a dynamic node's choice) or
        failed, with attempts, times, sizes and errors."""
        await self.info(request_id)
        history = [loads(item) for item in await self.state.read_list(keys.history(request_id))]
        return with_starts(history, await self._node_records(request_id))

    async def pause(self, request_id: str) -> None:
        """Hold the request: running nodes finish, their successors wait for :meth:`resume`."""
        await self._require(request_id, (RUNNING,), "pause")
        if await self.executor._set_status(request_id, (RUNNING,), PAUSED) is None:
            await self._require(request_id, (RUNNING,), "pause")

    async def resume(self, request_id: str) -> int:
        """Continue a paused request; each held hop is sent once. Returns how many."""
        await self._require(request_id, (PAUSED,), "resume")
        if await self.executor._set_status(request_id, (PAUSED,), RUNNING) is None:
            await self._require(request_id, (PAUSED,), "resume")
        with use_thread_pool(self._threads):
            return await self.executor.release_held(request_id)

    async def stop(self, request_id: str) -> None:
        """End a running, paused or failed request now; hooks run once."""
        await self._require(request_id, (RUNNING, PAUSED, FAILED), "stop")
        with use_thread_pool(self._threads):
            if not await self.executor.stop(request_id):
                await self._require(request_id, (RUNNING, PAUSED, FAILED), "stop")

    async def redrive(self, request_id: str) -> int:
        """Run a failed request again from its failed node(s), keeping finished results.

        Returns how many hops were sent again.
        """
        await self._require(request_id, (FAILED,), "redrive")
        raw = await self.state.get(keys.request(request_id))
        if raw is not None and loads(raw).get("retired"):
            raise RequestStateError(
                f"cannot redrive request {request_id}: it failed more than "
                f"{self.failed_ttl:g}s ago and its intermediate state was dropped",
                request_id,
            )
        if await self.executor._set_status(request_id, (FAILED,), RUNNING, error=None) is None:
            await self._require(request_id, (FAILED,), "redrive")
        with use_thread_pool(self._threads):
            # Pending hops too: a request failed as stalled lost them in flight.
            return await self.executor.release_held(
                request_id
            ) + await self.executor.resend_pending(request_id)

    async def sweep(self) -> dict[str, list[str]]:
        """Find this flow's abandoned requests and bound what failed ones keep.

        * a running request with no progress for ``resend_after`` seconds and no node
          running in a live process has its pending hops sent again: a transport that
          lost them (a gateway whose queue worker could not reach the flow) gets another
          chance; a duplicate is harmless;
        * one with no progress for ``stall_after`` seconds is failed, so it does not
          hang silently; it can be redriven;
        * a failed request not redriven within ``failed_ttl`` seconds loses its
          intermediate state, keeping its record and history until they expire.

        Runs every ``sweep_interval`` seconds while the engine is started. Returns the
        ids ``{"resent": [...], "stalled": [...], "retired": [...]}``.
        """
        report: dict[str, list[str]] = {"resent": [], "stalled": [], "retired": []}
        now = time.time()
        prefix = keys.live_index(self.flow_name)
        for key in await self.state.keys(prefix):
            rid = key[len(prefix) :]
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                await self.state.delete(key)
                continue
            record = loads(raw)
            if record["status"] == FAILED and now - record["updated"] > self.failed_ttl:
                await self.executor.retire(rid)
                report["retired"].append(rid)
            elif record["status"] == RUNNING:
                verdict = await self._unstick(rid, record, now)
                if verdict:
                    report[verdict].append(rid)
        return report

    async def _unstick(self, rid: str, record: dict[str, Any], now: float) -> str | None:
        """Resend or fail a running request that stopped making progress."""
        idle = now - await self._last_progress(rid, record)
        if idle <= min(self.resend_after or idle, self.stall_after or idle):
            return None
        if await self._node_running(rid):
            return None
        if self.stall_after is not None and idle > self.stall_after:
            cause = f"stalled: no progress for more than {self.stall_after:g}s"
            return "stalled" if await self.executor.abandon(rid, cause) else None
        if self.resend_after is not None and now - self._resent.get(rid, 0.0) > self.resend_after:
            self._resent[rid] = now
            with use_thread_pool(self._threads):
                await self.executor.resend_pending(rid)
            return "resent"
        return None

    async def _last_progress(self, rid: str, record: dict[str, Any]) -> float:
        history = await self.state.read_list(keys.history(rid))
        last = loads(history[-1])["t"] if history else 0.0
        return max(float(last), float(record["updated"]))

    async def _node_running(self, rid: str) -> bool:
        found = await self.state.keys(keys.node_record(rid, ""))
        for key, value in zip(found, await self.state.get_many(found), strict=True):
            if value is None:
                continue
            node = loads(value)
            if node["state"] == "running" and await self.executor.step_alive(rid, key, node):
                return True
        return False

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except FaasFlowError as exc:
                log.warning("sweep of flow %s failed: %s", self.flow_name, exc)

    async def recover(self) -> list[str]:
        """Take over this flow's unfinished requests whose engine is gone; resend their
        pending hops. Returns the ids taken over.

        An engine is gone when its heartbeat has expired (it renews it every third of
        ``lease_ttl``) or, on this host, its process has provably ended.
        """
        await self.start()
        taken: list[str] = []
        prefix = keys.live_index(self.flow_name)
        for key in await self.state.keys(prefix):
            rid = key[len(prefix) :]
            raw = await self.state.get(keys.request(rid))
            if raw is None:
                await self.state.delete(key)
                continue
            record = loads(raw)
            if record["status"] not in (RUNNING, PAUSED) or await self.executor.claims.engine_alive(
                record.get("owner", "")
            ):
                continue
            record["owner"] = self.executor.owner
            if not await self.state.compare_and_set(keys.request(rid), raw, dumps(record)):
                continue
            if record["status"] == RUNNING:
                with use_thread_pool(self._threads):
                    await self.executor.resend_pending(rid)
            taken.append(rid)
        return taken

    async def requests(self) -> list[str]:
        """Ids of this flow's requests still on record, oldest first."""
        prefix = keys.flow_index(self.flow_name)
        return [key[len(prefix) :] for key in await self.state.keys(prefix)]

    async def drain(self) -> None:
        """Wait until no hop is queued or running in this process."""
        await self.transport.drain()

    async def _require(self, rid: str, allowed: tuple[str, ...], verb: str) -> None:
        status = (await self.info(rid)).status
        if status not in allowed:
            raise RequestStateError(
                f"cannot {verb} request {rid}: it is {status} (needs {' or '.join(allowed)})", rid
            )


def _memory_data_for(state: StateStore) -> DataStore:
    if isinstance(state, MemoryStateStore):
        return MemoryDataStore()
    raise FaasFlowError("pass data_store= too when state_store= is a store object")


async def arun(
    define: Define,
    data: bytes | str = b"",
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    functions_dir: str | Path | None = None,
    gateway: str | None = None,
    state_store: StateStore | str | None = None,
    data_store: DataStore | str | None = None,
    flow_name: str = "flow",
    query: str = "",
    request_id: str | None = None,
    timeout: float | None = None,
) -> bytes:
    """Run one request of ``define`` on ``data`` and return its result.

    Raises:
        FlowDefinitionError: the definition is invalid; nothing ran.
        RequestFailedError: a node failed (``node``, ``attempt`` and ``cause`` say which).
    """
    engine = Engine(
        define,
        flow_name=flow_name,
        functions=functions,
        functions_dir=functions_dir,
        gateway=gateway,
        state_store=state_store,
        data_store=data_store,
    )
    async with engine:
        return await engine.run(data, request_id=request_id, query=query, timeout=timeout)


def run(define: Define, data: bytes | str = b"", **options: Any) -> bytes:
    """Blocking :func:`arun`: run one request and return its result."""
    return asyncio.run(arun(define, data, **options))
