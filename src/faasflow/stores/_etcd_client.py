"""etcd v3's gRPC JSON gateway over httpx: the etcd store's client.

Why the gateway and not a client library: the Python ``etcd3`` client is unmaintained and
pins old ``grpcio``/``protobuf`` releases that clash with current ones, while the JSON
gateway (``POST /v3/kv/range``, ``/v3/kv/txn``, ``/v3/lease/grant``, …; keys and values
base64) is part of etcd itself, served on the client port by every etcd 3.4+, and needs
nothing beyond httpx, which faasflow already depends on. One call is one HTTP request
on a pooled keep-alive connection.

This module is the gateway's vocabulary and its transport: the operations and compares a
transaction is built from, the keys and transaction results it answers with
(:class:`Kv`, :class:`Txn`), and :class:`EtcdClient`, which sends them — failing over to
the next endpoint when a connection cannot be made, authenticating (again when a token
expires), over TLS when asked — and raises every failure as :class:`EtcdError`, a
:class:`~faasflow.errors.StoreError` naming the operation.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from faasflow.errors import ConfigurationError, StoreError
from faasflow.httpclient import new_client

__all__ = [
    "EtcdClient",
    "EtcdError",
    "Json",
    "Kv",
    "Txn",
    "absent",
    "b64",
    "exists",
    "key_range",
    "lease_is",
    "none_in",
    "prefix_end",
    "prefix_range",
    "put",
    "put_keeping_lease",
    "remove",
    "remove_prefix",
    "touch",
    "unchanged",
    "value_is",
]

Json = dict[str, Any]


def b64(data: bytes) -> str:
    """Bytes as the gateway takes keys and values."""
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """etcd's ``range_end`` for "every key starting with ``prefix``"."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # etcd's "to the end of the key space"
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(frozen=True, slots=True)
class Kv:
    """One key as a range returned it."""

    key: bytes
    value: bytes
    mod: int
    create: int
    lease: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Kv:
        """The key of one entry of a range reply's ``kvs``."""
        # The gateway omits fields that hold their default (empty value, lease 0).
        return cls(
            key=base64.b64decode(raw.get("key", "")),
            value=base64.b64decode(raw.get("value", "")),
            mod=int(raw.get("mod_revision", 0)),
            create=int(raw.get("create_revision", 0)),
            lease=int(raw.get("lease", 0)),
        )


# -- operations of a transaction --------------------------------------------------------


def key_range(
    key: bytes,
    end: bytes | None = None,
    *,
    keys_only: bool = False,
    count_only: bool = False,
    limit: int = 0,
) -> Json:
    """Read ``key``, or the keys in ``[key, end)`` (the first ``limit`` of them, if given).

    No sort order is ever asked for: etcd reads the whole range before it sorts, even in
    key order, so a limited range costs its limit only in etcd's own (ascending) order.
    """
    body: Json = {"key": b64(key)}
    if end is not None:
        body["range_end"] = b64(end)
    if keys_only:
        body["keys_only"] = True
    if count_only:
        body["count_only"] = True
    if limit:
        body["limit"] = limit
    return {"request_range": body}


def prefix_range(prefix: bytes, *, keys_only: bool = False, count_only: bool = False) -> Json:
    """Read every key starting with ``prefix``."""
    return key_range(prefix, prefix_end(prefix), keys_only=keys_only, count_only=count_only)


def put(key: bytes, value: bytes, lease: int = 0) -> Json:
    """Write ``value`` at ``key`` under ``lease`` (0: none)."""
    return {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}


def put_keeping_lease(key: bytes, value: bytes) -> Json:
    """Put to an existing key, which keeps whatever lease it has."""
    return {"request_put": {"key": b64(key), "value": b64(value), "ignore_lease": True}}


def touch(key: bytes, lease: int) -> Json:
    """Give an existing key a new lease, keeping its value."""
    return {"request_put": {"key": b64(key), "ignore_value": True, "lease": str(lease)}}


def remove(key: bytes) -> Json:
    """Delete ``key``."""
    return {"request_delete_range": {"key": b64(key)}}


def remove_prefix(prefix: bytes) -> Json:
    """Delete every key starting with ``prefix``."""
    return {"request_delete_range": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}}


# -- compares of a transaction ----------------------------------------------------------


def absent(key: bytes) -> Json:
    """``key`` does not exist."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def exists(key: bytes) -> Json:
    """``key`` exists."""
    return {"key": b64(key), "target": "CREATE", "result": "GREATER", "create_revision": "0"}


def none_in(key: bytes, end: bytes) -> Json:
    """No key in ``[key, end)``: a compare over a range must hold for each key in it."""
    return {
        "key": b64(key),
        "range_end": b64(end),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    }


def unchanged(kv: Kv) -> Json:
    """The key was not written since ``kv`` was read (nor deleted)."""
    return {"key": b64(kv.key), "target": "MOD", "result": "EQUAL", "mod_revision": str(kv.mod)}


def value_is(key: bytes, value: bytes) -> Json:
    """``key`` holds ``value``."""
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


def lease_is(key: bytes, lease: int) -> Json:
    """``key`` has ``lease``; an absent key compares as lease 0."""
    return {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}


@dataclass(frozen=True, slots=True)
class Txn:
    """What a transaction answered: whether its compares held, and each op's response."""

    succeeded: bool
    responses: list[Json]

    def kvs(self, index: int) -> list[Kv]:
        """The keys the range at ``index`` read."""
        found = self.responses[index].get("response_range", {}).get("kvs", [])
        return [Kv.parse(raw) for raw in found]

    def count(self, index: int) -> int:
        """How many keys the range at ``index`` counted."""
        return int(self.responses[index].get("response_range", {}).get("count", 0))

    def first(self, index: int) -> Kv | None:
        """The first key the range at ``index`` read, if any."""
        kvs = self.kvs(index)
        return kvs[0] if kvs else None


class EtcdError(StoreError):
    """A :class:`StoreError` that keeps etcd's own message, to recognise a few of them."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail

    @property
    def lease_not_found(self) -> bool:
        """A write named a lease etcd does not have (revoked, or run out)."""
        return "requested lease not found" in self.detail


class EtcdClient:
    """Calls to etcd's JSON gateway, on the first of ``endpoints`` that answers.

    Args:
        endpoints: one or more client URLs (``http://host:2379`` or ``https://…``); when a
            connection to one cannot be made the next is tried.
        name: what error messages call the caller, e.g. ``etcd store 'faasflow/'``.
        timeout: seconds an HTTP request may take before it fails.
        username: etcd user to authenticate as (with ``password``).
        password: that user's password.
        ca_file: PEM file of the CA that signed the server certificates (``https``).
        cert_file: client certificate (PEM) for etcd's client-certificate authentication.
        key_file: the client certificate's private key (PEM).
        client: an existing :class:`httpx.AsyncClient` to use (not closed here).

    Raises:
        ConfigurationError: no endpoint, a password without a user, or unreadable TLS files.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        name: str,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not listed:
            raise ConfigurationError("etcd store: at least one endpoint is needed")
        if (username is None) != (password is None):
            raise ConfigurationError("etcd store: username and password go together")
        self.endpoints = [endpoint.rstrip("/") for endpoint in listed]
        self.name = name
        self.timeout = timeout
        self.username = username
        self.password = password
        self.token: str | None = None
        self._verify = _tls_context(ca_file, cert_file, key_file)
        self._client = client
        self._owns_client = client is None
        self._current = 0  # index of the endpoint that answered last

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self.timeout, verify=self._verify)
        return self._client

    async def close(self) -> None:
        """Close the HTTP connections (when this client made its httpx client)."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def error(self, what: str, detail: str) -> EtcdError:
        """The error of operation ``what`` failing for ``detail``."""
        return EtcdError(f"{self.name}: {what} failed: {detail}", detail)

    async def call(self, what: str, path: str, body: Json) -> Json:
        """POST ``body`` to ``path`` (``/v3/kv/range``…), authenticated; etcd's reply.

        Raises:
            EtcdError: no endpoint could be reached, or etcd refused the request.
        """
        payload = orjson.dumps(body)
        if self.username is None:
            return await self._send(what, path, payload, None)
        if self.token is None:
            await self._authenticate(what)
        try:
            return await self._send(what, path, payload, self.token)
        except EtcdError as exc:
            # Simple tokens expire (5 minutes by default): authenticate again, once.
            if "invalid auth token" not in exc.detail:
                raise
        await self._authenticate(what)
        return await self._send(what, path, payload, self.token)

    async def txn(
        self, what: str, compare: list[Json], success: list[Json], failure: list[Json]
    ) -> Txn:
        """One transaction: ``success`` if every compare holds, else ``failure``."""
        body: Json = {"compare": compare, "success": success, "failure": failure}
        reply = await self.call(what, "/v3/kv/txn", body)
        return Txn(bool(reply.get("succeeded", False)), list(reply.get("responses", [])))

    async def grant(self, what: str, lease: int, seconds: int) -> bool:
        """Grant the lease with ID ``lease`` for ``seconds``; ``False`` if the ID is taken."""
        try:
            await self.call(what, "/v3/lease/grant", {"TTL": seconds, "ID": lease})
        except EtcdError as exc:
            if "lease already exists" in exc.detail:
                return False
            raise
        return True

    async def _authenticate(self, what: str) -> None:
        body = orjson.dumps({"name": self.username, "password": self.password})
        reply = await self._send(what, "/v3/auth/authenticate", body, None)
        self.token = str(reply.get("token", ""))

    async def _send(self, what: str, path: str, payload: bytes, token: str | None) -> Json:
        """One POST, failing over to the next endpoint when a connection cannot be made."""
        headers = {"Authorization": token} if token else None
        last: Exception | None = None
        for _ in self.endpoints:
            endpoint = self.endpoints[self._current]
            try:
                response = await self._http.post(endpoint + path, content=payload, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent, so another endpoint may safely get the request.
                self._current = (self._current + 1) % len(self.endpoints)
                last = exc
                continue
            except httpx.HTTPError as exc:
                raise self.error(what, f"{type(exc).__name__}: {exc}") from exc
            try:
                reply = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                reply = None
            if response.status_code == 200 and isinstance(reply, dict):
                return reply
            detail = reply.get("error") if isinstance(reply, dict) else None
            raise self.error(
                what, str(detail or f"HTTP {response.status_code}: {response.text[:200]!r}")
            )
        raise self.error(what, f"{type(last).__name__}: {last}") from last


def _tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext | bool:
    if ca_file is None and cert_file is None:
        return True  # httpx's default verification against the system's CAs
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"etcd store: TLS files unusable: {exc}") from None
    return context
