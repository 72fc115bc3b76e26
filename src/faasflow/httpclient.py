"""The one way faasflow makes outgoing HTTP clients.

Idle pooled connections expire after 2 seconds: sooner than the servers at the other
end close them (uvicorn after 5 s, Go's servers and of-watchdog after a few), so a
request is never sent on a connection the server is closing at that moment, which
would fail it with a read error.
"""

from __future__ import annotations

import httpx

KEEPALIVE_EXPIRY = 2.0


def limits(max_connections: int = 256, max_keepalive: int = 64) -> httpx.Limits:
    """Pool limits with faasflow's keep-alive expiry."""
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )


def new_client(timeout: float | httpx.Timeout = 10.0, **options: object) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` with faasflow's pool limits."""
    options.setdefault("limits", limits())
    return httpx.AsyncClient(timeout=timeout, **options)  # type: ignore[arg-type]
