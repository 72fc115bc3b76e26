"""What the real gateway's Go code puts on the wire, reproduced byte for byte.

The OpenFaaS gateway and its providers are Go ``net/http`` servers; clients (faas-cli,
faas-flow, our own flow server) see Go's habits: canonical header names
(``X-Call-Id``), ``http.Error`` bodies with a trailing newline and
``X-Content-Type-Options: nosniff``, compact JSON with ``<>&`` escaped, RFC 3339 times
with nanoseconds. The helpers here produce those, so that the rest of the package can
say *what* it answers and leave *how it looks* to one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from starlette.responses import Response

Header = tuple[str, str]
"""One header line: name and value, as text (Latin-1 round-trips any byte)."""

# Hop-by-hop headers: the gateway deletes these before forwarding a request (the list
# of Go's httputil.ReverseProxy, copied into gateway/handlers/forwarding_proxy.go).
HOP_HEADERS = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Headers Go's server or client keep out of ``Request.Header`` (Host) or recompute from
# the body (Content-Length), and ``Expect``, which Go's server answers itself: never
# copied from one message to another.
FRAMING_HEADERS = frozenset({"host", "content-length", "expect"})

NOT_COPIED = HOP_HEADERS | FRAMING_HEADERS
"""Headers never copied from an incoming message into an outgoing one."""

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def canonical_header(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-call-id`` → ``X-Call-Id``.

    A name with characters outside the HTTP token set is returned unchanged, as Go does.
    """
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_values(headers: Iterable[Header], name: str) -> list[str]:
    """Every value of ``name`` (case-insensitive), in order."""
    wanted = name.lower()
    return [v for k, v in headers if k.lower() == wanted]


def first_header(headers: Iterable[Header], name: str) -> str:
    """Go's ``Header.Get``: the first value of ``name``, or ``""``."""
    values = header_values(headers, name)
    return values[0] if values else ""


def without(headers: Iterable[Header], names: Iterable[str]) -> list[Header]:
    """``headers`` minus every line whose name is in ``names`` (case-insensitive)."""
    dropped = {n.lower() for n in names}
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def set_header(headers: list[Header], name: str, value: str) -> None:
    """Go's ``Header.Set``: replace every ``name`` line with one."""
    headers[:] = without(headers, [name])
    headers.append((canonical_header(name), value))


def overlay(base: Sequence[Header], top: Sequence[Header]) -> list[Header]:
    """Go's ``copyHeaders(dst, src)``: every name in ``top`` replaces that name in ``base``."""
    return [*without(base, {k for k, _ in top}), *top]


def copyable(headers: Iterable[Header]) -> list[Header]:
    """The lines of ``headers`` that may be copied into another message, names canonical."""
    return [(canonical_header(k), v) for k, v in headers if k.lower() not in NOT_COPIED]


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[Header]:
    """ASGI header pairs as text; Latin-1 keeps every byte."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def encode_headers(headers: Iterable[Header]) -> list[tuple[bytes, bytes]]:
    """Text header pairs as ASGI bytes."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def response(
    status: int, body: bytes = b"", headers: Sequence[Header] = (), *, length: bool = True
) -> Response:
    """A response with exactly ``headers`` (plus ``Content-Length`` when ``length``)."""
    result = Response(content=body, status_code=status)
    lines = list(headers)
    if length and not header_values(lines, "content-length"):
        lines.append(("Content-Length", str(len(body))))
    result.raw_headers = encode_headers(lines)
    return result


def http_error(status: int, message: str, headers: Sequence[Header] = ()) -> Response:
    """Go's ``http.Error``: the message and a newline, as plain text, not sniffable."""
    lines = overlay(
        headers,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
    return response(status, (message + "\n").encode("utf-8"), lines)


def body_too_large(limit: int, headers: Sequence[Header] = ()) -> Response:
    """413 for a body over the gateway's ``max_body_size`` (nothing was done with it)."""
    return http_error(413, f"request body larger than {limit} bytes (--max-body-size)", headers)


def not_found() -> Response:
    """gorilla/mux's answer for a path no route matches."""
    return http_error(404, "404 page not found")


def method_not_allowed() -> Response:
    """gorilla/mux's answer for a matched path with another method: 405, no body."""
    return response(405)


def go_json(value: Any) -> bytes:
    """Go's ``json.Marshal``: compact, UTF-8, with ``<``, ``>``, ``&``, U+2028/9 escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # These characters can only occur inside JSON strings, so replacing them is safe.
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def json_response(value: Any, status: int = 200, headers: Sequence[Header] = ()) -> Response:
    """``value`` as Go's handlers send JSON: ``application/json``, no trailing newline."""
    return response(status, go_json(value), [*headers, ("Content-Type", "application/json")])


def go_time(moment: datetime) -> str:
    """Go's ``time.Time`` in JSON (RFC 3339, nanoseconds without trailing zeros), UTC."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def http_date() -> str:
    """The ``Date`` header value for now, as Go's server writes it."""
    return formatdate(usegmt=True)


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` for the strings that appear in error messages."""
    out = ['"']
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}  # fmt: skip
    for char in text:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)
