"""Data between nodes: stored in the data store, or small enough to travel inline.

Values up to ``inline_limit`` bytes are not stored: they travel inside their ref itself
(``~`` + base64), in the hop, the node record and the join set, which are durable in
the state store by the same commit that announces them. That saves a data-store write
and a read per small value. Data keys start with a request id, never ``~``.
"""

from __future__ import annotations

import base64

from faasflow.errors import OperationError
from faasflow.stores.base import DataStore

INLINE = "~"
"""Marks a ref that holds its value."""


class Values:
    """Writes and reads the values nodes pass on.

    Args:
        data: the data store.
        inline_limit: values up to this many bytes travel inline (0: none do).
    """

    def __init__(self, data: DataStore, inline_limit: int) -> None:
        self.data = data
        self.inline_limit = inline_limit

    async def write(self, ref: str, data: bytes) -> str:
        """Store ``data`` at ``ref`` (unless it travels inline); the ref to pass on."""
        if len(data) <= self.inline_limit:
            return INLINE + base64.urlsafe_b64encode(data).decode()
        await self.data.put(ref, data)
        return ref

    async def read(self, ref: str, path: str) -> bytes:
        """The value ``ref`` names, for the node at ``path``.

        Raises:
            OperationError: the stored value is gone (expired or deleted).
        """
        if ref.startswith(INLINE):
            return base64.urlsafe_b64decode(ref[len(INLINE) :])
        data = await self.data.get(ref)
        if data is None:
            raise OperationError(f"input data {ref!r} is missing (expired or deleted)", node=path)
        return data

    async def discard(self, ref: str) -> None:
        """Delete a stored value nobody will read (inline ones need nothing)."""
        if not ref.startswith(INLINE):
            await self.data.delete(ref)
