"""Parsing of ``postgresql://`` store URLs: our options, asyncpg's and libpq's.

``postgresql://user:password@host:port/dbname?table_prefix=faasflow_&pool_max=10``
(``postgres://`` too). Our options are ``table_prefix``, ``schema``, ``pool_min``,
``pool_max`` and ``purge_interval``; asyncpg's own DSN options (``sslmode``,
``sslrootcert``, ``target_session_attrs``, ``passfile``, …) stay in the DSN handed to
asyncpg; of libpq's other options ``connect_timeout``, ``application_name`` and
``options`` (``-c name=value`` server settings) are translated. Any other option is a
:class:`~faasflow.errors.ConfigurationError` naming it, rather than a surprise at
connect time (asyncpg would send unknown ones to the server as settings).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faasflow.errors import ConfigurationError

__all__ = ["parse_url"]

# DSN options asyncpg reads itself (see asyncpg.connect_utils).
_ASYNCPG_OPTIONS: Final = frozenset({
    "host", "port", "dbname", "database", "user", "password", "passfile", "service",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
    "krbsrvname", "gsslib",
})
_OWN_OPTIONS: Final = ("pool_max", "pool_min", "purge_interval", "schema", "table_prefix")
_LIBPQ_OPTIONS: Final = ("application_name", "connect_timeout", "options")
_CHOICES: Final = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any", "primary", "standby", "prefer-standby", "read-write", "read-only"
    ),
}


def _split_options(text: str) -> list[str]:
    """libpq's ``options``: words split on spaces, a backslash escapes the next character."""
    words: list[str] = []
    word: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            word.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if word:
                words.append("".join(word))
            word = []
        else:
            word.append(char)
    if word:
        words.append("".join(word))
    return words


def _server_options(text: str) -> dict[str, str]:
    """The server settings in libpq's ``options`` (``-c name=value`` or ``--name=value``)."""
    settings: dict[str, str] = {}
    words = iter(_split_options(text))
    for word in words:
        if word == "-c":
            word = "-c" + next(words, "")
        if not word.startswith(("-c", "--")):
            raise ConfigurationError(
                f"options={text!r}: only '-c name=value' server settings are supported"
            )
        name, sep, value = word[2:].partition("=")
        if not sep or not name:
            raise ConfigurationError(f"options={text!r}: {word!r} is not name=value")
        settings[name.replace("-", "_")] = value
    return settings


def _number(name: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ConfigurationError(f"{name}={value!r} is not {what}") from None


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The asyncpg DSN and the store's keyword arguments of a PostgreSQL URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError("the scheme must be postgresql:// or postgres://")
    if parts.fragment:
        raise ConfigurationError("unexpected '#' fragment")
    hostspec = parts.netloc.rpartition("@")[2]
    if "," not in hostspec:  # asyncpg reads "h1:p1,h2:p2" itself
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ConfigurationError("the port must be a number from 0 to 65535") from None
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigurationError("malformed query string") from None
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    settings: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise ConfigurationError(f"option {name!r} is given twice")
        seen.add(name)
        if name in ("table_prefix", "schema"):
            options[name] = value
        elif name in ("pool_min", "pool_max"):
            options[name] = _number(name, value, int)
        elif name in ("purge_interval", "connect_timeout"):
            options[name] = _number(name, value, float)
        elif name == "application_name":
            settings[name] = value
        elif name == "options":
            settings.update(_server_options(value))
        elif name in _ASYNCPG_OPTIONS:
            choices = _CHOICES.get(name)
            if choices is not None and value not in choices:
                raise ConfigurationError(f"{name}={value!r}, expected one of {', '.join(choices)}")
            kept.append((name, value))
        else:
            known = ", ".join(sorted((*_OWN_OPTIONS, *_LIBPQ_OPTIONS, *_ASYNCPG_OPTIONS)))
            raise ConfigurationError(f"unknown option {name!r} (known: {known})")
    if settings:
        options["server_settings"] = settings
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
    return dsn, options
