"""What the runtimes that run hops add to starting and controlling requests.

:class:`Runner` is shared by :class:`~faasflow.runtime.engine.Engine` (hops in this
process) and :class:`~faasflow.runtime.workers.Worker` (hops from NATS): taking hops,
the sweep, recovery, draining, observers. A :class:`~faasflow.runtime.workers.Client`
runs no hop and has none of it.
"""

from __future__ import annotations

from faasflow.engine.observers import Observer
from faasflow.runtime._requests import Submitting
from faasflow.runtime._sweeper import Sweeper
from faasflow.transports.base import Transport


class Runner(Submitting):
    """A runtime that takes hops: a :class:`~faasflow.runtime._core.Core` and a
    :class:`Sweeper`."""

    _sweeper: Sweeper

    @property
    def transport(self) -> Transport:
        """How this engine's hops travel."""
        return self._core.transport

    @property
    def running_steps(self) -> int:
        """How many steps this engine runs now."""
        return self._core.executor.running_steps

    @property
    def lease_ttl(self) -> float:
        """Seconds a claim of this engine lasts unless renewed."""
        return self._core.options.lease_ttl

    def observe(self, observer: Observer) -> None:
        """Tell ``observer`` what this engine does from now on (see
        :mod:`faasflow.engine.observers`)."""
        self._core.executor.observe(observer)

    async def start(self) -> None:
        """Open the stores and start taking hops (and sweeping)."""
        if self._core.started:
            return
        await self._core.start()
        self._sweeper.start()

    async def close(self) -> None:
        """Stop taking hops and release stores, connections and threads."""
        await self._sweeper.stop()
        await self._core.close()

    async def sweep(self) -> dict[str, list[str]]:
        """Find this flow's abandoned requests and bound what failed ones keep (see
        :meth:`faasflow.runtime._sweeper.Sweeper.sweep`); runs every ``sweep_interval``
        seconds while the engine is started."""
        return await self._sweeper.sweep()

    async def recover(self) -> list[str]:
        """Take over this flow's unfinished requests whose engine is gone; resend their
        pending hops. Returns the ids taken over.

        An engine is gone when its heartbeat has expired (it renews it every third of
        ``lease_ttl``) or, on this host, its process has provably ended.
        """
        await self.start()
        return await self._sweeper.recover()

    async def drain(self) -> None:
        """Wait until no hop is queued or running in this process."""
        await self._core.transport.drain()
