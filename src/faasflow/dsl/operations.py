"""The operations a node runs in order: each output is the next one's input."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faasflow.dsl.options import Retry

if TYPE_CHECKING:
    from faasflow.errors import FunctionError
    from faasflow.functions.base import FunctionRequest, FunctionResponse

Modifier = Callable[[bytes], Any]
"""``fn(data: bytes) -> bytes`` (``str`` is encoded UTF-8), ``def`` or ``async def``."""

FailureHandler = Callable[["FunctionError"], Any]
"""``fn(error) -> bytes | None``: bytes become the call's result; ``None`` re-raises."""

ResponseHandler = Callable[["FunctionResponse"], Any]
"""``fn(response) -> bytes``: replaces the 2xx check and the body read."""

RequestHandler = Callable[["FunctionRequest"], Any]
"""``fn(request) -> None``: may change the outgoing request in place."""


@dataclass(frozen=True)
class CallOptions:
    """What ``apply`` and ``request`` accept besides the target."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Sequence[tuple[str, str]] = ()
    method: str = "POST"
    timeout: float | None = None
    retry: Retry | None = None
    on_failure: FailureHandler | None = None
    on_response: ResponseHandler | None = None
    request_handler: RequestHandler | None = None


@dataclass(frozen=True)
class Apply:
    """Call the FaaS function ``function`` by name."""

    function: str
    options: CallOptions

    @property
    def label(self) -> str:
        return self.function


@dataclass(frozen=True)
class Request:
    """Call an HTTP URL."""

    url: str
    options: CallOptions

    @property
    def label(self) -> str:
        return self.url


@dataclass(frozen=True)
class Modify:
    """Transform the data with an inline callable."""

    fn: Modifier

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", "modifier")


Operation = Apply | Request | Modify


def normalise_query(query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple[
    tuple[str, str], ...
]:
    """Query options as ordered ``(name, value)`` pairs; list values repeat the name."""
    if not query:
        return ()
    items = query.items() if isinstance(query, Mapping) else query
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if isinstance(value, list | tuple):
            pairs.extend((str(name), str(v)) for v in value)
        else:
            pairs.append((str(name), str(value)))
    return tuple(pairs)
