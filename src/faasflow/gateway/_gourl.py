"""Which ``X-Callback-Url`` values the real gateway refuses: Go's ``net/url.Parse``.

The gateway answers 400 to an async call whose ``X-Callback-Url`` Go's ``url.Parse``
cannot parse, with the error text as the body. ``url.Parse`` is lenient (``not a url``
parses, as a relative path, and only fails later when the callback is posted), so a
stricter check here would refuse calls the real gateway accepts. This module repeats
its checks, in its order, with its messages.
"""

from __future__ import annotations

import string

from faasflow.gateway.wire import go_quote

_HEX = frozenset(string.hexdigits)
_ALNUM = frozenset(string.ascii_letters + string.digits)
# Characters Go lets through unescaped in a host (shouldEscape with encodeHost).
_HOST_OK = _ALNUM | frozenset("-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_OK = _ALNUM | frozenset("-._:~!$&'()*+,;=%@")


class GoURLError(ValueError):
    """The value Go's ``url.Parse`` refuses; ``str()`` is Go's message."""


def check_url(raw: str) -> None:
    """Raise :class:`GoURLError` when Go's ``url.Parse(raw)`` returns an error.

    Args:
        raw: the header value, decoded as Latin-1 (or UTF-8 with surrogateescape).
    """
    without_fragment, hash_sign, fragment = raw.partition("#")
    reason = _parse(without_fragment)
    shown = without_fragment
    if reason is None and hash_sign and fragment:
        reason = _unescape(fragment, host=False)
        shown = raw
    if reason is not None:
        raise GoURLError(f"parse {go_quote(shown)}: {reason}")


def _parse(raw: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "net/url: invalid control character in URL"
    if raw == "*":
        return None
    scheme, rest, error = _scheme(raw)
    if error:
        return error
    # The query is kept raw, never checked.
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return None  # an opaque URL (mailto:x): nothing more is checked
        if ":" in rest.partition("/")[0]:
            return "first path segment in URL cannot contain colon"
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        reason = _authority(authority)
        if reason:
            return reason
    return _unescape(rest, host=False)


def _scheme(raw: str) -> tuple[str, str, str | None]:
    for i, char in enumerate(raw):
        if char.isascii() and char.isalpha():
            continue
        if char.isascii() and (char.isdigit() or char in "+-."):
            if i == 0:
                return "", raw, None
            continue
        if char == ":":
            if i == 0:
                return "", "", "missing protocol scheme"
            return raw[:i], raw[i + 1 :], None
        return "", raw, None
    return "", raw, None


def _authority(authority: str) -> str | None:
    userinfo, at, host = authority.rpartition("@")
    reason = _host(host)
    if reason or not at:
        return reason
    if any(c not in _USERINFO_OK for c in userinfo):
        return "net/url: invalid userinfo"
    return _unescape(userinfo, host=False)


def _host(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if port and (port[0] != ":" or not all(c in string.digits for c in port[1:])):
        return f"invalid port {go_quote(port)} after host"
    return _unescape(host, host=True)


def _unescape(text: str, *, host: bool) -> str | None:
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                return f"invalid URL escape {go_quote(escape)}"
            # In a host, %-escapes may only stand for non-ASCII bytes (RFC 3986), or
            # be %25 (RFC 6874, IPv6 zones).
            if host and int(escape[1], 16) < 8 and escape != "%25":
                return f"invalid URL escape {go_quote(escape)}"
            i += 3
            continue
        if host and ord(char) < 0x80 and char not in _HOST_OK:
            return f"invalid character {go_quote(char)} in host name"
        i += 1
    return None
