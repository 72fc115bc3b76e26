"""Functions behind an OpenFaaS gateway, and plain HTTP URLs.

This is the only module of ``faasflow.functions`` that talks to httpx; every httpx
exception is translated here into the :class:`~faasflow.errors.FunctionError` tree.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlencode

import httpx

from faasflow.errors import (
    ConfigurationError,
    FunctionError,
    FunctionNotFoundError,
    FunctionTimeoutError,
)
from faasflow.functions.base import FunctionInvoker, FunctionRequest, FunctionResponse
from faasflow.httpclient import limits

REQUEST_ID_HEADER = "X-Faas-Flow-Reqid"

# What the gateway (faas-provider's proxy) answers for a function it cannot resolve:
# 503 with "No endpoints available for: NAME." (see reference/openfaas-behaviour.md).
# A 404 is *not* a missing function: the gateway passes the function's own status
# through, so a function may well answer 404 itself.
_NO_ENDPOINTS_STATUS = 503
_NO_ENDPOINTS_PREFIX = b"No endpoints available for"

# Many small calls to one host: keep enough connections alive to serve a wide fan-out
# without reconnecting, and expire idle ones before a typical server (Go's
# http.Server in the gateway, of-watchdog) closes them under us.
DEFAULT_LIMITS = limits()


def normalise_gateway_url(url: str) -> str:
    """``gateway.openfaas:8080`` → ``http://gateway.openfaas:8080`` (no trailing ``/``).

    faas-flow's ``gateway`` environment variable is conventionally given without a scheme.

    Raises:
        ConfigurationError: the URL is empty.
    """
    url = url.strip()
    if not url:
        raise ConfigurationError("gateway URL is empty (option gateway / variable `gateway`)")
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def _with_query(url: str, query: list[tuple[str, str]]) -> str:
    # Appended by hand rather than through httpx's ``params=``: httpx merges params into
    # the URL's own query as a dict, which drops repeated names and reorders pairs.
    if not query:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urlencode(query)}"


class HttpClient(FunctionInvoker):
    """Call absolute URLs (``node.request(url)``); knows no function names.

    The registry uses one when no gateway is configured; :class:`GatewayClient` builds
    on it. Network failures raise :class:`FunctionError` naming the URL, timeouts
    :class:`FunctionTimeoutError`; any HTTP answer, 2xx or not, is returned.

    Args:
        client: an ``httpx.AsyncClient`` to share; when given, the caller owns it and
            :meth:`close` leaves it open. Otherwise one is created with
            :data:`DEFAULT_LIMITS` and closed by :meth:`close`.
    """

    def __init__(self, *, client: httpx.AsyncClient | None = None) -> None:
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(limits=DEFAULT_LIMITS)

    def knows(self, name: str) -> bool:
        return False

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        if not request.is_url:
            raise FunctionNotFoundError(
                f"function {request.target!r}: no gateway is configured to call it",
                function=request.target,
            )
        return await self._send(request, request.target, request.target, auth=None)

    async def _send(
        self,
        request: FunctionRequest,
        url: str,
        function: str,
        *,
        auth: httpx.Auth | None,
    ) -> FunctionResponse:
        """Make the HTTP call for ``request`` to ``url``, translating every failure."""
        url = _with_query(url, request.query)
        try:
            headers = httpx.Headers(request.headers)
            if request.request_id:
                headers[REQUEST_ID_HEADER] = request.request_id
            http_request = self._client.build_request(
                request.method.upper(),
                url,
                content=request.body,
                headers=headers,
                timeout=httpx.Timeout(request.timeout),
            )
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
            # Malformed URL or a header value that is not encodable.
            raise FunctionError(
                f"cannot build the request to {url}: {type(exc).__name__}: {exc}",
                function=function,
            ) from exc
        try:
            # httpx's timeout bounds each phase (connect, each read...); the outer
            # deadline bounds the whole call, so a server trickling bytes cannot keep
            # us past the request's timeout.
            async with asyncio.timeout(request.timeout):
                response = await self._client.send(http_request, auth=auth)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FunctionTimeoutError(
                f"{url} did not answer within {request.timeout:g}s", function=function
            ) from exc
        except httpx.ConnectError as exc:
            raise FunctionError(f"cannot connect to {url}: {exc}", function=function) from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise FunctionError(
                f"calling {url} failed: {type(exc).__name__}: {exc}", function=function
            ) from exc
        return FunctionResponse(
            status=response.status_code, body=response.content, headers=response.headers
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class GatewayClient(HttpClient):
    """Call functions through an OpenFaaS gateway: ``{gateway}/function/{name}``.

    The request's method, body, headers and query are sent as given, plus
    ``X-Faas-Flow-Reqid`` when the request has an id. URL requests (``is_url``) go to
    their URL directly. The gateway is the fallback of the registry, so :meth:`knows`
    is true for every name.

    A function the gateway cannot resolve (503 "No endpoints available for: NAME.")
    raises :class:`FunctionNotFoundError`; any other status, 404 included, is the
    function's own answer and is returned.

    Args:
        base_url: the gateway, e.g. ``http://127.0.0.1:8080``; without a scheme
            (``gateway.openfaas:8080``, as faas-flow's ``gateway`` variable is usually
            written) ``http://`` is assumed. A path prefix is kept.
        client: a shared ``httpx.AsyncClient`` (the caller then owns and closes it).
        basic_auth: ``(user, password)`` sent to the gateway only, never to the URLs of
            ``request(url)`` operations, which may belong to anyone.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = normalise_gateway_url(base_url)
        self._auth = httpx.BasicAuth(*basic_auth) if basic_auth is not None else None
        super().__init__(client=client)

    def __repr__(self) -> str:
        return f"GatewayClient({self.base_url!r})"

    def knows(self, name: str) -> bool:
        return True

    def function_url(self, name: str) -> str:
        """The gateway URL of function ``name`` (``/`` in a name selects a sub-path)."""
        return f"{self.base_url}/function/{quote(name)}"

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        if request.is_url:
            return await self._send(request, request.target, request.target, auth=None)
        name = request.target
        url = self.function_url(name)
        response = await self._send(request, url, name, auth=self._auth)
        if response.status == _NO_ENDPOINTS_STATUS and response.body.lstrip().startswith(
            _NO_ENDPOINTS_PREFIX
        ):
            detail = response.body.decode("utf-8", "replace").strip()
            raise FunctionNotFoundError(
                f"function {name!r} is not deployed on the gateway {self.base_url}: {detail}",
                function=name,
                status=response.status,
                body=response.body,
            )
        return response
