"""Basic auth on ``/system/*``, answered as the gateway's ``DecorateWithBasicAuth`` does.

The real gateway sets ``WWW-Authenticate: Basic realm="Restricted"`` on every answer of
a protected route, success included, and refuses with 401 and the body
``invalid credentials`` (no newline, no content type of its own, so Go sniffs
``text/plain; charset=utf-8``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from faasflow.gateway.wire import encode_headers, response

CHALLENGE = ("Www-Authenticate", 'Basic realm="Restricted"')

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class BasicAuth:
    """The one user and password allowed on ``/system/*``."""

    user: str
    password: str

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries these credentials."""
        given = _parse_basic(authorization)
        if given is None:
            return False
        user, password = given
        # Both compared, always, in constant time: no hint which one was wrong. As bytes,
        # as Go compares them: what the client encoded (UTF-8, as browsers and curl do)
        # against the configured text's UTF-8.
        user_ok = hmac.compare_digest(user, self.user.encode())
        password_ok = hmac.compare_digest(password, self.password.encode())
        return user_ok and password_ok


def _parse_basic(value: str | None) -> tuple[bytes, bytes] | None:
    # Go's Request.BasicAuth: "Basic " (any case), standard base64, split at the first ":".
    prefix = "basic "
    if value is None or value[: len(prefix)].lower() != prefix:
        return None
    try:
        decoded = base64.b64decode(value[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def protect(handler: Handler, auth: BasicAuth | None) -> Handler:
    """``handler`` behind ``auth``; unchanged when ``auth`` is ``None``."""
    if auth is None:
        return handler

    async def guarded(request: Request) -> Response:
        if not auth.allows(request.headers.get("authorization")):
            return response(
                401,
                b"invalid credentials",
                [CHALLENGE, ("Content-Type", "text/plain; charset=utf-8")],
            )
        answer = await handler(request)
        answer.raw_headers = [*answer.raw_headers, *encode_headers([CHALLENGE])]
        return answer

    return guarded
