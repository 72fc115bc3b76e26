"""Stores from URLs.

State: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
``redis://host:port/db?namespace=ns:`` (``rediss://`` for TLS),
``etcd://host:port/prefix`` (``etcds://`` for TLS),
``postgresql://user@host:port/db?table_prefix=…``. Data: the same (but etcd), plus
``s3://bucket/prefix?endpoint=…`` and ``file:///abs/folder``. Each backend module parses
its own URL in a ``from_url`` class method.

SQLite URLs read as SQLAlchemy's do: the path is everything after ``sqlite:///``, so
``sqlite:///x.db`` is the relative path ``x.db``, ``sqlite:////tmp/x.db`` the absolute
path ``/tmp/x.db``, and ``sqlite://`` alone (or ``sqlite:///:memory:``) a private
in-memory database. The path is percent-decoded. Query parameters set the options:
``?synchronous=FULL``, ``?busy_timeout=10`` (seconds).

A backend is one line in :data:`_STATE_STORES` / :data:`_DATA_STORES`: a factory taking
the URL; it imports its client library itself, so an unused backend costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from faasflow.errors import ConfigurationError
from faasflow.stores._urls import redact_url
from faasflow.stores.base import DataStore, StateStore

__all__ = ["data_store_from_url", "state_store_from_url"]


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep and url[:5].lower() == "file:":
        return "file"  # file:relative/folder has no "//"
    return scheme.lower() if sep else ""


def _memory_state(url: str) -> StateStore:
    from faasflow.stores.memory import MemoryStateStore

    _check_memory(url)
    return MemoryStateStore()


def _memory_data(url: str) -> DataStore:
    from faasflow.stores.memory import MemoryDataStore

    _check_memory(url)
    return MemoryDataStore()


def _check_memory(url: str) -> None:
    if url.partition("://")[2]:
        raise ConfigurationError(f"store URL {url!r}: memory:// takes no host, path or options")


def _sqlite_options(url: str) -> tuple[str, dict[str, Any]]:
    """The database path and keyword options of an ``sqlite://`` URL."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"store URL {url!r}: an SQLite URL has no host; "
            "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if parts.fragment:
        raise ConfigurationError(f"store URL {url!r}: unexpected '#' fragment")
    path = unquote(parts.path[1:]) if parts.path else ""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name == "synchronous":
            if value.upper() not in ("NORMAL", "FULL"):
                raise ConfigurationError(
                    f"store URL {url!r}: synchronous={value!r}, expected NORMAL or FULL"
                )
            options[name] = value.upper()
        elif name == "busy_timeout":
            try:
                options[name] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"store URL {url!r}: busy_timeout={value!r} is not a number of seconds"
                ) from None
        else:
            raise ConfigurationError(
                f"store URL {url!r}: unknown option {name!r} (known: busy_timeout, synchronous)"
            )
    return path or ":memory:", options


def _sqlite_state(url: str) -> StateStore:
    from faasflow.stores.sqlite import SqliteStateStore

    path, options = _sqlite_options(url)
    return SqliteStateStore(path, **options)


def _sqlite_data(url: str) -> DataStore:
    from faasflow.stores.sqlite import SqliteDataStore

    path, options = _sqlite_options(url)
    return SqliteDataStore(path, **options)


_REDIS_SECONDS = ("socket_timeout", "socket_connect_timeout")


def _redis_options(url: str) -> tuple[str, str]:
    """The connection URL (without our options) and the key namespace of a Redis URL."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"database {db!r} is not a number")
    except ValueError as exc:
        raise ConfigurationError(f"store URL {redact_url(url)!r}: {exc}") from None
    namespace = "faasflow:"
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "namespace":
            namespace = value
        elif name in _REDIS_SECONDS:
            try:
                float(value)
            except ValueError:
                raise ConfigurationError(
                    f"store URL {redact_url(url)!r}: {name}={value!r} is not a number of seconds"
                ) from None
            passed.append((name, value))
        else:
            known = ", ".join(("namespace", *_REDIS_SECONDS))
            raise ConfigurationError(
                f"store URL {redact_url(url)!r}: unknown option {name!r} (known: {known})"
            )
    return urlunsplit(parts._replace(query=urlencode(passed))), namespace


def _redis_state(url: str) -> StateStore:
    from faasflow.stores.redis import RedisStateStore

    connection, namespace = _redis_options(url)
    return RedisStateStore(connection, namespace=namespace)


def _redis_data(url: str) -> DataStore:
    from faasflow.stores.redis import RedisDataStore

    connection, namespace = _redis_options(url)
    return RedisDataStore(connection, namespace=namespace)


def _etcd_state(url: str) -> StateStore:
    from faasflow.stores.etcd import EtcdStateStore

    return EtcdStateStore.from_url(url)


def _backend(module: str, extra: str) -> Any:
    """Import a backend module whose client library is an extra, or say which to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"this store needs the {exc.name} package: pip install 'faasflow[{extra}]'"
        ) from exc


def _postgres_state(url: str) -> StateStore:
    postgres = _backend("faasflow.stores.postgres", "postgres")
    store: StateStore = postgres.PostgresStateStore.from_url(url)
    return store


def _postgres_data(url: str) -> DataStore:
    postgres = _backend("faasflow.stores.postgres", "postgres")
    store: DataStore = postgres.PostgresDataStore.from_url(url)
    return store


def _s3_data(url: str) -> DataStore:
    store: DataStore = _backend("faasflow.stores.s3", "s3").S3DataStore.from_url(url)
    return store


def _file_data(url: str) -> DataStore:
    from faasflow.stores.filesystem import FileDataStore

    return FileDataStore.from_url(url)


_STATE_STORES: dict[str, Callable[[str], StateStore]] = {
    "memory": _memory_state,
    "sqlite": _sqlite_state,
    "redis": _redis_state,
    "rediss": _redis_state,
    "etcd": _etcd_state,
    "etcds": _etcd_state,
    "postgresql": _postgres_state,
    "postgres": _postgres_state,
}

_DATA_STORES: dict[str, Callable[[str], DataStore]] = {
    "memory": _memory_data,
    "sqlite": _sqlite_data,
    "redis": _redis_data,
    "rediss": _redis_data,
    "postgresql": _postgres_data,
    "postgres": _postgres_data,
    "s3": _s3_data,
    "file": _file_data,
}


def _unknown(url: str, kind: str, known: dict[str, Any]) -> ConfigurationError:
    schemes = ", ".join(f"{scheme}://" for scheme in sorted(known))
    return ConfigurationError(
        f"{kind} store URL {redact_url(url)!r}: unsupported scheme; use one of {schemes}"
    )


def state_store_from_url(url: str) -> StateStore:
    """The :class:`StateStore` a URL names, not yet opened.

    Raises:
        ConfigurationError: the scheme is not supported or the URL is malformed.
    """
    factory = _STATE_STORES.get(_scheme(url))
    if factory is None:
        raise _unknown(url, "state", _STATE_STORES)
    return factory(url)


def data_store_from_url(url: str) -> DataStore:
    """The :class:`DataStore` a URL names, not yet opened.

    Raises:
        ConfigurationError: the scheme is not supported or the URL is malformed.
    """
    factory = _DATA_STORES.get(_scheme(url))
    if factory is None:
        raise _unknown(url, "data", _DATA_STORES)
    return factory(url)
