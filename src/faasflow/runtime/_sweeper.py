"""Finding requests nobody moves on: the sweep, and recovery after a process died.

:class:`Sweeper` is the part of the runtimes that run hops (Engine, Worker) which looks
after requests as a whole: every ``sweep_interval`` it resends the pending hops of
running requests that stopped making progress, fails those stuck too long, and retires
failed ones nobody redrove; :meth:`Sweeper.recover` takes over the requests of engines
that are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time

from faasflow.engine import RequestRecord
from faasflow.engine.views import FAILED, PAUSED, RUNNING
from faasflow.errors import FaasFlowError
from faasflow.runtime._core import Core

log = logging.getLogger("faasflow.engine")

_BATCH = 500
"""Due requests read at once."""


class Sweeper:
    """The sweep and the recovery of one runtime's flow (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep every ``sweep_interval`` seconds from now on (if it is set)."""
        interval = self.core.options.sweep_interval
        if interval is not None and self._task is None:
            self._task = asyncio.create_task(self._forever(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _forever(self, interval: float) -> None:
        executor = self.core.executor
        while True:
            await asyncio.sleep(interval)
            try:
                # One process sweeps a flow at a time: the others would repeat its work.
                if await executor.requests.lead_sweep(executor.owner, ttl=3 * interval):
                    await self.sweep()
            except FaasFlowError as exc:
                log.warning("sweep of flow %s failed: %s", self.core.flow_name, exc)

    async def sweep(self) -> dict[str, list[str]]:
        """One sweep; the ids ``{"resent": [...], "stalled": [...], "retired": [...]}``.

        It reads only what is due (the flow's ``due`` index): a sweep with nothing due
        costs one index read, however many requests wait.

        * a running request with no progress for ``resend_after`` seconds and no node
          running in a live process has its pending hops sent again: a transport that
          lost them (a gateway whose queue worker could not reach the flow) gets another
          chance; a duplicate is harmless;
        * one with no progress for ``stall_after`` seconds is failed, so it does not
          hang silently; it can be redriven;
        * a failed request not redriven within ``failed_ttl`` seconds loses its
          intermediate state, keeping its record and history until they expire.

        Each request looked at costs a few store calls (its record, its last event, its
        running nodes) and is scheduled again for when it may next be due. The entries of
        requests that expired are pruned from the flow's indexes.
        """
        core, options = self.core, self.core.options
        requests = core.executor.requests
        report: dict[str, list[str]] = {"resent": [], "stalled": [], "retired": []}
        now = time.time()
        checks = [t for t in (options.resend_after, options.stall_after) if t is not None]
        seen: set[str] = set()
        while checks:
            due = [rid for rid in await requests.due(now - min(checks), _BATCH)
                   if rid not in seen]
            if not due:
                break
            for rid in due:
                seen.add(rid)
                verdict = await self._look_at(rid, now, min(checks))
                if verdict:
                    report[verdict].append(rid)
        while True:
            failed = [rid for rid in await requests.retirable(now - options.failed_ttl, _BATCH)
                      if rid not in seen]
            if not failed:
                break
            for rid in failed:
                seen.add(rid)
                if await self._retire(rid, now):
                    report["retired"].append(rid)
        await requests.prune(now - 2 * options.result_ttl)
        return report

    async def _retire(self, rid: str, now: float) -> bool:
        executor = self.core.executor
        record = await executor.requests.get(rid)
        if record is None or record.status != FAILED or record.retired:
            await executor.requests.forget_unfinished(rid)
            return False
        if now - record.updated <= self.core.options.failed_ttl:
            return False  # redriven and failed again since: its entry moved with it
        await executor.lifecycle.retire(rid)
        return True

    async def _look_at(self, rid: str, now: float, idle_limit: float) -> str | None:
        """Decide about one running request idle for ``idle_limit`` by its index entry;
        note when it was last seen moving, or looked at."""
        options, executor = self.core.options, self.core.executor
        requests = executor.requests
        record = await requests.get(rid)
        if record is None or record.status != RUNNING:
            if record is None or record.status != FAILED:
                await requests.forget_unfinished(rid)
            return None
        last = await requests.last_event(rid)
        progress = max(last.t if last else 0.0, record.updated)
        if now - progress <= idle_limit:
            await requests.looked_at(rid, progress)  # not idle after all: due later
            return None
        if await self._node_running(rid):
            await requests.looked_at(rid, now)
            return None
        stall = options.stall_after
        if stall is not None and now - progress > stall:
            cause = f"stalled: no progress for more than {stall:g}s"
            stalled = await executor.lifecycle.abandon(rid, cause)
            return "stalled" if stalled else None
        await requests.looked_at(rid, now)
        if options.resend_after is not None and now - progress > options.resend_after:
            with self.core.user_threads():
                await executor.resend_pending(rid)
            return "resent"
        return None

    async def _node_running(self, rid: str) -> bool:
        executor = self.core.executor
        for path, node in (await executor.requests.steps(rid)).items():
            if node.running and await executor.step_alive(rid, path, node):
                return True
        return False

    async def recover(self) -> list[str]:
        """Take over this flow's unfinished requests whose engine is gone; resend their
        pending hops. Returns the ids taken over.

        An engine is gone when its heartbeat has expired (it renews it every third of
        ``lease_ttl``) or, on this host, its process has provably ended.
        """
        core = self.core
        executor = core.executor
        taken: list[str] = []
        requests = executor.requests
        for rid in [*await requests.unfinished(), *await requests.in_status(PAUSED)]:
            raw = await executor.requests.get_raw(rid)
            if raw is None:
                await executor.requests.forget_unfinished(rid)
                continue
            record = RequestRecord.decode(raw)
            if record.status not in (RUNNING, PAUSED):
                continue
            if await executor.claims.engine_alive(record.owner):
                continue
            if not await executor.requests.take_over(rid, record, raw, executor.owner):
                continue
            if record.status == RUNNING:
                with core.user_threads():
                    await executor.resend_pending(rid)
            taken.append(rid)
        return taken
