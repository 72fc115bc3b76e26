"""The sign-in form's session cookies: signed, expiring, revocable.

A cookie's value is ``ID.ISSUED.SIGNATURE``: a random session id, the sign-in time (Unix
seconds) and an HMAC-SHA256 of both, keyed by a secret (one of this process unless
given) and the dashboard's token. So a cookie cannot be made or stretched without the
secret, stops working ``max_age`` seconds after sign-in, and stops working when the token
changes or the process restarts (a new secret). Signing out revokes the session id here
until it would have expired anyway, so a copy of the cookie is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

from faasflow.errors import ConfigurationError

__all__ = ["DEFAULT_SESSION_MAX_AGE", "MAX_REVOKED", "Sessions"]

DEFAULT_SESSION_MAX_AGE = 12 * 3600.0
"""Seconds a session lasts from sign-in (``--session-max-age``)."""
MAX_REVOKED = 10_000
"""Revoked sessions remembered at once; past that, those expiring first are forgotten
early (it takes that many sign-outs within ``max_age``, each needing the token)."""
_CLOCK_SKEW = 60.0


class Sessions:
    """Issues and checks session cookie values; remembers the revoked ones.

    Args:
        token: the dashboard's token, part of the signing key.
        max_age: seconds a session lasts from sign-in.
        secret: the signing secret; by default a random one of this process, so that a
            restart signs every browser out. Give the same one to replicas behind one
            name (revocation stays per process).
        clock: the time, in seconds since the epoch.

    Raises:
        ConfigurationError: ``max_age`` is not a positive number of seconds.
    """

    def __init__(
        self,
        token: str,
        *,
        max_age: float = DEFAULT_SESSION_MAX_AGE,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(max_age) and max_age >= 1):
            raise ConfigurationError(
                f"--session-max-age: must be a number of seconds, at least 1, not {max_age}"
            )
        key = secret if secret is not None else secrets.token_bytes(32)
        self._key = hmac.new(key, b"faasflow-dashboard-session\0" + token.encode(),
                             hashlib.sha256).digest()
        self.max_age = max_age
        self._clock = clock
        self._revoked: dict[str, float] = {}
        """Session id → when it expires anyway (then it needs no remembering)."""

    def issue(self) -> str:
        """A new session's cookie value."""
        body = f"{secrets.token_urlsafe(16)}.{int(self._clock())}"
        return f"{body}.{self._sign(body)}"

    def check(self, value: str | None) -> bool:
        """Whether ``value`` is a cookie of a live session: signed here, not expired,
        not revoked."""
        opened = self._open(value)
        return opened is not None and opened[0] not in self._revoked

    def revoke(self, value: str | None) -> None:
        """End the session of cookie ``value`` (nothing happens for an invalid one)."""
        opened = self._open(value)
        if opened is None:
            return
        if len(self._revoked) >= MAX_REVOKED:
            now = self._clock()
            self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
            while len(self._revoked) >= MAX_REVOKED:
                del self._revoked[min(self._revoked, key=self._revoked.__getitem__)]
        session_id, expires = opened
        self._revoked[session_id] = expires

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def _open(self, value: str | None) -> tuple[str, float] | None:
        """The session id and its expiry time, when ``value`` is a valid, unexpired
        cookie; else ``None``."""
        if not value:
            return None
        body, _, signature = value.rpartition(".")
        # Bytes: a cookie may carry any character, which compare_digest refuses in str.
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        session_id, _, issued = body.partition(".")
        if not (session_id and issued.isascii() and issued.isdigit()):
            return None
        start, now = int(issued), self._clock()
        if start > now + _CLOCK_SKEW or now >= start + self.max_age:
            return None
        return session_id, start + self.max_age
