"""Failed sign-ins, counted per client address, so that the token cannot be guessed at
speed through the sign-in form."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]

MAX_CLIENTS = 10_000
"""Addresses remembered at once; the least recently seen is forgotten first."""


class LoginThrottle:
    """After ``failures`` failed sign-ins within ``window`` seconds, an address waits
    until the first of them is ``window`` seconds old; a sign-in that succeeds clears
    its count.

    Behind a reverse proxy every client has the proxy's address, so they share one
    count: a burst of wrong tokens holds everyone back for a while.

    Args:
        failures: failed sign-ins allowed within ``window``.
        window: seconds.
        clock: a monotonic clock, in seconds.
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """Whole seconds ``client`` must wait before trying again; 0 when it may now."""
        times = self._failed.get(client)
        if times is None or len(times) < self.failures:
            return 0
        left = times[0] + self.window - self._clock()
        return math.ceil(left) if left > 0 else 0

    def failed(self, client: str) -> None:
        """Count a failed sign-in of ``client``."""
        times = self._failed.setdefault(client, deque(maxlen=self.failures))
        times.append(self._clock())
        self._failed.move_to_end(client)
        while len(self._failed) > MAX_CLIENTS:
            self._failed.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failed sign-ins."""
        self._failed.pop(client, None)
