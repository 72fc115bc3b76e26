"""What every store backend's URL parsing shares: showing a URL without its secrets.

A leaf module: :mod:`faasflow.stores.urls` and each backend import it, so the backends
need not import the dispatcher that imports them.
"""

from __future__ import annotations

import re

__all__ = ["redact_url"]

_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its passwords (user info, ``password=`` options) masked, for errors.

    The user info is read by hand rather than with ``urlsplit``, so that a secret holding
    an unencoded ``/`` or ``#`` (which ends the host part early) is masked too: when the
    host part has no ``@``, the user info reaches the last ``@`` before the query. A path
    holding ``:`` and ``@`` may then be masked as well; showing too little beats showing
    a secret.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if "@" not in netloc and netloc:
            netloc = rest.partition("?")[0]
        userinfo, at, _ = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if at and colon:
            url = f"{scheme}{sep}{user}:***@{rest[len(userinfo) + 1 :]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)
