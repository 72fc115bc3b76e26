"""The engine's knobs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings"]


@dataclass
class Settings:
    """Engine knobs, all with defaults that suit an embedded run."""

    default_timeout: float = 30.0
    """Seconds a function call may take when its operation sets no timeout."""
    result_ttl: float = 7 * 24 * 3600.0
    """How long a finished request's record, history and result are kept."""
    inline_limit: int = 1024
    """Outputs and inputs up to this many bytes travel inside hops and records instead of
    through the data store (0: always through the data store)."""
    max_claims: int | None = None
    """Times a step may be taken over from a process that died running it before the
    request fails instead (a node that kills its process); ``None``: no limit."""
    lease_ttl: float = 30.0
    """Seconds a claim on a running step stays valid unless its process renews it: how
    soon another process takes over a step whose process died without a trace (a pid
    that is gone proves it sooner)."""
    store_patience: float = 60.0
    """Seconds a step whose function has run keeps trying to record its result while
    the state store fails, before it gives the step up (and the function runs again)."""
    resend_after: float | None = 30.0
    """Seconds without progress after which the sweep resends a running request's
    pending hops (when no node of it runs in a live process); ``None`` never."""
    stall_after: float | None = 3600.0
    """Seconds without progress after which the sweep fails a running request; ``None``
    never."""
    failed_ttl: float = 7 * 24 * 3600.0
    """Seconds a failed request keeps its intermediate state for a redrive."""
