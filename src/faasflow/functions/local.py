"""Functions that are plain Python callables in this process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from faasflow.callables import call_user, origin, user_traceback
from faasflow.errors import FunctionError, FunctionNotFoundError
from faasflow.functions.base import FunctionInvoker, FunctionRequest, FunctionResponse

logger = logging.getLogger(__name__)

def to_bytes(name: str, value: object) -> bytes:
    """Normalise what a function returned to ``bytes``.

    ``str`` is encoded as UTF-8. ``bytearray`` and ``memoryview`` are accepted as well:
    they are bytes in all but name, and refusing them would only punish callables that
    build their output in a buffer.

    Raises:
        FunctionError: for any other type, naming the function and the type.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise FunctionError(
        f"function {name!r} returned {type(value).__name__}, expected bytes or str",
        function=name,
    )


class LocalFunctions(FunctionInvoker):
    """Serve functions that are local callables ``(data: bytes) -> bytes``.

    A callable may be ``def`` or ``async def``; it gets the request body as its only
    argument (headers, query and method are HTTP notions a local callable has no use
    for) and its result becomes a 200 response.

    Args:
        mapping: function name → callable. Copied, so later changes to the caller's
            mapping do not change what this invoker serves.

    Raises (from :meth:`invoke`):
        FunctionNotFoundError: the name is not in the mapping.
        FunctionError: the callable raised (the original exception is ``__cause__``) or
            returned something other than bytes/str.
    """

    def __init__(self, mapping: Mapping[str, Callable[..., Any]]) -> None:
        for name, fn in mapping.items():
            if not callable(fn):
                raise TypeError(f"function {name!r} is not callable: {fn!r}")
        self._functions: dict[str, Callable[..., Any]] = dict(mapping)

    @property
    def names(self) -> list[str]:
        """The function names served, sorted."""
        return sorted(self._functions)

    def knows(self, name: str) -> bool:
        return name in self._functions

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        name = request.target
        if request.is_url:
            raise FunctionError(f"local functions cannot call the URL {name!r}", function=name)
        fn = self._functions.get(name)
        if fn is None:
            raise FunctionNotFoundError(f"no local function {name!r}", function=name)
        try:
            result = await call_user(fn, request.body)
        except Exception as exc:
            where = origin(exc)
            # The traceback is for the developer (faasflow run -v shows it); the error,
            # which the request's record keeps, says where in one line.
            logger.info("function %r raised:\n%s", name, user_traceback(exc))
            raise FunctionError(
                f"function {name!r} raised {type(exc).__name__}: {exc}"
                + (f" (at {where})" if where else ""),
                function=name,
            ) from exc
        return FunctionResponse(status=200, body=to_bytes(name, result))
