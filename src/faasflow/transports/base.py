"""How hops travel from the process that announces them to one that runs them."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable

from faasflow.wire.hop import Hop

HopHandler = Callable[[Hop], Awaitable[None]]
"""Runs one hop; returning means its effects are durable and it may be acknowledged."""


class Transport(ABC):
    """Delivers hops at least once to a handler."""

    on_undeliverable: Callable[[Hop, Exception], Awaitable[None]] | None = None
    """Set by the engine: called with a hop the transport gives up on and the last error,
    so the request fails with a record instead of hanging."""

    @abstractmethod
    async def start(self, handler: HopHandler) -> None:
        """Begin delivering hops to ``handler``."""

    @abstractmethod
    async def send(self, hop: Hop) -> None:
        """Queue ``hop`` for delivery; durable (for durable transports) when this returns."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering; hops not yet run stay where a durable transport keeps them."""

    async def drain(self) -> None:  # noqa: B027 - optional
        """Wait until nothing is queued or running (in-process transports)."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until each has ended.

    Cancelled again until it ends: a task whose cancellation was swallowed on its way
    through a client library (which happens inside connection pools) would otherwise
    go back to waiting for work, and closing would never return.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
