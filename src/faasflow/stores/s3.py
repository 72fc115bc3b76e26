"""S3 data store: node outputs and results as objects in one bucket, under one key prefix.

Any S3 endpoint works: AWS (virtual-hosted addressing, or path-style for bucket names
with dots) or a compatible server such as MinIO (``?endpoint=``; path-style addressing)::

    s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1

**Client.** Requests go out on our own async :mod:`httpx` client, each signed with
botocore's SigV4 signer (:class:`botocore.auth.S3SigV4Auth`); credentials come from a
botocore ``Session``, that is the standard AWS chain (environment, profile files,
container and instance metadata), unless given explicitly. Why not aiobotocore or
boto3: aiobotocore pins exact botocore versions and so conflicts with the other AWS
tools installed beside faasflow, and boto3 is blocking. The handful of S3 calls a data
store needs (PUT, GET, HEAD, DELETE, CopyObject, ListObjectsV2, DeleteObjects) are small
to write, and botocore's signer plus the async client keeps every call fully async,
with one connection pool per store.

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
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import httpx
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    Credentials,
    RefreshableCredentials,
)
from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
from botocore.session import Session  # type: ignore[import-untyped]

from faasflow.errors import ConfigurationError, StoreError
from faasflow.httpclient import new_client
from faasflow.stores._urls import redact_url
from faasflow.stores.base import DataStore

__all__ = ["S3DataStore", "encode_key"]

EXPIRES_HEADER = "x-amz-meta-expires-at"
_CONTENT_TYPE = "application/octet-stream"
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_HEADS_AT_ONCE = 16
_ATTEMPTS = 3
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_SIGN_IN_THREAD = 256 * 1024  # hashing a bigger body would stall the event loop
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


def _url_path(object_key: str) -> str:
    # Object keys hold only unreserved characters, "/" and "%": escaping "%" once more
    # gives the path exactly as S3's canonical request encodes it.
    return quote(object_key, safe="/~")


def _query(params: Mapping[str, str]) -> str:
    """A query string in SigV4's canonical form (sorted, strictly encoded)."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


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


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml(body: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _child_text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return ""


def _s3_error(response: httpx.Response) -> tuple[str, str]:
    """The S3 error code and message of a failed response (HEAD has no body)."""
    root = _xml(response.content) if response.content else None
    if root is not None and _local(root.tag) == "Error":
        return _child_text(root, "Code") or str(response.status_code), _child_text(
            root, "Message"
        )
    code = {
        301: "PermanentRedirect",
        400: "BadRequest",
        403: "AccessDenied",
        404: "NotFound",
        412: "PreconditionFailed",
    }.get(response.status_code, f"HTTP{response.status_code}")
    return code, response.reason_phrase


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
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.region = region
        self.profile = profile
        self.create_bucket = create_bucket
        self.timeout = timeout
        self._credentials: Any = (
            Credentials(access_key_id, secret_access_key, session_token)
            if access_key_id is not None
            else None
        )
        self._client = client
        self._owns_client = client is None
        self._base = ""
        self._root = ""

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

    # -- lifetime ---------------------------------------------------------------------
    async def open(self) -> None:
        """Resolve credentials and region, then check (or create) the bucket.

        Raises:
            ConfigurationError: no credentials, or the bucket does not exist.
            StoreError: the endpoint cannot be reached or refuses access.
        """
        if self._credentials is None or self.region is None:
            # The credential chain may read files and ask instance metadata over HTTP.
            self._credentials, self.region = await asyncio.to_thread(self._resolve)
        self._base, self._root = self._locate()
        if self._client is None:
            self._client = new_client(timeout=self.timeout)
        try:
            await self._check_bucket()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def _resolve(self) -> tuple[Any, str]:
        try:
            session = Session(profile=self.profile)
            credentials = self._credentials or session.get_credentials()
            region = self.region or session.get_config_variable("region") or "us-east-1"
        except BotoCoreError as exc:
            raise ConfigurationError(f"{self!r}: AWS configuration: {exc}") from exc
        if credentials is None:
            raise ConfigurationError(
                f"{self!r}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or put them in the store URL"
            )
        return credentials, region

    def _locate(self) -> tuple[str, str]:
        """The base URL requests go to, and the bucket's path under it."""
        if self.endpoint is not None:
            return self.endpoint, f"/{self.bucket}"
        suffix = "amazonaws.com.cn" if str(self.region).startswith("cn-") else "amazonaws.com"
        if "." in self.bucket:
            # A dotted name does not match the wildcard TLS certificate of virtual hosts.
            return f"https://s3.{self.region}.{suffix}", f"/{self.bucket}"
        return f"https://{self.bucket}.s3.{self.region}.{suffix}", ""

    async def _check_bucket(self) -> None:
        response = await self._send("open", "HEAD", self._root or "/", ok=(200, 301, 403, 404))
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
                f'<CreateBucketConfiguration xmlns="{_S3_NS}"><LocationConstraint>'
                f"{self.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        response = await self._send(
            "create_bucket", "PUT", self._root or "/", body=body, ok=(200, 409)
        )
        # BucketAlreadyOwnedByYou: another process of ours made it first.
        if response.status_code == 409 and _s3_error(response)[0] != "BucketAlreadyOwnedByYou":
            raise self._error("create_bucket", None, response)

    # -- the data store -----------------------------------------------------------------
    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        headers = {"Content-Type": _CONTENT_TYPE, **_deadline(ttl)}
        await self._send("put", "PUT", self._object(key), body=data, headers=headers, key=key)

    async def get(self, key: str) -> bytes | None:
        response = await self._send("get", "GET", self._object(key), ok=(200, 404), key=key)
        if response.status_code == 404:
            return None
        if _expired(response.headers):
            await self._purge(key, response.headers.get("etag"))
            return None
        return response.content

    async def delete(self, key: str) -> None:
        await self._send("delete", "DELETE", self._object(key), ok=(200, 204, 404), key=key)

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
            head = await self._send("expire", "HEAD", path, ok=(200, 404), key=key)
            if head.status_code == 404:
                return
            etag = head.headers.get("etag", "")
            if _expired(head.headers):
                await self._purge(key, etag)
                return  # never revive an expired value
            headers = {
                "Content-Type": _CONTENT_TYPE,
                "x-amz-copy-source": f"/{self.bucket}/{_url_path(self._key(key))}",
                "x-amz-metadata-directive": "REPLACE",
                **_deadline(ttl),
            }
            if etag:
                # Rewrite only the value seen alive; a value put meanwhile is looked at anew.
                headers["x-amz-copy-source-if-match"] = etag
            copied = await self._send(
                "expire", "PUT", path, headers=headers, ok=(200, 404, 412), key=key
            )
            if copied.status_code == 404:
                return
            if copied.status_code == 200:
                root = _xml(copied.content)
                # CopyObject may answer 200 and report its failure in the body.
                if root is None or _local(root.tag) != "Error":
                    return
                if _child_text(root, "Code") != "PreconditionFailed":
                    raise self._error("expire", key, copied)
        raise StoreError(f"{self!r}: expire {key!r} failed: the object kept changing")

    # -- internals --------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self.prefix + encode_key(key)

    def _object(self, key: str) -> str:
        return f"{self._root}/{_url_path(self._key(key))}"

    async def _purge(self, key: str, etag: str | None) -> None:
        """Delete an expired object unless it was written again meanwhile."""
        headers = {"If-Match": etag} if etag else {}
        # A failed purge changes nothing for the caller (the value reads as absent
        # either way); the next reader or delete_prefix removes the object.
        with contextlib.suppress(StoreError):
            await self._send(
                "purge", "DELETE", self._object(key), headers=headers,
                ok=(200, 204, 404, 409, 412, 501), key=key,
            )

    async def _delete_listed(self, prefix: str, *, expired_only: bool) -> int:
        what = "purge_expired" if expired_only else "delete_prefix"
        gate = asyncio.Semaphore(_HEADS_AT_ONCE)

        async def alive(object_key: str) -> bool | None:
            """Live (True), expired (False) or already gone (None)."""
            async with gate:
                head = await self._send(
                    what, "HEAD", f"{self._root}/{_url_path(object_key)}", ok=(200, 404),
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
            listing = await self._send(what, "GET", self._root or "/", params=params, key=prefix)
            root = _xml(listing.content)
            if root is None:
                raise StoreError(f"{self!r}: {what} {prefix!r} failed: unreadable listing")
            keys = [
                _child_text(item, "Key") for item in root if _local(item.tag) == "Contents"
            ]
            states = await asyncio.gather(*(alive(k) for k in keys))
            doomed = [
                k for k, state in zip(keys, states, strict=True)
                if state is not None and (not expired_only or state is False)
            ]
            await self._delete_objects(what, prefix, doomed)
            counted = not expired_only  # the live ones, or when purging the expired ones
            removed += sum(1 for state in states if state is counted)
            token = _child_text(root, "NextContinuationToken")
            if _child_text(root, "IsTruncated") != "true" or not token:
                return removed

    async def _delete_objects(self, what: str, prefix: str, keys: Iterable[str]) -> None:
        batch = list(keys)
        for start in range(0, len(batch), self.page_size):
            objects = "".join(
                f"<Object><Key>{escape(k)}</Key></Object>"
                for k in batch[start : start + self.page_size]
            )
            body = f'<Delete xmlns="{_S3_NS}"><Quiet>true</Quiet>{objects}</Delete>'.encode()
            md5 = hashlib.md5(body, usedforsecurity=False).digest()
            response = await self._send(
                what, "POST", self._root or "/", params={"delete": ""}, body=body, key=prefix,
                headers={"Content-MD5": base64.b64encode(md5).decode(),
                         "Content-Type": "application/xml"},
            )
            root = _xml(response.content)
            errors = [e for e in (root if root is not None else []) if _local(e.tag) == "Error"]
            if errors:
                first = errors[0]
                raise StoreError(
                    f"{self!r}: {what} {prefix!r} failed: {_child_text(first, 'Code')}: "
                    f"{_child_text(first, 'Message')} (object {_child_text(first, 'Key')!r}, "
                    f"{len(errors)} not deleted)"
                )

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None or not self._base:
            raise StoreError(f"{self!r} is not open; use 'async with' or await open()")
        return self._client

    async def _signed_headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        credentials = self._credentials
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                # Refreshing asks STS, a container or instance metadata over HTTP.
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
            signer = S3SigV4Auth(frozen, "s3", self.region)
            if len(body) > _SIGN_IN_THREAD:
                await asyncio.to_thread(signer.add_auth, request)
            else:
                signer.add_auth(request)
        except BotoCoreError as exc:
            raise StoreError(f"{self!r}: signing failed: {exc}") from exc
        return {name: str(value) for name, value in request.headers.items()}

    async def _send(
        self,
        what: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 204),
        key: str | None = None,
    ) -> httpx.Response:
        """Sign and send one request, retrying transient failures.

        Returns the response when its status is in ``ok``; raises StoreError otherwise.
        """
        client = self._http
        url = self._base + path
        if params:
            url += "?" + _query(params)
        for attempt in range(1, _ATTEMPTS + 1):
            signed = await self._signed_headers(method, url, body, headers or {})
            try:
                response = await client.request(
                    method, url, headers=signed, content=body if body or method == "PUT" else None
                )
            except httpx.HTTPError as exc:
                if attempt < _ATTEMPTS and isinstance(exc, httpx.TransportError):
                    await asyncio.sleep(0.05 * 4 ** (attempt - 1))
                    continue
                where = self.endpoint or self._base
                subject = f" {key!r}" if key is not None else ""
                trouble = "cannot reach" if isinstance(exc, httpx.TransportError) else "with"
                raise StoreError(
                    f"{self!r}: {what}{subject} failed: {trouble} {where}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code in ok:
                return response
            if response.status_code in _RETRY_STATUS and attempt < _ATTEMPTS:
                await asyncio.sleep(0.05 * 4 ** (attempt - 1))
                continue
            raise self._error(what, key, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, what: str, key: str | None, response: httpx.Response) -> StoreError:
        code, message = _s3_error(response)
        subject = f" {key!r}" if key is not None else ""
        detail = f": {message}" if message else ""
        return StoreError(
            f"{self!r}: {what}{subject} failed: {code}{detail} (HTTP {response.status_code})"
        )
