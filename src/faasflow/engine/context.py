"""The request context that ``define(flow, context)`` and its callables see."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs

from faasflow.engine import _keys as keys
from faasflow.errors import FaasFlowError
from faasflow.stores.base import DataStore

T = TypeVar("T")

current_node: contextvars.ContextVar[str] = contextvars.ContextVar(
    "faasflow_current_node", default=""
)

_BYTES, _JSON = b"b", b"j"


def encode_value(value: Any) -> bytes:
    """Context values: bytes as they are, anything else as JSON (clear error if not JSON-able)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _BYTES + bytes(value)
    try:
        return _JSON + json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise FaasFlowError(
            f"context values must be bytes or JSON-able; got {type(value).__name__}: {exc}"
        ) from exc


def decode_value(raw: bytes) -> Any:
    if raw[:1] == _BYTES:
        return raw[1:]
    return json.loads(raw[1:])


class Context:
    """What a request is and where it stands, plus per-request data shared by its nodes.

    Attributes:
        request_id: the request's id.
        flow_name: the flow's name.
        query: the request's query parameters (name → list of values).
        query_string: the raw query string.
    """

    def __init__(
        self,
        *,
        request_id: str,
        flow_name: str,
        query_string: str = "",
        data_store: DataStore | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.request_id = request_id
        self.flow_name = flow_name
        self.query_string = query_string
        self.query: dict[str, list[str]] = parse_qs(query_string, keep_blank_values=True)
        self._data = data_store
        self._loop = loop
        self._state = "ongoing"

    def __repr__(self) -> str:
        return f"<Context request={self.request_id!r} flow={self.flow_name!r}>"

    @property
    def node(self) -> str:
        """The path of the node running now (``""`` outside a node)."""
        return current_node.get()

    @property
    def state(self) -> str:
        """``"ongoing"`` while the request runs, then ``"success"`` or ``"failure"``."""
        return self._state

    def ended(self, state: str) -> None:
        """Record how the request ended (``"success"`` or ``"failure"``): the engine
        calls this before the end hooks run."""
        self._state = state

    def query_value(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    # -- per-request data ---------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (bytes or JSON-able) under ``key`` for the rest of the request."""
        self._run(self.aset(key, value))

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self._run(self.aget(key, default))

    def delete(self, key: str) -> None:
        """Forget ``key``; absent keys are fine."""
        self._run(self.adelete(key))

    async def aset(self, key: str, value: Any) -> None:
        """:meth:`set` for ``async def`` callables."""
        await self._store().put(
            keys.context_value(self.request_id, _check_key(key)), encode_value(value)
        )

    async def aget(self, key: str, default: Any = None) -> Any:
        """:meth:`get` for ``async def`` callables."""
        raw = await self._store().get(keys.context_value(self.request_id, _check_key(key)))
        return default if raw is None else decode_value(raw)

    async def adelete(self, key: str) -> None:
        """:meth:`delete` for ``async def`` callables."""
        await self._store().delete(keys.context_value(self.request_id, _check_key(key)))

    def _store(self) -> DataStore:
        if self._data is None:
            raise FaasFlowError("context data is only available while a request runs")
        return self._data

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        # Sync callables run on worker threads: hand the store call to the engine's loop.
        loop = self._loop
        if loop is None or self._data is None:
            coro.close()
            raise FaasFlowError("context data is only available while a request runs")
        if _on_loop_thread(loop):
            coro.close()
            raise FaasFlowError(
                "context.set/get/delete block, so they cannot run on the event loop: in an "
                "async def callable use await context.aset/aget/adelete"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise FaasFlowError(f"context keys must be non-empty strings, got {key!r}")
    return key


def as_bytes(value: Any, what: str) -> bytes:
    """Normalise what a user callable returned: bytes, or ``str`` encoded UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must return bytes (or str), got {type(value).__name__}")
