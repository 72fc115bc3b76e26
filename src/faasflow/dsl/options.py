"""Options of the operations that call functions: retry policy and hooks."""

from __future__ import annotations

import random
from dataclasses import dataclass

from faasflow.errors import FlowDefinitionError


@dataclass(frozen=True)
class Retry:
    """How often, and how patiently, to retry a failing function call.

    Args:
        attempts: total attempts, the first included (``1`` = no retry).
        backoff: seconds before the second attempt; each later wait doubles.
        max_delay: the longest wait between two attempts.
        jitter: add up to this fraction of the wait at random, so that many failing
            requests do not retry in lockstep.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_delay: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise FlowDefinitionError(f"Retry(attempts={self.attempts}): attempts must be >= 1")
        if self.backoff < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise FlowDefinitionError(
                "Retry: backoff and max_delay must be >= 0 and jitter between 0 and 1"
            )

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        base = min(self.max_delay, self.backoff * 2.0 ** (failed_attempt - 1))
        return base + base * self.jitter * random.random()


NO_RETRY = Retry(attempts=1, backoff=0.0, max_delay=0.0, jitter=0.0)
