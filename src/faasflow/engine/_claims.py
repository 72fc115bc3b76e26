"""Claims on running steps: who runs a step is decided by a lease, never by a pid.

A process that starts a step (a node, a dynamic node's expansion, an aggregation)
writes the step's record as ``running`` under its owner name, with ``until``: the
claim's first lease, ``lease_ttl`` seconds from then. Most steps end well before that,
so the claim costs one write. A step still running after a sixth of ``lease_ttl`` gets
a lease key, ``r/R/l/…``, that expires ``lease_ttl`` seconds after it was last renewed:
one loop per engine renews the leases of all its running steps in one store round
trip. Another process that finds the step running takes it over once both are past;
a pid check can only make that sooner (the owner's process ended, is a zombie, or its
pid now names another process: :func:`~faasflow.engine._owners.owner_dead`), never
later. (``until`` is compared with the reader's clock: hosts need synchronised clocks,
as for the stores' own expiry.)

A process that gives a step up without finishing it (its commit failed, it was
cancelled or shut down) releases the claim at once: the record is marked released and
the lease deleted, conditionally on the record still being its claim, so the next
delivery of the hop takes the step without waiting for the lease. When the store is
unreachable at that moment, the release is kept and retried until it lands; a release
that lands late also sends the hop again, because a delivery that arrived meanwhile
found the step still claimed and dropped the hop, counting on this process.

The same loop keeps an engine heartbeat (``alive:OWNER``) that says the engine still
runs, for :meth:`~faasflow.runtime.engine.Engine.recover` to tell a dead engine's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from faasflow.engine import _keys as keys
from faasflow.engine._owners import owner_dead
from faasflow.engine._records import StepRecord
from faasflow.errors import StoreError
from faasflow.stores.base import Delete, Put, StateStore
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.engine")

_RELEASE_RETRY = 0.25
"""Seconds between attempts to release claims given up while the store was away."""


@dataclass(frozen=True)
class Claim:
    """This process's claim on the step whose record is at ``key``.

    Attributes:
        rid: the request.
        key: the step's record key.
        record: the running record this process wrote (its owner, its attempt).
        raw: that record as stored: every later write of the step is conditional on the
            record still being this.
        hop: the hop that runs the step, to send again if the claim is released late.
    """

    rid: str
    key: str
    record: StepRecord
    raw: bytes
    hop: Hop
    since: float = field(default_factory=time.monotonic)

    @property
    def lease(self) -> str:
        return keys.lease(self.rid, self.key)


class Claims:
    """The claims of one engine: its running steps, their leases and its heartbeat.

    Args:
        state: the state store the claims live in.
        owner: this engine's owner name (see :func:`~faasflow.engine._owners.process_owner`).
        lease_ttl: seconds a claim lasts unless renewed.
        resend: sends a hop again (after a release that landed late).
    """

    def __init__(
        self,
        state: StateStore,
        owner: str,
        lease_ttl: float,
        resend: Callable[[Hop], Awaitable[None]],
    ) -> None:
        self.state = state
        self.owner = owner
        self.lease_ttl = lease_ttl
        self._resend = resend
        self._running: dict[str, Claim] = {}
        self._unreleased: dict[str, Claim] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        """How many steps this engine runs now."""
        return len(self._running)

    # -- this engine's claims ---------------------------------------------------------
    def runs(self, key: str) -> bool:
        """Whether this engine runs the step at ``key`` now."""
        return key in self._running

    def record(self, attempt: int, deaths: int) -> StepRecord:
        """The record of a claim made now: running, by this engine, until its first
        lease runs out."""
        now = time.time()
        return StepRecord(
            "running", attempt=attempt, started=now, owner=self.owner,
            until=now + self.lease_ttl, deaths=deaths,
        )  # fmt: skip

    def lease_op(self, claim: Claim) -> Put:
        """The write that renews ``claim``'s lease."""
        return Put(claim.lease, self.owner.encode(), ttl=self.lease_ttl)

    def hold(self, claim: Claim) -> None:
        """Count ``claim`` as running here (before its write lands: a duplicate of its
        hop that reads the record meanwhile must find it running, not abandoned)."""
        self._running.setdefault(claim.key, claim)

    def drop(self, claim: Claim) -> None:
        """Forget ``claim``: its write did not land, or its record has moved on (done or
        failed) and the lease went with it."""
        if self._running.get(claim.key) is claim:
            del self._running[claim.key]

    async def give_up(self, claim: Claim) -> None:
        """Release ``claim`` without finishing its step, so the next delivery takes it.

        Never raises: a release the store refuses now is retried in the background until
        it lands, and then the hop is sent again.
        """
        self.drop(claim)
        self._unreleased[claim.key] = claim
        try:
            await self._release(claim)
        except StoreError as exc:
            log.warning("could not release %s now (%s); retrying", claim.key, exc)
            self._wake.set()
            return
        self._unreleased.pop(claim.key, None)

    async def _release(self, claim: Claim) -> bool:
        """Mark the record released and delete the lease, if the record is still
        ``claim``; whether it was."""
        released = replace(claim.record, released=True).encode()
        return await self.state.commit(
            [Put(claim.key, released), Delete(claim.lease)], require={claim.key: claim.raw}
        )

    # -- others' claims -----------------------------------------------------------------
    async def alive(self, rid: str, key: str, record: StepRecord) -> bool:
        """Whether the step at ``key``, whose record says it is running, still is."""
        owner = record.owner or ""
        if owner == self.owner:
            return key in self._running
        if record.released or owner_dead(owner):
            return False
        if record.until is not None and time.time() < record.until:
            return True
        return await self.state.get(keys.lease(rid, key)) == owner.encode()

    async def engine_alive(self, owner: str) -> bool:
        """Whether the engine named ``owner`` still runs (its heartbeat is renewed)."""
        if owner == self.owner:
            return self._task is not None
        if owner_dead(owner):
            return False
        return await self.state.get(keys.engine_alive(owner)) is not None

    # -- the loop -------------------------------------------------------------------------
    def start(self) -> None:
        """Start renewing leases and the heartbeat (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="faasflow-claims")

    async def stop(self) -> None:
        """Stop renewing; take the heartbeat away (this engine no longer runs)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(StoreError):
            await self.state.delete(keys.engine_alive(self.owner))

    async def _loop(self) -> None:
        renew_every = self.lease_ttl / 3
        next_renewal = 0.0
        while True:
            now = time.monotonic()
            if now >= next_renewal:
                try:
                    await self.renew()
                    next_renewal = now + renew_every
                except StoreError as exc:
                    log.warning("could not renew leases: %s", exc)
                    next_renewal = now + min(renew_every, _RELEASE_RETRY)
            if self._unreleased:
                await self._release_late()
            wait = next_renewal - time.monotonic()
            if self._unreleased:
                wait = min(wait, _RELEASE_RETRY)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))

    async def renew(self) -> None:
        """Extend the lease of every step this engine runs, and its heartbeat.

        A lease is renewed only while the step's record is still this engine's claim
        (a record changed meanwhile means another process took the step over); that
        also restores a lease that expired while the store was away.
        """
        # A claim younger than this has its first lease in its record for long enough.
        young = time.monotonic() - self.lease_ttl / 6
        claims = [c for c in self._running.values() if c.since <= young]
        heartbeat = Put(keys.engine_alive(self.owner), b"", ttl=self.lease_ttl)
        writes = [heartbeat, *(self.lease_op(c) for c in claims)]
        if await self.state.commit(writes, require={c.key: c.raw for c in claims}):
            return
        # Some step was taken over: renew the others one by one.
        await self.state.commit([heartbeat])
        for claim in claims:
            renewed = await self.state.commit(
                [self.lease_op(claim)], require={claim.key: claim.raw}
            )
            if not renewed and self.runs(claim.key):
                log.warning("the claim on %s was taken over by another process", claim.key)

    async def _release_late(self) -> None:
        for key, claim in list(self._unreleased.items()):
            try:
                released = await self._release(claim)
            except StoreError:
                return  # still away: the next round tries again
            del self._unreleased[key]
            if released:
                log.info("released %s late; sending its hop again", key)
                try:
                    await self._resend(claim.hop)
                except Exception:
                    log.exception("could not send hop %s again", claim.hop.id)
