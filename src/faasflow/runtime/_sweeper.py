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


class Sweeper:
    """The sweep and the recovery of one runtime's flow (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._resent: dict[str, float] = {}
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
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except FaasFlowError as exc:
                log.warning("sweep of flow %s failed: %s", self.core.flow_name, exc)

    async def sweep(self) -> dict[str, list[str]]:
        """One sweep; the ids ``{"resent": [...], "stalled": [...], "retired": [...]}``.

        * a running request with no progress for ``resend_after`` seconds and no node
          running in a live process has its pending hops sent again: a transport that
          lost them (a gateway whose queue worker could not reach the flow) gets another
          chance; a duplicate is harmless;
        * one with no progress for ``stall_after`` seconds is failed, so it does not
          hang silently; it can be redriven;
        * a failed request not redriven within ``failed_ttl`` seconds loses its
          intermediate state, keeping its record and history until they expire.
        """
        core, options = self.core, self.core.options
        report: dict[str, list[str]] = {"resent": [], "stalled": [], "retired": []}
        now = time.time()
        requests = core.executor.requests
        for rid in await requests.unfinished():
            record = await requests.get(rid)
            if record is None:
                await requests.forget_unfinished(rid)
                continue
            if record.status == FAILED and now - record.updated > options.failed_ttl:
                await core.executor.lifecycle.retire(rid)
                report["retired"].append(rid)
            elif record.status == RUNNING:
                verdict = await self._unstick(rid, record, now)
                if verdict:
                    report[verdict].append(rid)
        return report

    async def _unstick(self, rid: str, record: RequestRecord, now: float) -> str | None:
        """Resend or fail a running request that stopped making progress."""
        options = self.core.options
        idle = now - await self._last_progress(rid, record)
        if idle <= min(options.resend_after or idle, options.stall_after or idle):
            return None
        if await self._node_running(rid):
            return None
        if options.stall_after is not None and idle > options.stall_after:
            cause = f"stalled: no progress for more than {options.stall_after:g}s"
            stalled = await self.core.executor.lifecycle.abandon(rid, cause)
            return "stalled" if stalled else None
        resend_after = options.resend_after
        if resend_after is not None and now - self._resent.get(rid, 0.0) > resend_after:
            self._resent[rid] = now
            with self.core.user_threads():
                await self.core.executor.resend_pending(rid)
            return "resent"
        return None

    async def _last_progress(self, rid: str, record: RequestRecord) -> float:
        history = await self.core.executor.requests.history(rid)
        last = history[-1].t if history else 0.0
        return max(last, record.updated)

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
        for rid in await executor.requests.unfinished():
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
