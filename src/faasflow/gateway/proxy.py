"""The synchronous invoke: one call of ``/function/NAME/...`` carried to the function.

Upstreams (registered servers and flows) are proxied with httpx, the request body
streamed to them and their answer streamed back, raw (a gzip body stays gzip), so a
body of many MiB is never held whole. A handler folder runs in this process through
:class:`~faasflow.functions.folders.HandlerFolders`, which needs the whole body.

What the caller gets back, as from faas-provider's proxy behind the gateway: the
function's status and headers over the gateway's own (``X-Call-Id``, ``X-Start-Time``,
``X-Served-By``), ``Content-Type`` being the function's, else the request's, else
``text/plain``. A function that cannot be reached → 500 ``Can't reach service for:
NAME.``; one that does not answer within the upstream timeout → 502, empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
from starlette.responses import Response, StreamingResponse

from faasflow.errors import FunctionError
from faasflow.functions.base import FunctionRequest
from faasflow.functions.folders import HandlerFolders
from faasflow.gateway.registry import FunctionEntry, Kind
from faasflow.gateway.wire import (
    HOP_HEADERS,
    Header,
    canonical_header,
    encode_headers,
    first_header,
    http_error,
    overlay,
    response,
    set_header,
    without,
)

logger = logging.getLogger(__name__)

BodySource = AsyncIterator[bytes] | None
"""A request body as it arrives, or ``None`` for an empty one."""

# Go's transport sends ``Content-Length: 0`` for an empty body with these methods only.
_EMPTY_BODY_LENGTH_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class Call:
    """One synchronous invocation, resolved, with everything the function is sent.

    Attributes:
        requested: ``{name}`` as the URL spelled it (``echo.openfaas-fn``).
        entry: the function it resolved to.
        method: the HTTP method, kept.
        path: the function's own path, ``/`` plus the URL's sub-path, still encoded.
        query: the raw query string without ``?`` (``""`` for none).
        headers: the request headers to send (hop-by-hop ones already removed).
        body: the request body as it arrives.
        response_headers: the gateway's headers for the answer, under the function's.
    """

    requested: str
    entry: FunctionEntry
    method: str
    path: str
    query: str
    headers: list[Header]
    body: BodySource
    response_headers: list[Header]


async def probe_body(chunks: AsyncIterator[bytes]) -> BodySource:
    """``None`` when ``chunks`` turns out empty, else the same bytes, re-iterable once.

    Go's transport does the same probe: a non-empty body of unknown length goes out
    chunked; an empty one goes out as no body at all.
    """
    first = b""
    async for chunk in chunks:
        if chunk:
            first = chunk
            break
    if not first:
        return None

    async def replay() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            if chunk:
                yield chunk

    return replay()


async def read_all(body: BodySource) -> bytes:
    """The whole body (for handler folders and the async queue)."""
    if body is None:
        return b""
    return b"".join([chunk async for chunk in body])


def content_type(request_headers: list[Header], function_headers: list[Header]) -> str:
    """faas-provider's ``getContentType``: the function's, the caller's, or ``text/plain``."""
    return (
        first_header(function_headers, "content-type")
        or first_header(request_headers, "content-type")
        or "text/plain"
    )


def cannot_reach(call: Call) -> Response:
    """faas-provider's answer when the function's server cannot be reached."""
    headers = [*call.response_headers, ("X-Openfaas-Internal", "proxy")]
    return http_error(500, f"Can't reach service for: {call.requested}.", headers)


class Proxy:
    """Carry calls to functions.

    Args:
        client: the httpx client for upstreams; the caller owns and closes it.
        folders: the handler folders, if any.
        timeout: seconds a function may take to start answering (each read of its
            body, too); the gateway's ``upstream_timeout``.
    """

    def __init__(
        self, client: httpx.AsyncClient, folders: HandlerFolders | None, timeout: float
    ) -> None:
        self._client = client
        self._folders = folders
        self._timeout = timeout

    async def send(self, call: Call) -> Response:
        """Invoke the function and build the caller's answer; never raises for the
        function's failures, which become 500/502 answers as the gateway's are."""
        if call.entry.kind is Kind.FOLDER:
            return await self._send_folder(call)
        return await self._send_http(call)

    def _answer_headers(self, call: Call, function_headers: list[Header]) -> list[Header]:
        headers = overlay(call.response_headers, function_headers)
        set_header(headers, "Content-Type", content_type(call.headers, function_headers))
        return headers

    async def _send_http(self, call: Call) -> Response:
        assert call.entry.url is not None
        url = call.entry.url.rstrip("/") + call.path
        if call.query:
            url += "?" + call.query
        headers = list(call.headers)
        content: AsyncIterator[bytes] | bytes | None = call.body
        if call.body is None and call.method in _EMPTY_BODY_LENGTH_METHODS:
            content = b""
            set_header(headers, "Content-Length", "0")
        try:
            # Header values arrive as latin-1 text; send the same bytes on (httpx would
            # refuse anything outside ASCII in a str).
            raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            request = self._client.build_request(
                call.method, url, headers=raw_headers, content=content,
                timeout=httpx.Timeout(self._timeout),
            )  # fmt: skip
            async with asyncio.timeout(self._timeout):
                upstream = await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            logger.warning("%s did not answer within %gs", call.requested, self._timeout)
            return response(502, b"", call.response_headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            logger.warning("cannot reach %s at %s: %s", call.requested, url, exc)
            return cannot_reach(call)
        # The function's own headers, minus the ones that frame the connection; its
        # Content-Length stays right because the body is relayed raw.
        function_headers = [
            (canonical_header(k.decode("latin-1")), v.decode("latin-1"))
            for k, v in upstream.headers.raw
            if k.decode("latin-1").lower() not in HOP_HEADERS
        ]
        answer = StreamingResponse(
            _relay(upstream, call.requested), status_code=upstream.status_code
        )
        answer.raw_headers = encode_headers(self._answer_headers(call, function_headers))
        return answer

    async def _send_folder(self, call: Call) -> Response:
        assert self._folders is not None
        body = await read_all(call.body)
        headers: dict[str, str] = {}
        for name, value in call.headers:
            headers.setdefault(name, value)  # a repeated header: the first, as Header.Get
        request = FunctionRequest(
            target=call.entry.name,
            body=body,
            method=call.method,
            headers=headers,
            query=parse_qsl(call.query, keep_blank_values=True),
            timeout=self._timeout,
        )
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._folders.invoke(request)
        except TimeoutError:
            logger.warning("%s did not answer within %gs", call.requested, self._timeout)
            return response(502, b"", call.response_headers)
        except FunctionError as exc:
            # The folder cannot serve (no handler.py, an import error): what a caller
            # of a crashed container sees; the reason is for the developer's terminal.
            logger.error("handler folder %s cannot serve: %s", call.entry.name, exc)
            return cannot_reach(call)
        function_headers = [
            (canonical_header(k), v)
            for k, v in _pairs(result.headers)
            if k.lower() not in HOP_HEADERS
        ]
        headers_out = self._answer_headers(call, function_headers)
        if call.method == "HEAD":
            headers_out = without(headers_out, ["content-length"])
            headers_out.append(("Content-Length", str(len(result.body))))
            return response(result.status, b"", headers_out, length=False)
        headers_out = without(headers_out, ["content-length"])
        return response(result.status, result.body, headers_out)


def _pairs(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(headers, httpx.Headers):
        return [(k, v) for k, v in headers.multi_items()]
    return list(headers.items())


async def _relay(upstream: httpx.Response, name: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        # The caller's connection is broken off (not ended cleanly), so a truncated
        # body cannot pass for a whole one.
        logger.warning("%s: reading the answer failed: %s", name, exc)
        raise
    finally:
        await upstream.aclose()
