"""S3 data store: node outputs and results as objects in one bucket, under one key prefix.

Any S3 endpoint works: AWS (virtual-hosted addressing, or path-style for bucket names
with dots) or a compatible server such as MinIO (``?endpoint=``; path-style addressing)::

    s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1

**Client.** Requests are signed with botocore's SigV4 signer and sent on an async httpx
client (:mod:`faasflow.stores._s3_client`); credentials come from the standard AWS chain
(environment, profile files, container and instance metadata) unless given explicitly.

**Layout.** One bucket per deployment and a key prefix per flow, never a bucket per
request; the prefixes of two stores must not nest (``a/`` and ``a/b/``), or the outer
store's ``delete_prefix`` reaches into the inner one. A store key is percent-encoded
into the object key ``{prefix}{encoded key}``: ``/`` stays (so a console shows the
hierarchy), everything but ASCII letters, digits, ``-``, ``_`` and ``~`` becomes
``%XX`` of its UTF-8 bytes. ``.`` is escaped too, so no object name holds a
``.``/``..`` segment that an HTTP client would normalise away. The encoding maps a key
prefix to an object-key prefix, which is what ``delete_prefix`` lists.

**Expiry.** S3 has no per-object TTL in seconds (lifecycle rules count whole days), so
the deadline is object metadata ``x-amz-meta-expires-at`` (epoch seconds, milliseconds
precision) and is checked on read against this host's clock: an expired object reads as
absent and is deleted lazily (conditionally, ``If-Match`` its ETag, so a value written
again meanwhile survives). ``expire`` rewrites the metadata with a server-side CopyObject
(``x-amz-metadata-directive: REPLACE``, guarded by ``x-amz-copy-source-if-match``); it
cannot copy objects over 5 GB, far above what a node output should be. Objects nobody
reads again stay until ``delete_prefix`` or :meth:`S3DataStore.purge_expired` removes
them; a bucket lifecycle rule expiring the prefix after a few days is a good backstop.

**Costs.** ``put``/``get``/``delete``: one request. ``expire``: HEAD + CopyObject.
``delete_prefix``: ListObjectsV2 (1000 keys a page), then one HEAD per listed object
(16 at a time) because the count excludes expired objects and a listing carries no user
metadata, then DeleteObjects (1000 keys a call). Transient failures (HTTP 500/502/503/
504, connection errors) are retried twice with a short backoff; every operation is
idempotent. Errors are raised as :class:`~faasflow.errors.StoreError` naming the
operation, the key and the S3 error code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

import httpx
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores._s3_client import (
    S3_NS,
    S3Client,
    child_text,
    local_name,
    parse_xml,
    s3_error,
    url_path,
)
from faasflow.stores._urls import redact_url
from faasflow.stores.base import DataStore

__all__ = ["S3DataStore", "encode_key"]

EXPIRES_HEADER = "x-amz-meta-expires-at"
_CONTENT_TYPE = "application/octet-stream"
_HEADS_AT_ONCE = 16
_KEY_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~/")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SAFE = re.compile(r"^[A-Za-z0-9!\-_.*'()/]*$")
_OPTIONS = ("create_bucket", "endpoint", "profile", "region", "timeout")


def encode_key(key: str) -> str:
    """The object-key form of store key ``key`` (without the store's prefix).

    Keeps ``/`` and the characters no layer rewrites; everything else, ``.`` and ``%``
    included, becomes ``%XX`` of its UTF-8 bytes. Encoding ``a + b`` gives
    ``encode_key(a) + encode_key(b)``, so key prefixes stay object-key prefixes.
    """
    return "".join(chr(b) if b in _KEY_SAFE else f"%{b:02X}" for b in key.encode("utf-8"))


def _deadline(ttl: float | None) -> dict[str, str]:
    if ttl is None:
        return {}
    return {EXPIRES_HEADER: f"{time.time() + ttl:.3f}"}


def _expired(headers: httpx.Headers) -> bool:
    value = headers.get(EXPIRES_HEADER)
    if value is None:
        return False
    try:
        return float(value) <= time.time()
    except ValueError:
        return False  # written by someone else: keep the object rather than lose it


def _parse_bool(url: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"store URL {url!r}: {name}={value!r}, expected true or false")


class S3DataStore(DataStore):
    """:class:`DataStore` on S3 or an S3-compatible server.

    Args:
        bucket: an existing bucket (checked by :meth:`open`).
        prefix: object-key prefix of this store, e.g. ``"flows/greet"``; a ``/`` is
            added when missing. ``""`` uses the whole bucket.
        endpoint: ``http(s)://host[:port]`` of a non-AWS server (MinIO, a test server);
            requests then use path-style addressing. ``None`` means AWS.
        region: the signing region; ``None`` reads it from the AWS configuration
            (``AWS_REGION``, the profile) and falls back to ``us-east-1``.
        access_key_id: explicit credentials (with ``secret_access_key`` and, for
            temporary ones, ``session_token``); ``None`` uses the AWS credential chain.
        secret_access_key: see ``access_key_id``.
        session_token: see ``access_key_id``.
        profile: the AWS profile the credential chain reads.
        create_bucket: create the bucket at :meth:`open` when it does not exist (for
            tests and development; production buckets are made by whoever owns them).
        timeout: seconds for connecting and for each read or write of a request.
        client: an ``httpx.AsyncClient`` to use (not closed by the store).
    """

    page_size = 1000
    """Keys per ListObjectsV2 page and per DeleteObjects call (S3's maximum for both)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        create_bucket: bool = False,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"S3 bucket {bucket!r} is not a valid bucket name (3-63 characters: "
                "lowercase letters, digits, '.' and '-')"
            )
        segments = prefix.removesuffix("/").split("/") if prefix else []
        if not _PREFIX_SAFE.match(prefix) or any(s in ("", ".", "..") for s in segments):
            raise ConfigurationError(
                f"S3 prefix {prefix!r}: use segments of letters, digits and !-_.*'() "
                "separated by single '/' (no '.' or '..' segments)"
            )
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ConfigurationError(
                    f"S3 endpoint {endpoint!r}: expected http(s)://host[:port]"
                )
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigurationError(
                "S3 credentials: give both access_key_id and secret_access_key, or neither"
            )
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.create_bucket = create_bucket
        self._s3 = S3Client(
            bucket,
            name=repr(self),
            endpoint=endpoint.rstrip("/") if endpoint else None,
            region=region,
            credentials=(
                Credentials(access_key_id, secret_access_key, session_token)
                if access_key_id is not None
                else None
            ),
            profile=profile,
            timeout=timeout,
            client=client,
        )

    @classmethod
    def from_url(cls, url: str) -> S3DataStore:
        """The store an ``s3://`` URL names, not yet opened.

        ``s3://[ACCESS_KEY_ID:SECRET@]bucket[/prefix][?option=value&...]`` with options
        ``endpoint``, ``region``, ``profile``, ``create_bucket`` (true/false) and
        ``timeout`` (seconds). Credentials in the URL must be percent-encoded; without
        them the AWS credential chain is used.

        Raises:
            ConfigurationError: the URL is malformed or has an unknown option.
        """
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError as exc:
            raise ConfigurationError(f"store URL {shown!r}: {exc}") from None
        if parts.scheme.lower() != "s3":
            raise ConfigurationError(f"store URL {shown!r}: expected an s3:// URL")
        if "@" in parts.path:
            raise ConfigurationError(
                f"store URL {shown!r}: percent-encode the credentials ('/' is %2F); "
                "an unencoded '/' ends the bucket part early"
            )
        userinfo, _, bucket = parts.netloc.rpartition("@")
        if not bucket:
            raise ConfigurationError(
                f"store URL {shown!r}: no bucket; expected s3://BUCKET/prefix"
            )
        if ":" in bucket:
            raise ConfigurationError(
                f"store URL {shown!r}: the host part is the bucket and takes no port; "
                "give a server as ?endpoint=http://host:port"
            )
        if parts.fragment:
            raise ConfigurationError(f"store URL {shown!r}: unexpected '#' fragment")
        access_key = secret = None
        if userinfo:
            if password is None or not parts.username:
                raise ConfigurationError(
                    f"store URL {shown!r}: credentials must be ACCESS_KEY_ID:SECRET@"
                )
            access_key, secret = unquote(parts.username), unquote(password)
        options: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in _OPTIONS:
                raise ConfigurationError(
                    f"store URL {shown!r}: unknown option {name!r} "
                    f"(known: {', '.join(_OPTIONS)})"
                )
            if name in options:
                raise ConfigurationError(f"store URL {shown!r}: option {name!r} given twice")
            if name == "create_bucket":
                options[name] = _parse_bool(shown, name, value)
            elif name == "timeout":
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = -1.0
                if not seconds > 0:
                    raise ConfigurationError(
                        f"store URL {shown!r}: timeout={value!r} is not a positive number "
                        "of seconds"
                    )
                options[name] = seconds
            elif not value:
                raise ConfigurationError(f"store URL {shown!r}: option {name!r} is empty")
            else:
                options[name] = value
        try:
            return cls(
                bucket,
                unquote(parts.path.lstrip("/")),
                access_key_id=access_key,
                secret_access_key=secret,
                **options,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"store URL {shown!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} s3://{self.bucket}/{self.prefix}>"

    @property
    def endpoint(self) -> str | None:
        """The server's ``http(s)://host[:port]``; ``None`` for AWS."""
        return self._s3.endpoint

    @property
    def region(self) -> str | None:
        """The signing region (read from the AWS configuration by :meth:`open`)."""
        return self._s3.region

    @property
    def profile(self) -> str | None:
        """The AWS profile the credential chain reads."""
        return self._s3.profile

    @property
    def timeout(self) -> float:
        """Seconds for connecting and for each read or write of a request."""
        return self._s3.timeout

    # -- lifetime ---------------------------------------------------------------------
    async def open(self) -> None:
        """Resolve credentials and region, then check (or create) the bucket.

        Raises:
            ConfigurationError: no credentials, or the bucket does not exist.
            StoreError: the endpoint cannot be reached or refuses access.
        """
        await self._s3.open()
        try:
            await self._check_bucket()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connections (when the store made its httpx client)."""
        await self._s3.close()

    async def _check_bucket(self) -> None:
        response = await self._s3.send(
            "open", "HEAD", self._s3.bucket_path, ok=(200, 301, 403, 404)
        )
        if response.status_code == 200:
            return
        if response.status_code == 404 and self.create_bucket:
            await self._create_bucket()
            return
        where = f" at {self.endpoint}" if self.endpoint else ""
        if response.status_code == 404:
            raise ConfigurationError(
                f"{self!r}: bucket {self.bucket!r} does not exist{where}; create it "
                "(or add ?create_bucket=true for development)"
            )
        if response.status_code == 301:
            actual = response.headers.get("x-amz-bucket-region", "another region")
            raise ConfigurationError(
                f"{self!r}: bucket {self.bucket!r} is in {actual}, not {self.region}; "
                f"set ?region={actual}"
            )
        # HEAD answers carry no error body: 403 is a refused key, a bad signature or
        # a bucket policy, and the message can only list them.
        raise StoreError(
            f"{self!r}: open failed: AccessDenied (HTTP 403) for bucket {self.bucket!r}{where}; "
            "check the credentials, the region and the bucket policy"
        )

    async def _create_bucket(self) -> None:
        body = b""
        if self.region != "us-east-1":
            body = (
                f'<CreateBucketConfiguration xmlns="{S3_NS}"><LocationConstraint>'
                f"{self.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        response = await self._s3.send(
            "create_bucket", "PUT", self._s3.bucket_path, body=body, ok=(200, 409)
        )
        # BucketAlreadyOwnedByYou: another process of ours made it first.
        if response.status_code == 409 and s3_error(response)[0] != "BucketAlreadyOwnedByYou":
            raise self._s3.error("create_bucket", None, response)

    # -- the data store -----------------------------------------------------------------
    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        headers = {"Content-Type": _CONTENT_TYPE, **_deadline(ttl)}
        await self._s3.send("put", "PUT", self._object(key), body=data, headers=headers, key=key)

    async def get(self, key: str) -> bytes | None:
        response = await self._s3.send("get", "GET", self._object(key), ok=(200, 404), key=key)
        if response.status_code == 404:
            return None
        if _expired(response.headers):
            await self._purge(key, response.headers.get("etag"))
            return None
        return response.content

    async def delete(self, key: str) -> None:
        await self._s3.send("delete", "DELETE", self._object(key), ok=(200, 204, 404), key=key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._delete_listed(prefix, expired_only=False)

    async def purge_expired(self, prefix: str = "") -> int:
        """Delete the expired objects under ``prefix``; return how many.

        For a periodic sweep of objects nobody reads again (one LIST per 1000 objects
        and one HEAD per object).
        """
        return await self._delete_listed(prefix, expired_only=True)

    async def expire(self, key: str, ttl: float) -> None:
        path = self._object(key)
        for _ in range(5):
            head = await self._s3.send("expire", "HEAD", path, ok=(200, 404), key=key)
            if head.status_code == 404:
                return
            etag = head.headers.get("etag", "")
            if _expired(head.headers):
                await self._purge(key, etag)
                return  # never revive an expired value
            headers = {
                "Content-Type": _CONTENT_TYPE,
                "x-amz-copy-source": f"/{self.bucket}/{url_path(self._key(key))}",
                "x-amz-metadata-directive": "REPLACE",
                **_deadline(ttl),
            }
            if etag:
                # Rewrite only the value seen alive; a value put meanwhile is looked at anew.
                headers["x-amz-copy-source-if-match"] = etag
            copied = await self._s3.send(
                "expire", "PUT", path, headers=headers, ok=(200, 404, 412), key=key
            )
            if copied.status_code == 404:
                return
            if copied.status_code == 200:
                root = parse_xml(copied.content)
                # CopyObject may answer 200 and report its failure in the body.
                if root is None or local_name(root.tag) != "Error":
                    return
                if child_text(root, "Code") != "PreconditionFailed":
                    raise self._s3.error("expire", key, copied)
        raise StoreError(f"{self!r}: expire {key!r} failed: the object kept changing")

    # -- internals --------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self.prefix + encode_key(key)

    def _object(self, key: str) -> str:
        return self._s3.object_path(self._key(key))

    async def _purge(self, key: str, etag: str | None) -> None:
        """Delete an expired object unless it was written again meanwhile."""
        headers = {"If-Match": etag} if etag else {}
        # A failed purge changes nothing for the caller (the value reads as absent
        # either way); the next reader or delete_prefix removes the object.
        with contextlib.suppress(StoreError):
            await self._s3.send(
                "purge", "DELETE", self._object(key), headers=headers,
                ok=(200, 204, 404, 409, 412, 501), key=key,
            )

    async def _delete_listed(self, prefix: str, *, expired_only: bool) -> int:
        what = "purge_expired" if expired_only else "delete_prefix"
        gate = asyncio.Semaphore(_HEADS_AT_ONCE)

        async def alive(object_key: str) -> bool | None:
            """Live (True), expired (False) or already gone (None)."""
            async with gate:
                head = await self._s3.send(
                    what, "HEAD", self._s3.object_path(object_key), ok=(200, 404),
                    key=prefix,
                )
            if head.status_code == 404:
                return None
            return not _expired(head.headers)

        removed = 0
        token: str | None = None
        while True:
            params = {
                "list-type": "2", "max-keys": str(self.page_size), "prefix": self._key(prefix)
            }
            if token:
                params["continuation-token"] = token
            listing = await self._s3.send(
                what, "GET", self._s3.bucket_path, params=params, key=prefix
            )
            root = parse_xml(listing.content)
            if root is None:
                raise StoreError(f"{self!r}: {what} {prefix!r} failed: unreadable listing")
            keys = [
                child_text(item, "Key") for item in root if local_name(item.tag) == "Contents"
            ]
            states = await asyncio.gather(*(alive(k) for k in keys))
            doomed = [
                k for k, state in zip(keys, states, strict=True)
                if state is not None and (not expired_only or state is False)
            ]
            await self._delete_objects(what, prefix, doomed)
            counted = not expired_only  # the live ones, or when purging the expired ones
            removed += sum(1 for state in states if state is counted)
            token = child_text(root, "NextContinuationToken")
            if child_text(root, "IsTruncated") != "true" or not token:
                return removed

    async def _delete_objects(self, what: str, prefix: str, keys: Iterable[str]) -> None:
        batch = list(keys)
        for start in range(0, len(batch), self.page_size):
            objects = "".join(
                f"<Object><Key>{escape(k)}</Key></Object>"
                for k in batch[start : start + self.page_size]
            )
            body = f'<Delete xmlns="{S3_NS}"><Quiet>true</Quiet>{objects}</Delete>'.encode()
            md5 = hashlib.md5(body, usedforsecurity=False).digest()
            response = await self._s3.send(
                what, "POST", self._s3.bucket_path, params={"delete": ""}, body=body, key=prefix,
                headers={"Content-MD5": base64.b64encode(md5).decode(),
                         "Content-Type": "application/xml"},
            )
            root = parse_xml(response.content)
            errors = [e for e in (root if root is not None else []) if local_name(e.tag) == "Error"]
            if errors:
                first = errors[0]
                raise StoreError(
                    f"{self!r}: {what} {prefix!r} failed: {child_text(first, 'Code')}: "
                    f"{child_text(first, 'Message')} (object {child_text(first, 'Key')!r}, "
                    f"{len(errors)} not deleted)"
                )
