"""The etcd store's leases, whose IDs are their deadlines.

etcd leases count whole seconds and are revoked late (the lessor checks every 500 ms,
and a new leader extends every lease), so leases alone would let expired keys linger.
Instead each lease's ID *is* its deadline: ``deadline_ms << LEASE_SHIFT | random``,
chosen here when granting it (etcd accepts client-chosen lease IDs), so that every
reader tells an expired key at once (:func:`faasflow.stores._etcd_layout.live`); etcd
deletes the key for good when the lease (granted a second longer) runs out. Deadlines
are rounded up by at most 1/64 of the TTL so that keys written around the same time
share one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Iterator
from typing import Final

from faasflow.stores._etcd_client import EtcdClient, EtcdError
from faasflow.stores._etcd_layout import LEASE_SHIFT, now_ms

__all__ = ["Leases"]

_LAST_DEADLINE: Final = (1 << (63 - LEASE_SHIFT)) - 1
"""Deadlines beyond this (the year 2248) are cut to it, for the ID to fit in an int64."""

_MAX_LEASE_TTL: Final = 9_000_000_000
"""etcd's longest lease, in seconds."""


class Leases:
    """The leases one store has granted, by their rounded deadline."""

    def __init__(self, etcd: EtcdClient) -> None:
        self._etcd = etcd
        self._granted: dict[int, int] = {}  # rounded deadline (ms) -> lease ID
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._granted)

    async def get(self, what: str, ttl: float | None) -> int:
        """The lease of a key written now with ``ttl`` (0: no lease, no deadline)."""
        if ttl is None:
            return 0
        ttl_ms = max(0.0, ttl * 1000)
        # A step of at most ttl/64, a power of two so that steps nest: writes in the
        # same step share one lease and one grant.
        step = 1 << max(0, int(ttl_ms / 64).bit_length() - 1)
        deadline = min(math.ceil((now_ms() + ttl_ms) / step) * step, _LAST_DEADLINE)
        lease = self._granted.get(deadline)
        if lease is not None:
            return lease
        async with self._lock:
            lease = self._granted.get(deadline)
            if lease is None:
                lease = await self._grant(what, deadline)
                now = now_ms()
                self._granted = {d: id_ for d, id_ in self._granted.items() if d > now}
                self._granted[deadline] = lease
        return lease

    async def _grant(self, what: str, deadline: int) -> int:
        # One second more than the deadline needs: the lessor counts from when it
        # applies the grant, a little after now.
        seconds = min(max(1, math.ceil((deadline - now_ms()) / 1000) + 1), _MAX_LEASE_TTL)
        for _ in range(8):
            lease = deadline << LEASE_SHIFT | secrets.randbits(LEASE_SHIFT)
            if await self._etcd.grant(what, lease, seconds):
                return lease
            # Another writer drew the same random bits: draw again.
        raise self._etcd.error(what, "could not grant a lease with a free ID")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write that may name a lease: one that etcd lost is granted afresh."""
        try:
            yield
        except EtcdError as exc:
            if exc.lease_not_found:
                self._granted.clear()  # revoked early (by hand?): grant afresh next time
            raise
