"""Stores from URLs: the scheme picks the backend, the backend reads the rest.

State: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
``redis://host:port/db?namespace=ns:`` (``rediss://`` for TLS),
``etcd://host:port/prefix`` (``etcds://`` for TLS),
``postgresql://user@host:port/db?table_prefix=…``. Data: the same (but etcd), plus
``s3://bucket/prefix?endpoint=…`` and ``file:///abs/folder``.

Each backend parses its own URL (host, path and options) in its store classes'
``from_url``, which names a bad option in its :class:`~faasflow.errors.ConfigurationError`
and masks passwords; this module only dispatches on the scheme. A backend is one line in
:data:`_STATE_STORES` / :data:`_DATA_STORES`, imported when a URL names it, so an unused
backend (and its client library) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from faasflow.errors import ConfigurationError
from faasflow.stores._urls import redact_url
from faasflow.stores.base import DataStore, StateStore

__all__ = ["data_store_from_url", "state_store_from_url"]


class _Backend(NamedTuple):
    """Where a scheme's store class lives, and the extra that installs its client."""

    module: str
    store: str
    extra: str | None = None

    def from_url(self, url: str) -> Any:
        """The store class's ``from_url(url)``, imported now."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if self.extra is None:
                raise
            raise ConfigurationError(
                f"this store needs the {exc.name} package: pip install 'faasflow[{self.extra}]'"
            ) from exc
        return getattr(module, self.store).from_url(url)


_MEMORY = "faasflow.stores.memory"
_SQLITE = "faasflow.stores.sqlite"
_REDIS = "faasflow.stores.redis"
_ETCD = "faasflow.stores.etcd"
_POSTGRES = "faasflow.stores.postgres"

_STATE_STORES: dict[str, _Backend] = {
    "memory": _Backend(_MEMORY, "MemoryStateStore"),
    "sqlite": _Backend(_SQLITE, "SqliteStateStore"),
    "redis": _Backend(_REDIS, "RedisStateStore"),
    "rediss": _Backend(_REDIS, "RedisStateStore"),
    "etcd": _Backend(_ETCD, "EtcdStateStore"),
    "etcds": _Backend(_ETCD, "EtcdStateStore"),
    "postgresql": _Backend(_POSTGRES, "PostgresStateStore", "postgres"),
    "postgres": _Backend(_POSTGRES, "PostgresStateStore", "postgres"),
}

_DATA_STORES: dict[str, _Backend] = {
    "memory": _Backend(_MEMORY, "MemoryDataStore"),
    "sqlite": _Backend(_SQLITE, "SqliteDataStore"),
    "redis": _Backend(_REDIS, "RedisDataStore"),
    "rediss": _Backend(_REDIS, "RedisDataStore"),
    "postgresql": _Backend(_POSTGRES, "PostgresDataStore", "postgres"),
    "postgres": _Backend(_POSTGRES, "PostgresDataStore", "postgres"),
    "s3": _Backend("faasflow.stores.s3", "S3DataStore", "s3"),
    "file": _Backend("faasflow.stores.filesystem", "FileDataStore"),
}


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep and url[:5].lower() == "file:":
        return "file"  # file:relative/folder has no "//"
    return scheme.lower() if sep else ""


def _backend(url: str, kind: str, known: dict[str, _Backend]) -> _Backend:
    backend = known.get(_scheme(url))
    if backend is None:
        schemes = ", ".join(f"{scheme}://" for scheme in sorted(known))
        raise ConfigurationError(
            f"{kind} store URL {redact_url(url)!r}: unsupported scheme; use one of {schemes}"
        )
    return backend


def state_store_from_url(url: str) -> StateStore:
    """The :class:`StateStore` a URL names, not yet opened.

    Raises:
        ConfigurationError: the scheme is not supported or the URL is malformed.
    """
    store: StateStore = _backend(url, "state", _STATE_STORES).from_url(url)
    return store


def data_store_from_url(url: str) -> DataStore:
    """The :class:`DataStore` a URL names, not yet opened.

    Raises:
        ConfigurationError: the scheme is not supported or the URL is malformed.
    """
    store: DataStore = _backend(url, "data", _DATA_STORES).from_url(url)
    return store
