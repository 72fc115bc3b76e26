"""Hops delivered through an asyncio queue to worker tasks of this process."""

from __future__ import annotations

import asyncio
import logging

from faasflow.transports.base import HopHandler, Transport, cancel_and_wait
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.transport")


class InProcessTransport(Transport):
    """An in-memory queue served by ``concurrency`` worker tasks.

    A hop whose handler raises (a store that went away, say) is retried with backoff
    up to ``max_redeliveries`` times, then handed to ``on_undeliverable``.

    Args:
        concurrency: hops that may run at once.
        max_redeliveries: deliveries after the first before giving up on a hop.
        redelivery_delay: seconds before the first redelivery; doubles each time.
    """

    def __init__(
        self, *, concurrency: int = 64, max_redeliveries: int = 5, redelivery_delay: float = 0.05
    ) -> None:
        self.concurrency = concurrency
        self.max_redeliveries = max_redeliveries
        self.redelivery_delay = redelivery_delay
        self._queue: asyncio.Queue[tuple[Hop, int]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self._handler: HopHandler | None = None

    async def start(self, handler: HopHandler) -> None:
        self._handler = handler
        self._workers = [
            asyncio.create_task(self._work(), name=f"faasflow-worker-{i}")
            for i in range(self.concurrency)
        ]

    async def send(self, hop: Hop) -> None:
        self._queue.put_nowait((hop, 0))

    async def _work(self) -> None:
        assert self._handler is not None
        while True:
            hop, delivery = await self._queue.get()
            try:
                await self._handler(hop)
            except Exception as exc:
                self._redeliver(hop, delivery, exc)
            finally:
                self._queue.task_done()

    def _redeliver(self, hop: Hop, delivery: int, exc: Exception) -> None:
        if delivery >= self.max_redeliveries:
            log.error("hop %s failed %d times, giving up: %s", hop.id, delivery + 1, exc)
            if self.on_undeliverable is not None:
                task = asyncio.create_task(self._give_up(hop, exc))
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)
            return
        log.warning("hop %s failed (%s); redelivering", hop.id, exc)
        delay = self.redelivery_delay * (2**delivery)
        task = asyncio.create_task(self._later(hop, delivery + 1, delay))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _later(self, hop: Hop, delivery: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self._queue.put_nowait((hop, delivery))

    async def _give_up(self, hop: Hop, error: Exception) -> None:
        assert self.on_undeliverable is not None
        try:
            await self.on_undeliverable(hop, error)
        except Exception:
            log.exception("could not record the failure of hop %s", hop.id)

    async def drain(self) -> None:
        while True:
            await self._queue.join()
            if not self._retries:
                return
            await asyncio.gather(*list(self._retries), return_exceptions=True)

    async def close(self) -> None:
        await cancel_and_wait([*self._workers, *self._retries])
        self._workers = []
