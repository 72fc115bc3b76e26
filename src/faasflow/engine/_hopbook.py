"""Bookkeeping of a request's hops in the state store: pending (sent, not finished) and
held (kept back while paused or failed).

One key per step rather than one set per request: adding and removing are then single
writes on every backend, and a duplicate hop for the same step lands on the same key.
"""

from __future__ import annotations

from faasflow.engine import _keys as keys
from faasflow.stores.base import Delete, Put, StateStore
from faasflow.wire.hop import Hop


def _step(hop: Hop) -> str:
    return f"{hop.kind}:{hop.path}"


class HopBook:
    """Pending and held hops of requests, kept in a :class:`StateStore`."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def pending_op(self, hop: Hop) -> Put:
        """The write that records ``hop`` as pending (for a batched commit)."""
        return Put(keys.pending(hop.request_id, _step(hop)), hop.json.encode())

    async def mark_pending(self, hop: Hop) -> None:
        """Record ``hop`` before it is sent, so a crash cannot lose it."""
        op = self.pending_op(hop)
        await self.state.set(op.key, op.value)

    async def clear_pending(self, hop: Hop) -> None:
        """``hop``'s step is done (or held): forget it, whichever delivery recorded it."""
        await self.state.commit([Delete(keys.pending(hop.request_id, _step(hop)))])

    async def hold(self, hop: Hop) -> None:
        """Move ``hop`` from pending to held."""
        await self.state.set(keys.held(hop.request_id, _step(hop)), hop.json.encode())
        await self.clear_pending(hop)

    async def unhold(self, hop: Hop) -> bool:
        """Take ``hop`` back from held to pending; ``True`` for the one caller that did."""
        if not await self.state.compare_and_set(
            keys.held(hop.request_id, _step(hop)), hop.json.encode(), None
        ):
            return False
        await self.mark_pending(hop)
        return True

    async def count_held(self, rid: str) -> int:
        """How many hops of request ``rid`` are held."""
        return len(await self.state.keys(keys.held(rid)))

    async def claim_replay(self, rid: str, signature: str, ttl: float) -> bool:
        """Note that the hop signed ``signature`` runs now; ``False`` when it ran or runs
        already (a replay). Kept under the request's keys, so it goes with the request,
        and for ``ttl`` seconds at most."""
        return await self.state.compare_and_set(keys.seen_hop(rid, signature), None, b"",
                                                ttl=ttl)

    async def release_replay(self, rid: str, signature: str) -> None:
        """Forget :meth:`claim_replay`'s note: the hop did not run to its end."""
        await self.state.compare_and_set(keys.seen_hop(rid, signature), b"", None)

    async def held(self, rid: str) -> list[Hop]:
        return await self._read(keys.held(rid))

    async def pending(self, rid: str) -> list[Hop]:
        return await self._read(keys.pending(rid))

    async def _read(self, prefix: str) -> list[Hop]:
        found = await self.state.keys(prefix)
        values = await self.state.get_many(found)
        return [Hop.from_json(v) for v in values if v is not None]
