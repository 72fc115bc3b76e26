"""What a function call is, whatever answers it.

An ``apply``/``request`` operation builds a :class:`FunctionRequest` (which its
``request_handler`` may change), hands it to a :class:`FunctionInvoker`, and gets a
:class:`FunctionResponse` back. The operation, not the invoker, decides what a status
means (``on_response`` replaces the 2xx check), retries, and enforces the timeout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from faasflow.resources import AsyncResource


@dataclass
class FunctionRequest:
    """An outgoing call. Mutable: ``request_handler`` callbacks may change any field.

    Attributes:
        target: the function name (``apply``) or the absolute URL (``request``).
        body: the bytes sent.
        method: HTTP method, ``POST`` by default.
        headers: header names keep the case given.
        query: ordered ``(name, value)`` pairs; invokers URL-encode them.
        timeout: seconds the call may take.
        is_url: ``True`` for ``request(url)``, ``False`` for ``apply(name)``.
        request_id: the faasflow request making the call (sent as ``X-Faas-Flow-Reqid``).
    """

    target: str
    body: bytes
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    timeout: float = 30.0
    is_url: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class FunctionResponse:
    """What a function answered."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class FunctionInvoker(AsyncResource, ABC):
    """Something that can answer a :class:`FunctionRequest`."""

    @abstractmethod
    def knows(self, name: str) -> bool:
        """Whether this invoker serves the function ``name`` (URLs are never asked)."""

    @abstractmethod
    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        """Make the call. Raises a :class:`faasflow.errors.FunctionError` subclass when
        the call cannot be made (not found, connection refused, timeout); a non-2xx
        answer is returned, not raised."""
