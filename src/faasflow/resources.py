"""``async with`` for the things faasflow opens and closes, written once."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """Something opened before use and closed after: ``async with`` calls both."""

    async def open(self) -> None:
        """Connect; called once before use. The default does nothing."""

    async def close(self) -> None:
        """Release connections. The default does nothing."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
