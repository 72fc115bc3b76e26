"""HMAC-SHA256 over whole hops, and over new request bodies.

A hop travels as its canonical JSON (sorted keys) with the header
``X-Faas-Flow-Signature: sha256=<hex>`` computed over exactly those bytes, so every field
— request id, node path, branch keys, data references, query, timestamp, trace — is
covered. Comparison is constant-time. A hop older than the configured age (or from the
future beyond a small clock skew) is stale.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from faasflow.wire.hop import Hop

SIGNATURE_HEADER = "X-Faas-Flow-Signature"
HUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
CLOCK_SKEW = 60.0


class SignatureError(Exception):
    """The body is unsigned, badly signed, malformed or stale (HTTP 401)."""


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>`` of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str | None) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``body``'s."""
    if not signature:
        raise SignatureError("missing signature")
    if not signature.startswith("sha256="):
        raise SignatureError("signature must be sha256=<hex>")
    # Bytes, not text: compare_digest refuses str with non-ASCII characters, and a
    # header may carry any byte (Starlette decodes it as latin-1).
    given = signature.strip().encode("latin-1", "replace")
    if not hmac.compare_digest(sign(secret, body).encode(), given):
        raise SignatureError("bad signature")


def signed_hop(secret: bytes, hop: Hop) -> tuple[bytes, str]:
    """The body and signature header value to send ``hop`` with."""
    body = hop.json.encode()
    return body, sign(secret, body)


def open_hop(secret: bytes, body: bytes, signature: str | None, max_age: float) -> Hop:
    """Verify and decode a received hop.

    Raises:
        SignatureError: unsigned, tampered, malformed or stale.
    """
    verify(secret, body, signature)
    try:
        hop = Hop.from_json(body)
    except ValueError as exc:
        raise SignatureError(str(exc)) from exc
    if hop.json.encode() != body:
        # Only canonical JSON is signed by faasflow; anything else was made by hand.
        raise SignatureError("hop is not in canonical form")
    age = time.time() - hop.sent_at
    if age > max_age or age < -CLOCK_SKEW:
        raise SignatureError(f"stale hop (sent {age:.0f}s ago)")
    return hop
