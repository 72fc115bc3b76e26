"""What the gateway adds to every function call, and how it reads a function's URL.

The real gateway wraps its function routes in ``MakeCallIDMiddleware``: an ``X-Call-Id``
(a UUID, unless the caller sent one, which is then kept and not echoed), an
``X-Start-Time`` (Unix nanoseconds, *added* to the request, so a queued call reaches
the function with two: the 202's and the worker's) and, on the answer,
``X-Served-By``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import Scope

from faasflow._version import __version__
from faasflow.gateway.registry import ROUTE_NAME
from faasflow.gateway.wire import Header, first_header

SERVED_BY = f"faasflow-gateway/{__version__}"
"""The ``X-Served-By`` value (the real gateway sends ``openfaas-ce/<version>``)."""

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
"""The methods faas-provider's proxy carries; any other gets 405."""


@dataclass
class Stamp:
    """What the call-id middleware adds to one call.

    Attributes:
        call_id: the call's ``X-Call-Id`` (generated or the caller's).
        request_headers: to add to the request the function gets.
        response_headers: to put on the answer, under the function's own.
    """

    call_id: str
    request_headers: list[Header] = field(default_factory=list)
    response_headers: list[Header] = field(default_factory=list)


def stamp_call(headers: list[Header]) -> Stamp:
    """The middleware's additions for a request with ``headers``."""
    start = str(time.time_ns())
    call_id = first_header(headers, "X-Call-Id")
    stamp = Stamp(call_id=call_id)
    if not call_id:
        stamp.call_id = str(uuid.uuid4())
        stamp.request_headers.append(("X-Call-Id", stamp.call_id))
        stamp.response_headers.append(("X-Call-Id", stamp.call_id))
    stamp.request_headers.append(("X-Start-Time", start))
    stamp.response_headers.append(("X-Start-Time", start))
    stamp.response_headers.append(("X-Served-By", SERVED_BY))
    return stamp


def function_path(scope: Scope, prefix: str) -> tuple[str, str] | None:
    """``(name, sub)`` from ``PREFIX NAME[/sub]`` in the raw (still encoded) path;
    ``None`` when the name is not one the gateway's router accepts."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    text = raw.partition(b"?")[0].decode("latin-1")
    name, slash, sub = text[len(prefix) :].partition("/")
    if not ROUTE_NAME.match(name):
        return None
    # A dot-segment would be resolved by the HTTP client on the way to the function and
    # reach another path (another request's control route, or above a registered URL's
    # prefix): such paths are not routed at all.
    if any(segment in (".", "..") for segment in unquote(sub).split("/")):
        return None
    return name, slash + sub


def remote_addr(request: Request) -> str:
    """The caller's address as Go's ``RemoteAddr``: ``ip:port``, IPv6 in brackets."""
    if request.client is None:
        return ""
    host, port = request.client.host, request.client.port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
