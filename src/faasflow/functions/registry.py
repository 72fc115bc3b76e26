"""Which invoker answers a call: local callables, then handler folders, then a gateway."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from faasflow.errors import FunctionNotFoundError
from faasflow.functions.base import FunctionInvoker, FunctionRequest, FunctionResponse
from faasflow.functions.folders import HandlerFolders
from faasflow.functions.gateway import GatewayClient, HttpClient
from faasflow.functions.local import LocalFunctions

_NAMES_SHOWN = 10  # enough to spot a typo, short enough to read


class FunctionRegistry(FunctionInvoker):
    """Route each call to the first invoker that serves it.

    A name goes to the first invoker whose ``knows(name)`` is true, so the order of
    ``invokers`` is the precedence. A URL (``request(url)``) goes to the first
    :class:`GatewayClient` (sharing its connection pool), or, when there is none, to an
    HTTP client the registry creates on first use and closes in :meth:`close`.

    Args:
        invokers: in order of precedence. The registry closes them in :meth:`close`.

    Raises (from :meth:`invoke`):
        FunctionNotFoundError: no invoker serves the name; the message says what was
            looked at and how to make the function known.
    """

    def __init__(self, invokers: Sequence[FunctionInvoker]) -> None:
        self.invokers: tuple[FunctionInvoker, ...] = tuple(invokers)
        self._url_client: HttpClient | None = next(
            (i for i in self.invokers if isinstance(i, GatewayClient)), None
        )
        self._owned_url_client: HttpClient | None = None

    @classmethod
    def build(
        cls,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        folders: Path | str | None = None,
        gateway: str | None = None,
        *,
        basic_auth: tuple[str, str] | None = None,
    ) -> FunctionRegistry:
        """A registry of what is given, in the precedence local → folder → gateway.

        Args:
            functions: name → local callable ``(data: bytes) -> bytes``.
            folders: a directory of ``python3-http`` handler folders.
            gateway: an OpenFaaS gateway URL (the scheme may be left out).
            basic_auth: gateway credentials, if its function routes need them.
        """
        invokers: list[FunctionInvoker] = []
        if functions:
            invokers.append(LocalFunctions(functions))
        if folders is not None:
            invokers.append(HandlerFolders(Path(folders)))
        if gateway:
            invokers.append(GatewayClient(gateway, basic_auth=basic_auth))
        return cls(invokers)

    def knows(self, name: str) -> bool:
        return any(invoker.knows(name) for invoker in self.invokers)

    def invoker_for(self, name: str) -> FunctionInvoker | None:
        """The invoker that would answer function ``name``, if any."""
        return next((i for i in self.invokers if i.knows(name)), None)

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        if request.is_url:
            return await self._http().invoke(request)
        invoker = self.invoker_for(request.target)
        if invoker is None:
            raise FunctionNotFoundError(self._not_found(request.target), function=request.target)
        return await invoker.invoke(request)

    def _http(self) -> HttpClient:
        if self._url_client is None:
            self._owned_url_client = self._url_client = HttpClient()
        return self._url_client

    def _not_found(self, name: str) -> str:
        looked: list[str] = []
        for invoker in self.invokers:
            if isinstance(invoker, LocalFunctions):
                names = invoker.names
                shown = ", ".join(names[:_NAMES_SHOWN]) + (
                    ", ..." if len(names) > _NAMES_SHOWN else ""
                )
                looked.append(f"local functions: {shown}")
            elif isinstance(invoker, HandlerFolders):
                looked.append(f"handler folders in {invoker.root}")
            else:
                looked.append(repr(invoker))
        where = "; ".join(looked) if looked else "nothing is configured"
        return (
            f"function {name!r} is not a local callable, a handler folder or a gateway "
            f"function (looked at: {where}). Make it known: on the command line with "
            f"--functions DIR (a folder holding {name}/handler.py) or --gateway URL (or "
            f"$FAASFLOW_GATEWAY); in Python with functions={{{name!r}: callable}}, "
            "functions_dir= or gateway=."
        )

    async def close(self) -> None:
        """Close every invoker, and the HTTP client the registry created.

        Every one is closed even if another fails; the first failure is then raised.
        """
        closers = [*self.invokers]
        if self._owned_url_client is not None:
            closers.append(self._owned_url_client)
            self._owned_url_client = self._url_client = None
        first: BaseException | None = None
        for invoker in closers:
            try:
                await invoker.close()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
