"""The etcd store's URL: ``etcd://[user:password@]host[:port][,host2…]/prefix?options``."""

from __future__ import annotations

import math
import os
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from faasflow.errors import ConfigurationError
from faasflow.stores._urls import redact_url

__all__ = ["parse_url"]

_DEFAULT_PORT: Final = 2379
_OPTIONS: Final = ("cacert", "cert", "key", "max_request_bytes", "timeout")
_SMALLEST_REQUEST: Final = 1024
"""``max_request_bytes`` must leave room for more than a transaction's framing."""


def parse_url(url: str) -> tuple[list[str], dict[str, Any]]:
    """The endpoints an ``etcd://`` (``etcds://``) URL names, and the store's other
    arguments (``prefix``, credentials, TLS files, ``timeout``, ``max_request_bytes``).

    Raises:
        ConfigurationError: the URL is malformed; the message names the option and masks
            the password.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"etcd store URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("etcd", "etcds"):
        raise ConfigurationError(f"etcd store URL {shown!r}: the scheme must be etcd or etcds")
    if parts.fragment:
        raise ConfigurationError(f"etcd store URL {shown!r}: unexpected '#' fragment")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at and "@" in parts.path:
        raise ConfigurationError(
            f"etcd store URL {shown!r}: percent-encode the credentials ('/' is %2F) and "
            "an '@' in the prefix (%40); an unencoded '/' ends the host part early"
        )
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if not user or not colon:
            raise ConfigurationError(
                f"etcd store URL {shown!r}: etcd authentication needs user:password@"
            )
        username, password = unquote(user), unquote(secret)
    endpoints = [
        _endpoint(host, "https" if scheme == "etcds" else "http", shown)
        for host in hosts.split(",")
    ]
    prefix = unquote(parts.path[1:]) or "faasflow/"
    if not prefix.endswith("/"):
        prefix += "/"
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "timeout":
            try:
                options["timeout"] = float(value)
            except ValueError:
                options["timeout"] = math.nan
            if not 0 < options["timeout"] < math.inf:
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: timeout={value!r} is not a positive "
                    "number of seconds"
                )
        elif name == "max_request_bytes":
            if not value.isdigit() or int(value) <= _SMALLEST_REQUEST:
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: max_request_bytes={value!r} is not a "
                    f"number of bytes above {_SMALLEST_REQUEST}"
                )
            options["max_request_bytes"] = int(value)
        elif name in ("cacert", "cert", "key"):
            if scheme != "etcds":
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: option {name!r} needs etcds:// (TLS)"
                )
            if not os.path.isfile(value):
                raise ConfigurationError(
                    f"etcd store URL {shown!r}: {name}={value!r} is not a readable file"
                )
            options[{"cacert": "ca_file", "cert": "cert_file", "key": "key_file"}[name]] = value
        else:
            raise ConfigurationError(
                f"etcd store URL {shown!r}: unknown option {name!r} "
                f"(known: {', '.join(_OPTIONS)})"
            )
    if ("cert_file" in options) != ("key_file" in options):
        raise ConfigurationError(f"etcd store URL {shown!r}: cert= and key= go together")
    options.update(prefix=prefix, username=username, password=password)
    return endpoints, options


def _endpoint(host: str, scheme: str, shown: str) -> str:
    """``http(s)://host:port`` of one ``host[:port]`` of an etcd URL."""
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(f"etcd store URL {shown!r}: bad host:port {host!r}") from None
    hostname = parts.hostname
    if not hostname or parts.path or parts.username is not None:
        raise ConfigurationError(f"etcd store URL {shown!r}: bad host:port {host!r}")
    if ":" in hostname:  # IPv6
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{port}"
